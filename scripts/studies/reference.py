"""The reference NAS experiment (the paper's Table 1, section 6.5, at CPU scale): ``fmnist-ref`` run, resumed
and written up in results/fmnist-ref/.

Runs (or resumes) ``nasprune run fmnist-ref`` -- the scoring run, every proxy, every (training set,
candidate, seed) job through the Optuna journal -- then writes, from the finished jobs alone:

    jobs.csv, table1.csv, table1.md, proxy_vs_whole.png, table1.png    (nasprune.analysis.write_report)
    paired.csv     ours minus each baseline, paired bootstrap over the same candidates
    README.md      scale-down against the paper, progress, goals checked with numbers, provenance

The tables come from ``nasprune.analysis``; what is this experiment's own is its goals and its scale-down.

    python scripts/reference_experiment.py              # run what is missing, then write up
    python scripts/reference_experiment.py --analyse    # write up the jobs finished so far
    python scripts/reference_experiment.py --analyse --dir COPY   # write up a copy (results/README.md untouched)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from nasprune.analysis import (paired_differences, paired_markdown, proxies_markdown, replace_block, train_settings,
                               write_readme, write_report)
from nasprune.provenance import provenance
from nasprune.proxies import ProxySet
from nasprune.search import job_status
from nasprune.workflows import PipelineConfig

from .common import run_unless_analysing, study_parser


DIR = Path("results/fmnist-ref")
OURS = "influence"
BASELINES = ("random", "herding", "forgetting", "grand", "el2n", "kcenter", "influence_score")
PAIRED_METRICS = ("spearman_top10", "kendall_all", "regret")


def paired(jobs: pd.DataFrame, n_boot: int) -> pd.DataFrame:
    """Ours minus each baseline that has finished jobs, per metric (regret: lower is better)."""
    return paired_differences(jobs, [(OURS, b) for b in BASELINES], PAIRED_METRICS, n_boot=n_boot)


def goals(table: pd.DataFrame, pairs: pd.DataFrame) -> list[str]:
    """The goals this experiment was run to check (Top-10 Spearman, regret, ahead of the baselines, cost), each with
    the measured number."""
    t = table.set_index("training_set")
    if OURS not in t.index:
        return ["- No job on the dataset-pruning proxy has finished yet."]
    ours = t.loc[OURS]
    whole_search = t.loc["whole", "search_minutes"]
    proxy_cost = ours.search_minutes + ours.proxy_minutes
    out = [f"- Top-10 Spearman >= 0.9: **{ours.spearman_top10:.3f}** [{ours.spearman_top10_lo:.3f}, "
           f"{ours.spearman_top10_hi:.3f}] -> {'met' if ours.spearman_top10 >= 0.9 else 'not met'}.",
           f"- Regret <= 0.5 points: **{ours.regret:.2f}** [{ours.regret_lo:.2f}, {ours.regret_hi:.2f}] -> "
           f"{'met' if ours.regret <= 0.5 else 'not met'}."]
    for b in ("random", "herding", "forgetting"):
        g = pairs[pairs.versus == b].set_index("metric")
        if g.empty:
            out.append(f"- Ahead of {b}: not measured yet (no finished jobs on {b}).")
            continue
        s, k = g.loc["spearman_top10"], g.loc["kendall_all"]
        ahead = s.lo > 0 and k.lo > 0
        out.append(f"- Ahead of {b} (paired 95% CI above 0): top-10 Spearman {s.estimate:+.3f} [{s.lo:+.3f}, "
                   f"{s.hi:+.3f}], Kendall {k.estimate:+.3f} [{k.lo:+.3f}, {k.hi:+.3f}] over {int(s.candidates)} "
                   f"candidates -> {'yes' if ahead else 'no'}.")
    out.append(f"- Proxy search cost <= 5% of the whole-set search: ({ours.search_minutes:.1f} min training + "
               f"{ours.proxy_minutes:.1f} min scoring run and selection) / {whole_search:.1f} min = "
               f"**{proxy_cost / whole_search:.1%}** -> {'met' if proxy_cost <= 0.05 * whole_search else 'not met'}"
               " (over the jobs finished so far on each set).")
    out.append(f"  Training the candidates on the proxy alone costs {ours.search_minutes / whole_search:.1%} of the "
               "whole-set search, because the scale-down trains each candidate for few whole-set epochs and many proxy "
               "epochs (table above); the one scoring run costs "
               f"{ours.proxy_minutes / whole_search:.0%} of "
               "the whole-set search.")
    return out


def anatomy(directory: Path, config: PipelineConfig) -> list[str]:
    """Each proxy's selection facts (``nasprune.analysis.proxies_markdown``) and how to read them."""
    proxies = {s.name: ProxySet.load(directory / "proxies" / f"{s.name}.json") for s in config.proxies.resolved()}
    return ["## The proxies", "", *proxies_markdown(proxies), "",
            "T is the sum of all S_i. How the choice of target and l2 changes the proxy's ranking is measured "
            "on 16 other candidates in `results/objective-study/` (its table lists the objective beside "
            "norm(T) for every setting).", ""]


def write_up(directory: Path, config: PipelineConfig, table: pd.DataFrame, pairs: pd.DataFrame,
             status: pd.DataFrame, prov: dict) -> None:
    """README.md: progress, the scale-down against the paper, the proxies, the goals, Table 1, the paired table."""
    done = int((status.state == "complete").sum())
    by_set = status.assign(done=status.state == "complete").groupby("training_set", sort=False).done.sum()
    search = config.search
    scoring_minutes = ProxySet.load(directory / "proxies" / f"{OURS}.json").stats["scoring_seconds"] / 60
    lines = [
        "Generated by `python scripts/reference_experiment.py` from `nasprune/configs/fmnist-ref.yaml` (copied "
        "here as `pipeline.yaml`) and the finished jobs; do not edit by hand. `table1.csv` is recomputed from "
        "`jobs.csv` alone by `python scripts/table1_from_jobs.py results/fmnist-ref/jobs.csv`.",
        "",
        f"**Progress: {done} of {len(status)} jobs finished** "
        f"({', '.join(f'{k} {v}' for k, v in by_set.items())}). Workers take jobs seed by seed, so seed 0 of every "
        "training set comes before seed 1." + (" The run is not finished: tables cover finished jobs only, and "
                                              "accuracies of a set with one seed finished are that seed's."
                                              if done < len(status) else ""),
        "",
        "## Scale-down against the paper",
        "",
        "| | paper (Table 1) | here |",
        "|---|---|---|",
        "| data | CIFAR-10, 50,000 training images | Fashion-MNIST, 50,000 train / 10,000 val / 10,000 test |",
        f"| candidates | 720 ConvNets, widths 32-256 | {len(config.search.candidate_ids())} ConvNets, widths 8-32, stratified "
        "(every level of every factor; draw seed 2, the first whose estimated cost fit the budget), disjoint from "
        "the objective study's |",
        f"| proxy training | 100 epochs | {train_settings(search.proxy_train)} |",
        f"| whole-set training | 100 epochs | {train_settings(search.whole_train)} |",
        f"| seeds | 1 | {list(search.seeds)} |",
        "| pruning network | ResNet-18 (authors' code) | w64-d3-relu-instancenorm-avgpooling, 64-d bottleneck, 6 "
        f"epochs ({scoring_minutes:.0f} min, measured while other jobs shared the 2 cores) |",
        f"| our proxy | literal Eq. 4 | Eq. 4 with {config.proxies.influence} |",
        "",
        *anatomy(directory, config),
        "## Goals (same run)",
        "",
        *goals(table, pairs),
        "",
        "## Table 1",
        "",
        *(directory / "table1.md").read_text().splitlines()[2:],
        "",
        "![Table 1](table1.png)",
        "",
        "![proxy against whole-set accuracy](proxy_vs_whole.png)",
        "",
        "## Ours minus each baseline (paired bootstrap over the same candidates, 95% CI)",
        "",
        *paired_markdown(pairs, keys=("versus", "metric")),
        "",
    ]
    write_readme(directory / "README.md", "fmnist-ref: the reference NAS experiment at CPU scale", lines, prov)


#: The results index's block that shows this experiment's Table 1 (``nasprune.analysis.replace_block``).
BLOCK = "fmnist-ref table1"


def embed_table(readme: Path, directory: Path) -> None:
    """Replace the block :data:`BLOCK` of ``readme`` (the results index) with Table 1 and its plot; a README without
    the block is left alone."""
    text = readme.read_text()
    if f"<!-- begin {BLOCK} -->" not in text:
        return
    table = (directory / "table1.md").read_text().splitlines()[2:]
    image = os.path.relpath(directory / "table1.png", readme.parent)
    replace_block(readme, BLOCK, ["<!-- written by scripts/reference_experiment.py; do not edit by hand -->", "",
                                  *table, "", f"![Table 1 of fmnist-ref]({image})", ""])


def main() -> None:
    ap = study_parser(__doc__)
    ap.add_argument("--dir", default=str(DIR), help=f"the run directory (default {DIR}; another one leaves the "
                    "results index alone)")
    args = ap.parse_args()
    start = time.perf_counter()
    directory = Path(args.dir)
    config = PipelineConfig.load("fmnist-ref")
    run_unless_analysing(config, directory, args, "scripts/reference_experiment.py")
    write_report(directory, n_boot=args.n_boot)
    table = pd.read_csv(directory / "table1.csv")
    jobs = pd.read_csv(directory / "jobs.csv")
    pairs = paired(jobs, args.n_boot)
    pairs.to_csv(directory / "paired.csv", index=False)
    # wall_seconds is this invocation's (only the write-up with --analyse); the experiment's own compute is
    # the jobs' summed wall time, which a later write-up keeps
    prov = provenance(time.perf_counter() - start, seeds=list(config.search.seeds), proxy_seed=config.proxies.seed,
                      analyse_only=args.analyse, jobs_wall_seconds=round(float(jobs["wall_seconds"].sum()), 1))
    write_up(directory, config, table, pairs, job_status(directory), prov)
    if directory == DIR:
        embed_table(Path("results/README.md"), DIR)
    print((directory / "README.md").read_text())


if __name__ == "__main__":
    main()
