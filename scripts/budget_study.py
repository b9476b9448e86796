"""The budget study (results/proxy-benchmark-budget/PLAN.md): what a larger SGD-step budget buys a proxy on the
development pool, and whether fmnist-ref's 'whole set at one epoch' finding survives a training seed the ground
truth does not share.

Runs (or resumes) ``results/proxy-benchmark-budget/config.yaml``. Before its first job, it copies from the
development pool (``results/proxy-benchmark/``) the whole set's finished jobs (the same ground truth, not
trained again) and the proxy files it reuses. It then writes from the finished jobs alone:

    jobs.csv        one row per finished job read: this study's, the copied ground truth and the development
                    pool's 400-step sets it compares with
    budget.csv      per training set: SGD steps, each metric against the ground truth, percentile among the
                    random draws of its budget, cost against the whole-set search
    paired.csv      each random draw at 400 and at 1,200 steps (the same images)
    budget.png      Kendall against SGD steps
    README.md       the tables, PLAN.md's rules applied, provenance

    python scripts/budget_study.py              # run what is missing, then analyse
    python scripts/budget_study.py --analyse    # analyse what has finished so far
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from nasprune.benchmark import complete_sets, costs, paired_draws, top_quartile_k
from nasprune.jobs import JobStore, copy_training_set, load_jobs
from nasprune.metrics import candidate_means, draw_metrics, noise_ceiling, random_null
from nasprune.pipeline import PipelineConfig, run_pipeline
from nasprune.provenance import provenance
from nasprune.report import markdown_table, plot_budget, write_readme
from nasprune.runner import exit_on_interrupt

DIR = Path("results/proxy-benchmark-budget")
DEV = Path("results/proxy-benchmark")
#: Proxy files of this study that select exactly what a development-pool proxy selected (only the training
#: differs): copied, not rebuilt (the pipeline checks that their settings match, nasprune.prune.check_reuse).
REUSED_PROXIES = {"entropy-pc100-e150": "entropy-pc100"}
#: PLAN.md's comparisons: each budget's random draws (development pool's at 400 steps, this study's at 1,200)
#: and the sets read against them.
DRAWS_400 = [f"random-pc100-d{d}" for d in range(20)]
DRAWS_1200 = [f"random-pc100-e150-d{d}" for d in range(8)]
AGAINST_400 = ["whole-1epoch-s2", "whole-1epoch-s0", "entropy-pc100"]
AGAINST_1200 = ["whole-3epoch-s2", "entropy-pc100-e150"]


def reuse_development_pool(config: PipelineConfig, directory: Path, dev: Path) -> None:
    """Copy the development pool's whole-set jobs and reused proxy files into ``directory``, once."""
    (directory / "proxies").mkdir(parents=True, exist_ok=True)
    for name, source in REUSED_PROXIES.items():
        if not (directory / "proxies" / f"{name}.json").exists():
            shutil.copyfile(dev / "proxies" / f"{source}.json", directory / "proxies" / f"{name}.json")
    config.experiment().save(directory)
    if "whole" not in JobStore.open(directory).study_ids:
        print(f"copied {copy_training_set(dev, directory, 'whole')} whole-set jobs from {dev}")


def study_jobs(directory: Path, dev: Path) -> pd.DataFrame:
    """This study's finished jobs with the development pool's 400-step sets it reads, complete sets only."""
    own = load_jobs(directory)
    theirs = load_jobs(dev)
    read = DRAWS_400 + list(REUSED_PROXIES.values())
    jobs = pd.concat([own, theirs[theirs["training_set"].isin(read)]], ignore_index=True)
    return jobs[jobs["training_set"].isin(complete_sets(jobs))]


def steps_of(jobs: pd.DataFrame, config: PipelineConfig, names) -> list[int]:
    """SGD steps of each proxy training set in ``names``, from its jobs' images and epochs."""
    info = jobs.groupby("training_set")[["images", "epochs"]].first()
    return [config.search.proxy_train.steps(int(info.loc[n, "images"]), int(info.loc[n, "epochs"])) for n in names]


def budget_rows(jobs: pd.DataFrame, config: PipelineConfig, k: int, n_boot: int) -> pd.DataFrame:
    """Per set, against the random draws of its budget (:func:`nasprune.metrics.random_null`), with its SGD
    steps and its cost as a fraction of the whole-set search."""
    frames, present = [], set(jobs["training_set"])
    for draws, against in ((DRAWS_400, AGAINST_400), (DRAWS_1200, AGAINST_1200)):
        draws = [d for d in draws if d in present]
        against = [a for a in against if a in present]
        if draws and against:
            null = random_null(jobs, draws, against, k=k, n_boot=n_boot)
            frames.append(null[null["metric"].isin(["kendall_all", f"ndcg_top{k}", "regret"])])
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(table):
        table["steps"] = steps_of(jobs, config, table["proxy"])
        table["fraction_of_whole"] = table["proxy"].map(costs(jobs)["fraction_of_whole"])
    return table


def verdicts(jobs: pd.DataFrame, table: pd.DataFrame, paired: pd.DataFrame) -> list[str]:
    """PLAN.md's four rules applied to Kendall over all candidates, each with the numbers it reads."""
    kendall = table[table["metric"] == "kendall_all"].set_index("proxy")
    lines = []
    if {"whole-1epoch-s2", "whole-1epoch-s0"} <= set(kendall.index):
        s2, s0 = kendall.loc["whole-1epoch-s2"], kendall.loc["whole-1epoch-s0"]
        stands = s2["value"] >= s2["band_lo"]
        lines.append(f"1. **The confound.** whole-1epoch-s0 {s0['value']:.3f}, whole-1epoch-s2 {s2['value']:.3f} "
                     f"(s0 minus s2: {s0['value'] - s2['value']:+.3f}; one run each, so the difference holds the "
                     "shared seed and seed-to-seed noise together). The 400-step draws' 5-95% band is "
                     f"[{s2['band_lo']:.4f}, {s2['band_hi']:.3f}] and s2 ({s2['value']:.4f}) sits at their "
                     f"{s2['percentile']:.1f}th percentile, so it is "
                     + ("inside or above it: fmnist-ref's finding **stands**." if stands else
                        "below it: fmnist-ref's finding is **withdrawn**."))
    if len(paired) == len(DRAWS_1200):
        change = paired["kendall_all_change"].round(9)  # equal changes tie exactly, not up to float noise
        # the exact sign-flip distribution (2^n flips), which handles tied changes
        p = (stats.wilcoxon(change, alternative="greater", method=stats.PermutationMethod()).pvalue
             if (change != 0).any() else 1.0)
        median_1200 = float(paired["kendall_all_after"].median())
        hi_400 = float(kendall.loc[kendall.index.isin(AGAINST_400), "band_hi"].iloc[0])  # the 400-step draws' 95%
        helps = median_1200 > hi_400 and p < 0.05
        lines.append(f"2. **More steps for a random proxy.** The {len(paired)} draws at 1,200 steps have median "
                     f"Kendall {median_1200:.3f}, against a 400-step 95th percentile of {hi_400:.3f}. Paired with "
                     f"themselves at 400 steps, their median change is {change.median():+.3f} "
                     f"({int((change > 0).sum())} up, {int((change < 0).sum())} down), and the one-sided Wilcoxon "
                     f"signed-rank p (exact over all sign flips) is {p:.3f}: more "
                     + ("steps **help**." if helps else "steps **do not help** by PLAN.md's rule."))
    draws_1200 = [d for d in DRAWS_1200 if d in set(jobs["training_set"])]
    if "whole-3epoch-s2" in kendall.index and len(draws_1200) == len(DRAWS_1200):
        w3 = kendall.loc["whole-3epoch-s2"]
        room = w3["draws_as_good"] == 0
        lines.append(f"3. **Room for image choice at about 1,200 steps.** whole-3epoch-s2 {w3['value']:.3f}: "
                     f"percentile {w3['percentile']:.0f} among the {len(draws_1200)} draws (ties count half; 5-95% "
                     f"band [{w3['band_lo']:.3f}, {w3['band_hi']:.3f}]), so "
                     + ("there **is** room: it beats every draw." if room
                        else "there is **no** room by PLAN.md's rule: a draw matches it."))
    for name in (n for n in REUSED_PROXIES if n in kendall.index):
        e = kendall.loc[name]
        lines.append(f"4. **Selection at 1,200 steps (descriptive).** {name} {e['value']:.3f}, percentile "
                     f"{e['percentile']:.0f} among {int(e['draws'])} draws. No claim either way: that would need 20 "
                     "draws and held-out pools.")
    return lines


def analyse(config: PipelineConfig, directory: Path, dev: Path, n_boot: int) -> list[str]:
    """Write budget.csv, paired.csv and budget.png; return the README's body."""
    jobs = study_jobs(directory, dev)
    jobs.to_csv(directory / "jobs.csv", index=False)
    k = top_quartile_k(jobs.loc[jobs["training_set"] == "whole", "candidate"].nunique())
    table = budget_rows(jobs, config, k, n_boot)
    table.to_csv(directory / "budget.csv", index=False)
    done = [(b, a) for b, a in zip(DRAWS_400, DRAWS_1200) if a in set(jobs["training_set"])]
    paired = paired_draws(jobs, done, k=k) if done else pd.DataFrame()
    paired.to_csv(directory / "paired.csv", index=False)
    ceiling = noise_ceiling(jobs, k=k, n_boot=n_boot)
    labels = [("kendall_all", "Kendall (all)", ".3f"), (f"ndcg_top{k}", f"NDCG@{k} (top quartile)", ".3f"),
              ("regret", "regret (points)", ".2f")]
    rows = []
    for proxy, group in table.groupby("proxy", sort=False):
        g = group.set_index("metric")
        first = g.iloc[0]
        rows.append([proxy, int(first["steps"]), f"{first['fraction_of_whole']:.1%}",
                     *(f"{g.loc[m, 'value']:{f}} [{g.loc[m, 'lo']:{f}}, {g.loc[m, 'hi']:{f}}], "
                       f"{g.loc[m, 'percentile']:.0f}" for m, _, f in labels)])
    cost = costs(jobs)["fraction_of_whole"]
    present = [d for d in DRAWS_400 + DRAWS_1200 if d in set(jobs["training_set"])]
    draw_steps = dict(zip(present, steps_of(jobs, config, present)))
    for against, draws in ((AGAINST_400, DRAWS_400), (AGAINST_1200, DRAWS_1200)):
        read = [p for p in against if p in set(table["proxy"])]
        g = table[table["proxy"] == read[0]].set_index("metric") if read else pd.DataFrame()
        if len(g):
            rows.append([f"random 100 per class ({int(g['draws'].iloc[0])} draws): median [5%, 95%]",
                         draw_steps[draws[0]],
                         f"{cost.reindex(draws).median():.1%}",
                         *(f"{g.loc[m, 'draw_median']:{f}} [{g.loc[m, 'band_lo']:{f}}, {g.loc[m, 'band_hi']:{f}}]"
                           for m, _, f in labels)])
    whole_steps = config.search.whole_train.steps(int(jobs.loc[jobs["training_set"] == "whole", "images"].iloc[0]))
    rows.append(["noise ceiling: whole set, seed vs seed", whole_steps, "100%",
                 *(f"{ceiling[m]:{f}}" for m, _, f in labels)])
    points = table.pivot(index="proxy", columns="metric", values="value").reset_index()
    if len(points):
        points["steps"] = points["proxy"].map(table.groupby("proxy")["steps"].first())
        points["label"] = points["proxy"].str.replace("-e150", "").str.replace("-pc100", " 100/class")
        points["pair"] = np.nan
    draws = draw_metrics(jobs, present, k=k).reset_index(names="label")
    draws["steps"] = draws["label"].map(draw_steps)
    draws["pair"] = [int(d.rsplit("-d", 1)[1]) for d in draws["label"]]
    plot_budget(pd.concat([points, draws], ignore_index=True), directory / "budget.png",
                [(m, label) for m, label, _ in labels[:2]], ceiling=ceiling,
                title=f"development pool, {len(candidate_means(jobs, 'whole'))} candidates")
    return ["Plan, predictions and decision rules, fixed before the data: [PLAN.md](PLAN.md). Config: "
            "[config.yaml](config.yaml). The whole set's 10-epoch jobs (the ground truth) and the 400-step proxies "
            "are the development pool's ([../proxy-benchmark/](../proxy-benchmark/README.md)).", "",
            "## PLAN.md's rules applied", "", *verdicts(jobs, table, paired), "",
            "## Every set against the random draws of its budget", "",
            "Each cell: value [95% bootstrap CI over candidates], percentile among the random draws of the same "
            "budget (400 or 1,200 steps). Cost: the set's search (its jobs' seconds, one training seed) plus "
            "building its proxy (the scoring run and selection; none for random) as a fraction of the whole set's "
            "10-epoch search at one seed. The entropy proxy was built once, for the development pool, and reused "
            "here: its building is counted in both of its rows but was spent once.", "",
            *markdown_table(["training set", "SGD steps", "cost", *(label for _, label, _ in labels)], rows), "",
            "![budget](budget.png)", "",
            "## Each random draw at 400 and at 1,200 steps (the same images)", "",
            *markdown_table(["400 steps", "1,200 steps", "Kendall at 400", "Kendall at 1,200", "change"],
                            [[r.before, r.after, f"{r.kendall_all_before:.3f}", f"{r.kendall_all_after:.3f}",
                              f"{r.kendall_all_change:+.3f}"] for r in paired.itertuples()]), ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--analyse", action="store_true", help="only analyse the jobs finished so far")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()
    start = time.perf_counter()
    config = PipelineConfig.load(DIR / "config.yaml")
    if not args.analyse:
        reuse_development_pool(config, DIR, DEV)
        with exit_on_interrupt("scripts/budget_study.py"):
            run_pipeline(config, DIR, workers=args.workers, report=False)
    if "whole" not in JobStore.open(DIR).study_ids:
        ap.error(f"{DIR} has no ground truth yet: run without --analyse first")
    body = analyse(config, DIR, DEV, args.n_boot)
    jobs = pd.read_csv(DIR / "jobs.csv")
    exp = config.experiment()
    own = jobs["training_set"].isin(exp.training_sets) & (jobs["training_set"] != "whole")
    prov = provenance(time.perf_counter() - start, seeds=list(config.search.seeds), analyse_only=args.analyse,
                      train_seeds={s.name: exp.seeds_of(s.names()[0]) for s in config.proxies.entries()},
                      study_jobs=int(own.sum()), study_jobs_seconds=round(float(jobs.loc[own, "seconds"].sum()), 1),
                      jobs_wall_seconds_all_read=round(float(jobs["wall_seconds"].sum()), 1))
    write_readme(DIR / "README.md", "Budget study: what more SGD steps buy a proxy", body, prov)
    print(f"{len(jobs)} jobs read; {DIR / 'README.md'} written")


if __name__ == "__main__":
    main()
