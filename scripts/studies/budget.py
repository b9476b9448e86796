"""The budget studies' plans, rules and write-up (``results/proxy-benchmark-budget*/``): what a larger SGD-step
budget buys a random proxy, each study's decision rules fixed in its PLAN.md before its data.

    dev    results/proxy-benchmark-budget/       the development pool (16 candidates); also whether fmnist-ref's
                                                'whole set at one epoch' finding survives a training seed the
                                                ground truth does not share
    comp   results/proxy-benchmark-budget-comp/  the competitive pool (24 candidates, held out): the replication

Both also ask whether a variant of the 400-step training keeps the 1,200-step gain within 10% of the whole-set
search: the same draws trained about 1,200 steps of batch 32, or 400 steps at lr 0.03.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from nasprune.analysis import (candidate_means, complete_sets, cost_fractions, draw_metrics, markdown_table,
                               noise_ceiling, paired_draws, place_among, plot_budget, random_null, top_quartile_k)
from nasprune.proxies import ProxySet, draw_name
from nasprune.search import Experiment, JobStore, copy_training_set, load_jobs
from nasprune.workflows import PipelineConfig

__all__ = ["STUDIES", "Study", "Variant", "analyse", "reuse_source_pool", "same_images", "signed_rank_p", "verdicts",
           "variant_verdict"]


@dataclass(frozen=True)
class Study:
    """One budget study: where it lives, the pool it extends, and its PLAN.md's comparisons.

    The random draws at 400 steps are the source pool's ``{random_400}-d*``; those at 1,200 steps are this
    study's ``{random_1200}-d*``, and each of ``variants`` trains its own, the same images draw by draw
    (checked on the proxy files). ``against_*`` are the sets read against each budget's draws;
    ``reused_proxies`` maps a set of this study to the source's proxy file it reuses (the pipeline checks that
    their settings match, nasprune.proxies.check_reuse)."""

    directory: Path
    source: Path
    pool: str
    draws_1200: int
    against_400: tuple[str, ...]
    against_1200: tuple[str, ...] = ()
    reused_proxies: dict[str, str] = field(default_factory=dict)
    draws_400: int = 20
    random_400: str = "random-pc100"
    random_1200: str = "random-pc100-e150"
    variants: tuple["Variant", ...] = ()

    @property
    def names_400(self) -> list[str]:
        return [draw_name(self.random_400, d) for d in range(self.draws_400)]

    @property
    def names_1200(self) -> list[str]:
        return [draw_name(self.random_1200, d) for d in range(self.draws_1200)]


@dataclass(frozen=True)
class Variant:
    """The first ``draws`` random draws trained another way at about the 400-step cost (``prefix``-d*, a set of
    the study's config), and PLAN.md's question ``question``: does it keep rule 2's gain within 10%?"""

    prefix: str
    draws: int
    question: int
    title: str  # the question's title in the README
    label: str  # the training, as the tables name it

    @property
    def names(self) -> list[str]:
        return [draw_name(self.prefix, d) for d in range(self.draws)]


def study_variants(draws: int, first: int) -> tuple[Variant, ...]:
    """The two variants both studies ask about, numbered from PLAN.md's question ``first``."""
    return (Variant("random-pc100-b32", draws, first, "Cheaper steps within 10%", "1,216 steps of batch 32"),
            Variant("random-pc100-lr3", draws, first + 1, "A larger learning rate within 10%",
                    "400 steps at lr 0.03"))


STUDIES = {
    "dev": Study(Path("results/proxy-benchmark-budget"), Path("results/proxy-benchmark"), "development pool",
                 draws_1200=8, against_400=("whole-1epoch-s2", "whole-1epoch-s0", "entropy-pc100"),
                 against_1200=("whole-3epoch-s2", "entropy-pc100-e150"),
                 reused_proxies={"entropy-pc100-e150": "entropy-pc100"}, variants=study_variants(8, first=5)),
    "comp": Study(Path("results/proxy-benchmark-budget-comp"), Path("results/proxy-benchmark-comp"),
                  "competitive pool", draws_1200=6, against_400=("whole-1epoch-s2",),
                  against_1200=("whole-3epoch-s2",), variants=study_variants(6, first=4)),
}


def reuse_source_pool(config: PipelineConfig, study: Study) -> None:
    """Copy the source pool's whole-set jobs and the proxy files the study reuses into its directory, once."""
    directory, source = study.directory, study.source
    (directory / "proxies").mkdir(parents=True, exist_ok=True)
    for name, theirs in study.reused_proxies.items():
        if not (directory / "proxies" / f"{name}.json").exists():
            shutil.copyfile(source / "proxies" / f"{theirs}.json", directory / "proxies" / f"{name}.json")
    config.experiment().save(directory)
    if "whole" not in JobStore.open(directory).study_ids:
        print(f"copied {copy_training_set(source, directory, 'whole')} whole-set jobs from {source}")


def study_jobs(study: Study) -> pd.DataFrame:
    """This study's finished jobs with the source pool's 400-step sets it reads, complete sets only."""
    own = load_jobs(study.directory)
    theirs = load_jobs(study.source)
    read = set(study.names_400 + list(study.against_400) + list(study.reused_proxies.values()))
    read -= set(own["training_set"])  # a set of the study's own is never mixed with a namesake of the source
    jobs = pd.concat([own, theirs[theirs["training_set"].isin(read)]], ignore_index=True)
    return jobs[jobs["training_set"].isin(complete_sets(jobs))]


def same_images(study: Study, pairs) -> None:
    """Refuse a pair of draws whose proxy files do not hold the same images (the pairing's premise)."""
    for before, after in pairs:
        a, b = (ProxySet.load(d / "proxies" / f"{n}.json") for d, n in ((study.source, before),
                                                                          (study.directory, after)))
        if (a.source_indices is None or a.fingerprint != b.fingerprint
                or not np.array_equal(a.source_indices, b.source_indices)):
            raise SystemExit(f"{after} does not hold the images of {study.source}'s {before}: they cannot be paired")


def train_configs(study: Study, config: PipelineConfig) -> dict:
    """Each training set's :class:`~nasprune.training.TrainConfig`: the study's own (its config) over the source
    pool's (its experiment.json)."""
    sets = {**Experiment.load(study.source).training_sets, **config.experiment().training_sets}
    return {name: s.train for name, s in sets.items()}


def steps_of(jobs: pd.DataFrame, trains: dict, names) -> list[int]:
    """SGD steps of each training set in ``names``: its images under its own training config (``trains``:
    :func:`train_configs`)."""
    images = jobs.groupby("training_set")["images"].first()
    return [trains[n].steps(int(images[n])) for n in names]


def budgets(study: Study, jobs: pd.DataFrame) -> list[tuple[str, list[str], list[str]]]:
    """Per budget (400 steps, 1,200 steps, then each variant's): its name, its finished random draws and the
    finished sets read against them."""
    present = set(jobs["training_set"])
    return [(label, [d for d in draws if d in present], [a for a in against if a in present])
            for label, draws, against in (("400 steps of batch 128", study.names_400, study.against_400),
                                          ("1,200 steps of batch 128", study.names_1200, study.against_1200),
                                          *((v.label, v.names, ()) for v in study.variants))]


def signed_rank_p(change: pd.Series, alternative: str = "greater") -> float:
    """Wilcoxon signed-rank p of the paired changes (``alternative``: "greater" that they are above zero, or
    "two-sided"), exact over all 2^n sign flips (which handles tied changes); ``change`` rounded to 9 decimals,
    so that equal changes tie exactly, not up to float noise (:func:`rounded`)."""
    change = rounded(change)
    return (stats.wilcoxon(change, alternative=alternative, method=stats.PermutationMethod(n_resamples=np.inf)).pvalue
            if (change != 0).any() else 1.0)


def rounded(change: pd.Series) -> pd.Series:
    return change.round(9)


def ups_and_downs(change: pd.Series) -> str:
    change = rounded(change)
    return f"{int((change > 0).sum())} up, {int((change < 0).sum())} down"


def budget_rows(by_budget, jobs: pd.DataFrame, trains: dict, cost: pd.Series, k: int, n_boot: int) -> pd.DataFrame:
    """Per set, against the random draws of its budget (``by_budget``: :func:`budgets`;
    :func:`nasprune.analysis.random_null`), with its SGD steps and its cost as a fraction of the whole-set search
    (``cost``: :func:`nasprune.analysis.cost_fractions`' ``fraction_of_whole``)."""
    frames = []
    for _, draws, against in by_budget:
        if draws and against:
            null = random_null(jobs, draws, against, k=k, n_boot=n_boot)
            frames.append(null[null["metric"].isin(["kendall_all", f"ndcg_top{k}", "regret"])])
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["proxy", "metric", "value"])
    if len(table):
        table["steps"] = steps_of(jobs, trains, table["proxy"])
        table["fraction_of_whole"] = table["proxy"].map(cost)
    return table


def verdicts(study: Study, jobs: pd.DataFrame, table: pd.DataFrame, paired: pd.DataFrame,
             hi_400: float) -> list[str]:
    """PLAN.md's rules applied to Kendall over all candidates, each with the numbers it reads. ``hi_400``: the
    400-step draws' 95th percentile of Kendall."""
    kendall = table[table["metric"] == "kendall_all"].set_index("proxy")
    lines = []
    if "whole-1epoch-s2" in kendall.index:
        s2 = kendall.loc["whole-1epoch-s2"]
        stands = s2["value"] >= s2["band_lo"]
        s0 = (f"whole-1epoch-s0 {kendall.loc['whole-1epoch-s0', 'value']:.3f}, " if "whole-1epoch-s0" in kendall.index
              else "")
        gap = (f" (s0 minus s2: {kendall.loc['whole-1epoch-s0', 'value'] - s2['value']:+.3f}; one run each, so the "
               "difference holds the shared seed and seed-to-seed noise together)" if s0 else "")
        lines.append(f"1. **The confound.** {s0}whole-1epoch-s2 {s2['value']:.3f}{gap}. The 400-step draws' 5-95% "
                     f"band is [{s2['band_lo']:.4f}, {s2['band_hi']:.3f}] and s2 ({s2['value']:.4f}) sits at their "
                     f"{s2['percentile']:.1f}th percentile, so it is "
                     + (f"inside or above it: fmnist-ref's finding **stands** on the {study.pool}." if stands else
                        f"below it: fmnist-ref's finding is **withdrawn** on the {study.pool}."))
    elif "whole-1epoch-s2" in study.against_400:
        lines.append("1. **The confound.** Pending: whole-1epoch-s2 has not finished.")
    if len(paired) < study.draws_1200:
        lines.append(f"2. **More steps for a random proxy.** Pending: {len(paired)} of {study.draws_1200} draws "
                     "at 1,200 steps have finished; PLAN.md's rule is applied once all have.")
    else:
        change = paired["kendall_all_change"]
        p = signed_rank_p(change)
        median_1200 = float(paired["kendall_all_after"].median())
        helps = median_1200 > hi_400 and p < 0.05
        lines.append(f"2. **More steps for a random proxy.** The {len(paired)} draws at 1,200 steps have median "
                     f"Kendall {median_1200:.3f}, against a 400-step 95th percentile of {hi_400:.3f}. Paired with "
                     f"themselves at 400 steps, their median change is {change.median():+.3f} "
                     f"({ups_and_downs(change)}), and the one-sided Wilcoxon "
                     f"signed-rank p (exact over all sign flips) is {p:.3f}: more "
                     + ("steps **help**." if helps else "steps **do not help** by PLAN.md's rule."))
    present = set(jobs["training_set"])
    draws_1200 = [d for d in study.names_1200 if d in present]
    if "whole-3epoch-s2" in kendall.index and len(draws_1200) == study.draws_1200:
        w3 = kendall.loc["whole-3epoch-s2"]
        room = w3["draws_as_good"] == 0
        lines.append(f"3. **Room for image choice at about 1,200 steps.** whole-3epoch-s2 {w3['value']:.3f}: "
                     f"percentile {w3['percentile']:.0f} among the {len(draws_1200)} draws (ties count half; 5-95% "
                     f"band [{w3['band_lo']:.3f}, {w3['band_hi']:.3f}]), so "
                     + ("there **is** room: it beats every draw." if room
                        else "there is **no** room by PLAN.md's rule: a draw matches it."))
    elif "whole-3epoch-s2" in study.against_1200:  # a line either way, so that the list keeps PLAN.md's numbers
        lines.append("3. **Room for image choice at about 1,200 steps.** Pending: whole-3epoch-s2 and all "
                     f"{study.draws_1200} draws at 1,200 steps have not finished.")
    for name in study.reused_proxies:
        if name not in kendall.index:
            lines.append(f"4. **Selection at 1,200 steps (descriptive).** Pending: {name} has not finished.")
            continue
        e = kendall.loc[name]
        lines.append(f"4. **Selection at 1,200 steps (descriptive).** {name} {e['value']:.3f}, percentile "
                     f"{e['percentile']:.0f} among {int(e['draws'])} draws. No claim either way: that would need 20 "
                     "draws and held-out pools.")
    return lines


def variant_verdict(variant: Variant, paired: pd.DataFrame, versus_1200: pd.DataFrame, cost: float,
                    hi_400: float, diverged: int = 0) -> str:
    """PLAN.md's rule for a variant, on Kendall over all candidates: ``paired`` pairs each draw at 400 steps with
    itself trained the variant's way, ``versus_1200`` with itself at 1,200 steps (descriptive); ``cost`` is the
    variant's median cost as a fraction of the whole-set search; ``hi_400`` rule 2's bar; ``diverged`` how many
    of the variant's jobs diverged (reported, not judged)."""
    head = f"{variant.question}. **{variant.title}.**"
    if len(paired) < variant.draws:
        return (f"{head} Pending: {len(paired)} of {variant.draws} draws at {variant.label} have finished; PLAN.md's "
                "rule is applied once all have.")
    after, change = paired["kendall_all_after"], paired["kendall_all_change"]
    missing = [what for what, bad in (("the 400-step bar", not np.isfinite(hi_400)),
                                      ("the cost", not np.isfinite(cost)),
                                      ("a draw's Kendall", bool(after.isna().any() or change.isna().any()))) if bad]
    if missing:
        return f"{head} Cannot be applied: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not a number."
    p = signed_rank_p(change)
    median = float(after.median())
    a, b, c = median > hi_400, p < 0.05, cost <= 0.10
    text = (f"{head} The {len(paired)} draws at {variant.label} have median Kendall {median:.3f}, against a 400-step "
            f"95th percentile of {hi_400:.3f} (a: {'passes' if a else 'fails'}). Paired with themselves at 400 steps, "
            f"their median change is {change.median():+.3f} ({ups_and_downs(change)}; one-sided p {p:.3f}; b: "
            f"{'passes' if b else 'fails'}). Their median cost is {cost:.2%} of the whole-set search (c: "
            f"{'passes' if c else 'fails'}). So it "
            + ("**keeps the gain within 10%**." if a and b and c
               else "**does not** keep the gain within 10% by PLAN.md's rule."))
    if diverged:
        text += f" {diverged} of its jobs diverged."
    if len(versus_1200) == len(paired):
        vs_1200 = versus_1200["kendall_all_change"]
        text += (f" Beside it, with no rule: against the same draws at 1,200 steps of batch 128, the median change "
                 f"is {vs_1200.median():+.3f} ({ups_and_downs(vs_1200)}; two-sided p "
                 f"{signed_rank_p(vs_1200, 'two-sided'):.3f}).")
    return text


LABELS = [("kendall_all", "Kendall (all)", ".3f"), ("ndcg_top{k}", "NDCG@{k} (top quartile)", ".3f"),
          ("regret", "regret (points)", ".2f")]


def draws_by_budget_markdown(study: Study, paired: pd.DataFrame, by_variant: list[pd.DataFrame]) -> list[str]:
    """Each draw's Kendall at 400 steps and at every other budget whose draws have all finished, with the change
    from 400 steps; a line for each budget still under way."""
    others = [("1,200 steps", paired, study.draws_1200),
              *((v.label, f, v.draws) for v, f in zip(study.variants, by_variant))]
    frames = [(label, frame.set_index("before")) for label, frame, n in others if n and len(frame) == n]
    pending = [f"{label}: shown once all {n} draws have finished ({len(frame)} so far)." for label, frame, n in others
               if n and len(frame) < n]
    if not frames:
        return pending
    names = [n for n in study.names_400 if all(n in f.index for _, f in frames)]
    head = ["400 steps", "Kendall at 400"]
    columns = [names, [f"{frames[0][1].loc[n, 'kendall_all_before']:.3f}" for n in names]]
    for label, frame in frames:
        head += [f"Kendall at {label}", "change from 400"]
        columns += [[f"{frame.loc[n, 'kendall_all_after']:.3f}" for n in names],
                    [f"{frame.loc[n, 'kendall_all_change']:+.3f}" for n in names]]
    return [*markdown_table(head, [list(r) for r in zip(*columns)]), *([""] + pending if pending else [])]


def analyse(study: Study, config: PipelineConfig, n_boot: int) -> list[str]:
    """Write budget.csv, paired.csv and budget.png; return the README's body."""
    directory = study.directory
    jobs = study_jobs(study)
    jobs.to_csv(directory / "jobs.csv", index=False)
    k = top_quartile_k(jobs.loc[jobs["training_set"] == "whole", "candidate"].nunique())
    labels = [(m.format(k=k), label.format(k=k), f) for m, label, f in LABELS]
    trains = train_configs(study, config)
    cost = cost_fractions(jobs)["fraction_of_whole"]
    by_budget = budgets(study, jobs)
    table = budget_rows(by_budget, jobs, trains, cost, k, n_boot)
    table.to_csv(directory / "budget.csv", index=False)
    present = set(jobs["training_set"])

    def pairs(before, after):
        return [(b, a) for b, a in zip(before, after) if a in present and b in present]

    def paired_of(done, comparison):
        frame = paired_draws(jobs, done, k=k) if done else pd.DataFrame(columns=["before", "after"])
        return frame.assign(comparison=comparison)

    pairs_1200 = pairs(study.names_400, study.names_1200)
    pairs_variant = [pairs(study.names_400, v.names) for v in study.variants]
    same_images(study, pairs_1200 + [pair for done in pairs_variant for pair in done])
    paired = paired_of(pairs_1200, "400 against 1,200 steps")
    by_variant = [paired_of(done, f"400 steps against {v.label}") for v, done in zip(study.variants, pairs_variant)]
    versus_1200 = [paired_of(pairs(study.names_1200, v.names), f"1,200 steps against {v.label}")
                   for v in study.variants]
    pd.concat([paired, *by_variant, *versus_1200], ignore_index=True).to_csv(directory / "paired.csv", index=False)
    drawn = [d for _, draws, _ in by_budget for d in draws]
    metrics = draw_metrics(jobs, drawn, k=k) if drawn else pd.DataFrame()
    # per budget, each metric's median and 5-95% band over its draws (None for a budget without draws)
    spreads = [{m: place_among(metrics.loc[draws, m], float("nan")) for m, _, _ in labels} if draws else None
               for _, draws, _ in by_budget]
    hi_400 = spreads[0]["kendall_all"]["band_hi"] if spreads[0] else float("nan")  # rule 2's and the variants' bar
    ceiling = noise_ceiling(jobs, k=k, n_boot=n_boot)
    rows = []
    for proxy, group in table.groupby("proxy", sort=False):
        g = group.set_index("metric")
        first = g.iloc[0]
        rows.append([proxy, int(first["steps"]), f"{first['fraction_of_whole']:.1%}",
                     *(f"{g.loc[m, 'value']:{f}} [{g.loc[m, 'lo']:{f}}, {g.loc[m, 'hi']:{f}}], "
                       f"{g.loc[m, 'percentile']:.0f}" for m, _, f in labels)])
    draw_steps = dict(zip(drawn, steps_of(jobs, trains, drawn)))
    for (_, draws, _), spread in zip(by_budget, spreads):
        if draws:
            train = trains[draws[0]]
            rows.append([f"random 100 per class, batch {train.batch_size}, lr {train.lr:g} ({len(draws)} draws): "
                         "median [5%, 95%]", draw_steps[draws[0]], f"{cost.reindex(draws).median():.1%}",
                         *(f"{spread[m]['draw_median']:{f}} [{spread[m]['band_lo']:{f}}, {spread[m]['band_hi']:{f}}]"
                           for m, _, f in labels)])
    whole_steps = trains["whole"].steps(int(jobs.loc[jobs["training_set"] == "whole", "images"].iloc[0]))
    rows.append(["noise ceiling: whole set, seed vs seed", whole_steps, "100%",
                 *(f"{ceiling[m]:{f}}" for m, _, f in labels)])
    points = table.pivot(index="proxy", columns="metric", values="value").reset_index(names="name")
    points["label"] = points["name"].str.replace("-e150", ", 1,200 steps").str.replace("-pc100", " 100/class")
    points["pair"] = np.nan
    draws = metrics.reset_index(names="name")
    draws["budget"] = draws["name"].map({d: label for label, names, _ in by_budget for d in names})
    draw_index = {n: i for names in (study.names_400, study.names_1200, *(v.names for v in study.variants))
                  for i, n in enumerate(names)}
    draws["pair"] = draws["name"].map(draw_index)
    points = pd.concat([points, draws], ignore_index=True)
    points["cost"] = points["name"].map(cost)
    plot_budget(points, directory / "budget.png", [(m, label) for m, label, _ in labels[:2]], ceiling=ceiling,
                title=f"{study.pool}, {len(candidate_means(jobs, 'whole'))} candidates",
                x=("cost", "cost: fraction of the whole-set search"), x_percent=True,
                x_goal=(0.10, "the issue's cost goal (10%)"))
    verdict = verdicts(study, jobs, table, paired, hi_400)
    verdict += [variant_verdict(v, p, p_1200, float(cost.reindex(v.names).median()), hi_400,
                                int(jobs.loc[jobs["training_set"].isin(v.names), "diverged"].sum()))
                for v, p, p_1200 in zip(study.variants, by_variant, versus_1200)]
    return ["Plan, predictions and decision rules, fixed before the data: [PLAN.md](PLAN.md). Config: "
            f"[config.yaml](config.yaml). The whole set's 10-epoch jobs (the ground truth) and the 400-step proxies "
            f"are the {study.pool}'s ([../{study.source.name}/](../{study.source.name}/README.md)).", "",
            "## PLAN.md's rules applied", "", *verdict, "",
            "## Every set against the random draws of its budget", "",
            "Each cell: value [95% bootstrap CI over candidates], percentile among the random draws of the same "
            "budget (400 or 1,200 steps). Cost: the set's search (its jobs' seconds, one training seed) plus "
            "building its proxy (the scoring run and selection; none for random) as a fraction of the whole set's "
            "10-epoch search at one seed."
            + (" The entropy proxy was built once, for the development pool, and reused here: its building is "
               "counted in both of its rows but was spent once." if study.reused_proxies else ""), "",
            *markdown_table(["training set", "SGD steps", "cost", *(label for _, label, _ in labels)], rows), "",
            "![budget](budget.png)", "",
            "## Each random draw at every budget (the same images)", "",
            *draws_by_budget_markdown(study, paired, by_variant), ""]
