"""The proxy benchmark's write-up (``results/proxy-benchmark*/README.md``): from a pool's finished jobs, the ground
truth's settling and noise ceiling, random as a distribution size by size, every method against the draws of its
size, PLAN.md's rules applied (``rules.py``), and the cost; the CSVs and the plot beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from nasprune.analysis import (candidate_means, ci_text, complete_sets, cost_fractions, markdown_table, paper_scale,
                               plot_size_sweep, read_pool, settling, size_sweep_markdown, whole_variants)
from nasprune.proxies import needs_scoring_run
from nasprune.search import load_history, load_jobs
from nasprune.workflows import PipelineConfig

from .rules import (CONFIRM_MAX_REGRET, CONFIRM_PERCENTILE, PLAN_DRAWS, chance_qualifications, choose_defaults,
                    choose_network, confirm, primary_metrics)

__all__ = ["analyse", "metrics", "paper_scale_lines"]


def metrics(k: int) -> list[tuple[str, str, str]]:
    return [("kendall_all", "Kendall (all)", ".3f"), (f"ndcg_top{k}", f"NDCG@{k} (top quartile)", ".3f"),
            ("regret", "regret (points)", ".2f"), ("spearman_top10", "Spearman (proxy's top 10)", ".3f")]


def _rel(path: Path, directory: Path) -> str:
    """``path`` as a link from a README in ``directory``."""
    return os.path.relpath(path, directory)


def _num(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.3f}"


def _steps(exp, jobs: pd.DataFrame, training_set: str, epochs: int | None = None) -> int:
    """SGD steps of ``training_set``'s jobs (after ``epochs``, default all of them): budgets compare in steps."""
    images = int(jobs.loc[jobs["training_set"] == training_set, "images"].iloc[0])
    return exp.training_sets[training_set].train.steps(images, epochs)


def ground_truth_lines(exp, jobs: pd.DataFrame, history: pd.DataFrame, ceiling: dict, k: int) -> list[str]:
    lines = ["## Ground truth", ""]
    if not history.empty:
        table = settling(history)
        rows = [[int(r.epoch), _steps(exp, jobs, "whole", int(r.epoch)), int(r.candidates),
                 *(_num(v) for v in (r.kendall_vs_last, r.spearman_vs_last, r.kendall_top25pct_vs_last,
                                     r.seed_kendall))]
                for r in table.itertuples()]
        lines += ["Does the whole set's ranking settle? Its ranking (mean over seeds) at each epoch against the last "
                  "epoch's, and its two seeds' agreement at that epoch. SGD steps: the training up to that epoch, "
                  "to set beside a proxy's (in 'Random as a distribution'; the whole set's learning rate is "
                  "still high there, a proxy's has annealed):", "",
                  *markdown_table(["epoch", "SGD steps", "candidates", "Kendall vs last", "Spearman vs last",
                                   "Kendall vs last (last's top 25%)", "seed vs seed Kendall"], rows), ""]
    if ceiling.get("pairs"):
        rows = [[label, ci_text(pd.Series(ceiling), m, f)] for m, label, f in metrics(k)]
        lines += [f"**Noise ceiling** over {ceiling['candidates']} candidates: seed {ceiling['seeds'][0]}'s ranking "
                  f"against seed {ceiling['seeds'][1]}'s and back (mean of the two orders) with a 95% bootstrap "
                  "interval. A proxy is scored against the mean of both seeds, which is less noisy than one seed, "
                  "so it can land a little above this; no proxy can be expected far above it.", "",
                  *markdown_table(["metric", "whole vs itself [95% CI]"], rows), ""]
    return lines


def spread_lines(exp, jobs: pd.DataFrame, spread: pd.DataFrame, ceiling: dict, classes: int, k: int) -> list[str]:
    """Random as a distribution at every size (with or without other proxies; ``spread`` is
    `nasprune.analysis.random_spread`), beside the noise ceiling."""
    if spread.empty:
        return []
    table = spread.rename(columns={"band_lo": "median_lo", "band_hi": "median_hi"}).set_index(["per_class", "metric"])
    shown = metrics(k)
    draws = jobs[jobs["method"] == "random"].groupby("images")["training_set"].first()

    def cell(per_class: int, metric: str, f: str) -> str:  # n/a: no draw has it (top-10 Spearman of 3 candidates)
        return ci_text(table.loc[(per_class, metric)], "median", f) if (per_class, metric) in table.index else "n/a"

    rows = [[per_class, _steps(exp, jobs, draws[per_class * classes]),
             int(table.loc[(per_class, "kendall_all"), "draws"]), *(cell(per_class, m, f) for m, _, f in shown)]
            for per_class in sorted(spread["per_class"].unique())]
    ceiling_row = [["ceiling", _steps(exp, jobs, "whole"), "",
                    *(_num(ceiling.get(m, float("nan"))) for m, _, _ in shown)]] if ceiling else []
    return ["## Random as a distribution", "",
            "Per size, the random draws' median and 5-95% band (`nasprune.analysis.random_spread`) and the SGD "
            "steps each draw trains; the last row is the whole set against itself (the noise ceiling).", "",
            *markdown_table(["per class", "SGD steps", "draws",
                             *(f"{label}: median [5%, 95%]" for _, label, _ in shown)], rows + ceiling_row), ""]


def variant_lines(exp, jobs: pd.DataFrame, variants: pd.DataFrame, k: int) -> list[str]:
    """The whole set trained another way (`nasprune.analysis.whole_variants`), placed among every size's draws."""
    if variants.empty:
        return []
    steps = ", ".join(f"{name} {_steps(exp, jobs, name)}" for name in variants["proxy"].unique())
    return ["## The whole set at other budgets", "",
            "Training sets that hold every image of the whole set, trained another way (config.yaml says why each "
            "was added and the rule it was added with). They are no random draws: each is placed among the random "
            "draws of every size, as a method is among those of its own size. SGD steps per job: "
            f"{steps}.", "",
            *size_sweep_markdown(variants, metrics(k), heading="Against the random draws at {per_class} images "
                                                               "per class ({candidates} candidates)")]


def confirmation_lines(directory: Path, defaults_csv: Path, jobs: pd.DataFrame, sweep: pd.DataFrame, classes: int,
                       k: int, seeds: int, candidates: int) -> list[str]:
    """PLAN.md's confirmation on a held-out pool: the development pool's defaults (``defaults_csv``) at the 95th
    percentile and 0.5 points of regret; writes confirmation.csv. Provisional while the whole set has fewer
    than its ``seeds`` seeds finished on all ``candidates``."""
    chosen = pd.read_csv(defaults_csv)
    proxies = list(chosen.loc[chosen["default"] != "random", "default"])
    done = int((jobs[jobs["training_set"] == "whole"].groupby("seed")["candidate"].nunique() >= candidates).sum())
    table = confirm(sweep, k, proxies, ground_truth_complete=done >= seeds)
    table.to_csv(directory / "confirmation.csv", index=False)
    primary = primary_metrics(k)
    rows = [[r["per_class"], r["proxy"], *(f"{r[m]:.3f} ({r[f'{m}_percentile']:.0f})" for m in primary),
             f"{r['regret']:.2f}", r["draws"],
             ("yes" if r["confirmed"] else "no") + (" so far" if r["provisional"] else "")]
            for _, r in table.iterrows()]
    waiting = [p for p in proxies if p not in set(table["proxy"])]
    chance = chance_qualifications(jobs, classes=classes, k=k, min_percentile=CONFIRM_PERCENTILE,
                                   max_regret=CONFIRM_MAX_REGRET)
    lines = ["## Confirmation (held-out pool)", "",
             "This pool was not used for choosing. PLAN.md's rule: the development pool's default at a size "
             f"([{_rel(defaults_csv, directory)}]({_rel(defaults_csv, directory)})) is confirmed here when it is at "
             f"or above the {CONFIRM_PERCENTILE:.0f}th percentile of this pool's draws of its size on both primary "
             f"metrics ({' and '.join(primary)}) and its regret is at most {CONFIRM_MAX_REGRET} points. The project "
             "README says 'selection beats random' at a size only where every held-out pool confirms it; elsewhere "
             "it recommends random. Each cell: value (percentile among the draws); also in confirmation.csv.", "",
             *markdown_table(["per class", "default (development pool)", *primary, "regret", "draws", "confirmed"],
                             rows), ""]
    if waiting:
        lines += [f"Not yet finished on every candidate: {', '.join(waiting)}.", ""]
    few = table[table["draws"] < PLAN_DRAWS]
    if len(few):
        lines += [f"**Provisional**: fewer than PLAN.md's {PLAN_DRAWS} draws so far for {', '.join(few['proxy'])}.",
                  ""]
    if done < seeds:
        lines += [f"**Provisional**: the ground truth has {done} of its {seeds} seeds finished on every candidate "
                  "so far (until then a candidate's accuracy is the mean of the seeds it has); the verdicts stand "
                  "only when every seed has finished.", ""]
    if len(chance):
        lines += ["**The same test on random draws.** Each draw against the other draws of its size: "
                  f"{chance['qualified'].sum()} of {chance['draws'].sum()} pass "
                  f"({', '.join(f'{r.qualified} of {r.draws} at {r.per_class}' for r in chance.itertuples())} per "
                  "class): how often a proxy no better than random would be confirmed here.", ""]
    return lines


def cost_lines(jobs: pd.DataFrame, config: PipelineConfig) -> list[str]:
    c = cost_fractions(jobs)
    if len(c) < 2:
        return []
    variants = whole_variants(jobs)  # the whole set trained another way: no proxy, so no proxy's cost
    scoring = {s.name: config.scoring_of(s) if needs_scoring_run(s.method) else (None, "none")
               for s in config.proxies.resolved() if s.name not in variants}
    rows = []
    for file in sorted({f for _, f in scoring.values()}):
        done = [n for n, (_, f) in scoring.items() if f == file and n in c.index]
        if not done:
            continue
        spec = scoring[done[0]][0]
        label = "no scoring run (random)" if spec is None else f"{file}: {spec.spec}, {spec.train.epochs} epochs"
        f = c.loc[done]
        rows.append([label, len(done), f"{f['search_seconds'].median() / 60:.1f}",
                     f"{f['proxy_seconds'].median() / 60:.1f}", f"{f['fraction_of_whole'].median():.1%}",
                     f"{f['fraction_of_whole'].min():.1%}-{f['fraction_of_whole'].max():.1%}"])
    return ["## Cost", "",
            f"The whole set's search at one seed ({len(candidate_means(jobs, 'whole'))} candidates, "
            f"{config.search.whole_train.epochs} epochs): "
            f"{c.loc['whole', 'search_seconds'] / 60:.1f} min of training. Each proxy's search (its jobs' training "
            "seconds) plus building it (its scoring run, shared by the proxies that read it but counted in full for "
            "each, and the selection), as a fraction of that; the issue's goal is at most 10%. Seconds as the jobs "
            "recorded them, two workers sharing this machine's two cores.", "",
            *markdown_table(["pruning network", "proxies", "search (min, median)", "building (min, median)",
                             "fraction of whole (median)", "range"], rows), ""]


def paper_scale_lines(jobs: pd.DataFrame, classes: int, per_class: int = 100) -> list[str]:
    """The cost extrapolated to the paper's Table 1 (720 candidates, 100 epochs on proxy and whole set alike)."""
    scale = paper_scale(jobs)
    scale = scale[scale["images"] == per_class * classes]
    if scale.empty:
        return []
    method = jobs.groupby("training_set")["method"].first()
    family = [("random" if method[t] == "random" else t) for t in scale.index]  # the draws in one row
    pool = len(candidate_means(jobs, "whole"))  # the candidates paper_scale amortises the building over
    rows = [[name, len(g), f"{g['per_image_ratio'].median():.2f}", f"{g['search_fraction'].median():.2%}",
             f"{g['building_fraction'].median():.3%}", f"{g['fraction_of_whole'].median():.2%}"]
            for name, g in scale.groupby(family)]
    return ["### At the paper's scale (extrapolated)", "",
            "The paper's Table 1 trains 720 candidates for 100 epochs on the proxy and on the whole set alike "
            "(its random proxy: 113 of 3,029 V100-minutes, 3.7%, building not counted). Extrapolated from this "
            "pool's jobs (`nasprune.analysis.paper_scale`): the proxy's images over the whole set's 50,000, times "
            "its measured training seconds per image relative to the whole set's (below 1: a small set runs faster "
            f"per image here), plus building the proxy once for 720 candidates instead of this pool's {pool} (in units "
            "of the whole set's mean seconds per candidate-epoch measured here). Assumes both sides scale alike to "
            "CIFAR-10 and the paper's nets; a GPU's per-image ratio for tiny sets is likely worse than this CPU's.",
            "", *markdown_table([f"proxy ({per_class} per class)", "sets", "per-image ratio", "search",
                                 "building", "fraction of whole (median)"], rows), ""]


def network_lines(config: PipelineConfig, sweep: pd.DataFrame, defaults: pd.DataFrame, jobs: pd.DataFrame,
                  k: int) -> list[str]:
    """PLAN.md's rule for the pruning network, at every size that has proxies from other networks."""
    lines = []
    specs = config.proxies.resolved()
    seconds = jobs.groupby("training_set")["proxy_minutes"].first() * 60
    for r in defaults.itertuples():
        same = [s for s in specs if s.method == r.method and s.per_class == r.per_class]
        if r.method == "random" or not any(s.scoring for s in same):
            if any(s.scoring and s.per_class == r.per_class for s in specs):
                lines.append(f"- {r.per_class} per class: the default is random, so the pruning network stays "
                             "the default one (PLAN.md).")
            continue
        ordered = sorted(same, key=lambda s: (not s.scoring, seconds.get(s.name, float("inf"))))
        chosen = choose_network(sweep, k, [s.name for s in ordered])
        lines.append(f"- {r.per_class} per class, {r.method}: of {', '.join(s.name for s in ordered)} (cheapest "
                     f"first), the first that qualifies is {chosen or 'none'}.")
    return ["## The pruning network (PLAN.md)", "", *lines, ""] if lines else []


def chance_lines(jobs: pd.DataFrame, sweep: pd.DataFrame, defaults: pd.DataFrame, classes: int, k: int) -> list[str]:
    """How many qualifications the rule gives by chance: each random draw judged against the other draws."""
    chance = chance_qualifications(jobs, classes=classes, k=k)
    if not len(chance):
        return []
    rate = chance["qualified"].sum() / chance["draws"].sum()
    tries = sweep[sweep["metric"] == "kendall_all"]["proxy"].nunique()
    found = sum(len(q.split(", ")) for q in defaults["qualified"] if q)
    rows = [[r.per_class, r.draws, r.qualified, f"{100 * r.rate:.0f}%"] for r in chance.itertuples()]
    return ["**How often the rule qualifies a random proxy.** Each random draw judged by the same rule against the "
            "other draws of its size (19 of 20, leave one out): "
            f"{chance['qualified'].sum()} of {chance['draws'].sum()} draws qualify ({100 * rate:.0f}%). The rule "
            f"was tried on {tries} method-size pairs, so chance alone gives about {rate * tries:.1f} "
            f"qualifications; the methods got {found}. This is why a default is only a candidate until the held-out "
            "pools confirm it at the stricter 95th percentile.", "",
            *markdown_table(["per class", "draws", "draws that qualify", "rate"], rows), ""]


def analyse(config: PipelineConfig, directory: Path, n_boot: int,
            confirm_from: Path | None = None) -> tuple[list[str], pd.DataFrame]:
    """Write the CSVs and the plot; return the README's body and the sweep. A development pool gets the decision
    rule (defaults.csv); a held-out pool (``confirm_from``: the development pool's defaults.csv) gets the
    confirmation of those defaults instead (confirmation.csv)."""
    held_out = confirm_from is not None
    plan = _rel(confirm_from.parent / "PLAN.md", directory) if held_out else "PLAN.md"
    jobs = load_jobs(directory)
    jobs.to_csv(directory / "jobs.csv", index=False)
    history = load_history(directory)
    history.to_csv(directory / "history.csv", index=False)
    exp = config.experiment()
    classes = config.dataset.load().num_classes
    reading = read_pool(jobs, classes=classes, candidates=len(exp.candidates), n_boot=n_boot)
    k, ceiling, sweep, variants, spread = reading.k, reading.ceiling, reading.sweep, reading.variants, reading.spread
    sweep.to_csv(directory / "sweep.csv", index=False)
    if len(variants):
        variants.to_csv(directory / "whole_variants.csv", index=False)
    body = [f"{len(jobs)} of {len(exp.jobs())} jobs finished; {len(complete_sets(jobs)) - 1 if len(jobs) else 0} "
            f"of {len(exp.training_sets) - 1} proxies finished on every candidate the whole set has finished "
            f"({reading.whole_done} of {len(exp.candidates)}). The plan, the metrics and the decision rule were fixed "
            f"before the data: [PLAN.md]({plan}). Config: "
            "[config.yaml](config.yaml); jobs: jobs.csv, history.csv; per size and proxy: sweep.csv.", ""]
    body += ground_truth_lines(exp, jobs, history, ceiling, k)
    if spread is not None:
        body += spread_lines(exp, jobs, spread, ceiling, classes, k)
    other_networks = [s.name for s in config.proxies.resolved() if s.scoring]  # judged by the network rule only
    if held_out and reading.whole_done:
        body += confirmation_lines(directory, confirm_from, jobs, sweep, classes, k, len(config.search.seeds),
                                   len(exp.candidates))
    if len(sweep):
        plot_size_sweep(sweep[~sweep["proxy"].isin(other_networks)], directory / "sweep.png",
                        [(m, label) for m, label, _ in metrics(k)], ceiling=ceiling, title=config.name, spread=spread)
        primary = primary_metrics(k)
        body += ["## Proxies against random, size by size", "",
                 "Each proxy's value with its 95% bootstrap interval over candidates, its percentile among the random "
                 "draws of its size (the share it beats, ties half) and how many draws are as good or better (the "
                 f"one-sided p-value of 'no better than random'). Primary metrics: {' and '.join(primary)}.", "",
                 "![sweep](sweep.png)", "", *size_sweep_markdown(sweep, metrics(k))]
    body += variant_lines(exp, jobs, variants, k)
    if len(sweep) and not held_out:
        defaults = choose_defaults(sweep, k, exclude=other_networks)
        defaults.to_csv(directory / "defaults.csv", index=False)
        rows = [[r.per_class, r.default, r.qualified or "none", "" if pd.isna(r.mean_percentile) else
                 f"{r.mean_percentile:.0f}", r.draws] for r in defaults.itertuples()]
        body += ["## The decision rule applied (development pool)", "",
                 "PLAN.md's rule: a method qualifies at a size when it is at or above the 80th percentile of the "
                 "draws on both primary metrics and its regret is at most the draws' median; the default is the "
                 "qualifier with the highest mean percentile, else random. "
                 + ("" if (defaults["draws"] >= PLAN_DRAWS).all()
                    else f"Provisional until every size has its {PLAN_DRAWS} draws. ")
                 + "A default other than random is a candidate for the held-out pools, not yet a claim.", "",
                 *markdown_table(["per class", "default", "qualified", "mean primary percentile", "draws"], rows), ""]
        body += chance_lines(jobs, sweep[~sweep["proxy"].isin(other_networks)], defaults, classes, k)
        body += network_lines(config, sweep, defaults, jobs, k)
    body += cost_lines(jobs, config) + paper_scale_lines(jobs, classes)
    return body, sweep
