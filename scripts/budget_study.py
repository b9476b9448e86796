"""The budget studies (scripts/studies/budget.py): what a larger SGD-step budget buys a random proxy, with each
study's plan and decision rules in its PLAN.md, fixed before its data:

    dev    results/proxy-benchmark-budget/       the development pool (16 candidates); also whether fmnist-ref's
                                                'whole set at one epoch' finding survives a training seed the
                                                ground truth does not share
    comp   results/proxy-benchmark-budget-comp/  the competitive pool (24 candidates, held out): the replication

Both also ask whether a variant of the 400-step training keeps the 1,200-step gain within 10% of the whole-set
search: the same draws trained about 1,200 steps of batch 32 (on a CPU a step costs about a quarter as much), or
400 steps at lr 0.03 (as far along the learning-rate schedule as 1,200 steps at lr 0.01).

Runs (or resumes) the study's ``config.yaml``. Before its first job, it copies from its source pool (the pool
whose proxy benchmark it extends) the whole set's finished jobs (the same ground truth, not trained again) and
the proxy files it reuses. It then writes from the finished jobs alone:

    jobs.csv        one row per finished job read: this study's, the copied ground truth and the source pool's
                    400-step sets it compares with
    budget.csv      per training set: SGD steps, each metric against the ground truth, percentile among the
                    random draws of its budget, cost against the whole-set search
    paired.csv      each random draw against itself at another budget (the same images, checked): 400 steps
                    against 1,200 and against each variant, and 1,200 steps against each variant (``comparison``)
    budget.png      Kendall and the top-quartile measure against cost
    README.md       the tables, PLAN.md's rules applied, provenance

    python scripts/budget_study.py [--study comp]              # run what is missing, then analyse
    python scripts/budget_study.py [--study comp] --analyse    # analyse what has finished so far
"""

from __future__ import annotations

import time

import pandas as pd

from nasprune.analysis import write_readme
from nasprune.provenance import provenance
from nasprune.search import JobStore
from nasprune.workflows import PipelineConfig
from studies.budget import STUDIES, analyse, reuse_source_pool
from studies.common import run_unless_analysing, study_parser


def main() -> None:
    ap = study_parser(__doc__)
    ap.add_argument("--study", choices=sorted(STUDIES), default="dev", help="which budget study (default: dev)")
    args = ap.parse_args()
    start = time.perf_counter()
    study = STUDIES[args.study]
    config = PipelineConfig.load(study.directory / "config.yaml")
    for prefix, names in ((study.random_1200, study.names_1200), *((v.prefix, v.names) for v in study.variants)):
        drawn = [n for e in config.proxies.entries() if e.name == prefix for n in e.names()]
        if drawn != names:
            ap.error(f"{study.directory}/config.yaml draws {drawn} as {prefix}, but the study pairs {names}")
    if not args.analyse:
        reuse_source_pool(config, study)
    run_unless_analysing(config, study.directory, args, "scripts/budget_study.py")
    if "whole" not in JobStore.open(study.directory).study_ids:
        ap.error(f"{study.directory} has no ground truth yet: run without --analyse first")
    body = analyse(study, config, args.n_boot)
    jobs = pd.read_csv(study.directory / "jobs.csv")
    exp = config.experiment()
    own = jobs["training_set"].isin(exp.training_sets) & (jobs["training_set"] != "whole")
    prov = provenance(time.perf_counter() - start, seeds=list(config.search.seeds), analyse_only=args.analyse,
                      study=args.study,
                      train_seeds={s.name: exp.seeds_of(s.names()[0]) for s in config.proxies.entries()},
                      study_jobs=int(own.sum()), study_jobs_seconds=round(float(jobs.loc[own, "seconds"].sum()), 1),
                      jobs_wall_seconds_all_read=round(float(jobs["wall_seconds"].sum()), 1))
    write_readme(study.directory / "README.md", f"Budget study, {study.pool}: what more SGD steps buy a proxy", body,
                 prov)
    print(f"{len(jobs)} jobs read; {study.directory / 'README.md'} written")


if __name__ == "__main__":
    main()
