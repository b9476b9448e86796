"""The budget study (results/proxy-benchmark-budget/PLAN.md): what a larger SGD-step budget buys a proxy on the
development pool, and whether fmnist-ref's 'whole set at one epoch' finding survives a training seed the ground
truth does not share.

Runs (or resumes) ``results/proxy-benchmark-budget/config.yaml``. Before its first job, it copies from the
development pool (``results/proxy-benchmark/``) the whole set's finished jobs (the same ground truth, not
trained again) and the proxy files it reuses. It then writes from the finished jobs alone:

    jobs.csv        one row per finished job of this study (the copied ground truth included)
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

from nasprune.jobs import JobStore, copy_training_set
from nasprune.pipeline import PipelineConfig, run_pipeline
from nasprune.runner import exit_on_interrupt

DIR = Path("results/proxy-benchmark-budget")
DEV = Path("results/proxy-benchmark")
#: Proxy files of this study that select exactly what a development-pool proxy selected (only the training
#: differs): copied, not rebuilt (the pipeline checks that their settings match, nasprune.prune.check_reuse).
REUSED_PROXIES = {"entropy-pc100-e150": "entropy-pc100"}


def reuse_development_pool(config: PipelineConfig, directory: Path, dev: Path = DEV) -> None:
    """Copy the development pool's whole-set jobs and reused proxy files into ``directory``, once."""
    (directory / "proxies").mkdir(parents=True, exist_ok=True)
    for name, source in REUSED_PROXIES.items():
        if not (directory / "proxies" / f"{name}.json").exists():
            shutil.copyfile(dev / "proxies" / f"{source}.json", directory / "proxies" / f"{name}.json")
    config.experiment().save(directory)
    if "whole" not in JobStore.open(directory).study_ids:
        print(f"copied {copy_training_set(dev, directory, 'whole')} whole-set jobs from {dev}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--analyse", action="store_true", help="only analyse the jobs finished so far")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()
    start = time.perf_counter()
    config = PipelineConfig.load(DIR / "config.yaml")
    if not args.analyse:
        reuse_development_pool(config, DIR)
        with exit_on_interrupt("scripts/budget_study.py"):
            run_pipeline(config, DIR, workers=args.workers, report=False)
    print(f"{time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
