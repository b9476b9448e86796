"""Choose the proxy benchmark's competitive held-out pool (results/proxy-benchmark/PLAN.md) before any of its
whole-set jobs run: candidates likely to lie within a few points of each other, where ranking is hard.

The screen: the 64 ConvNets of widths 16-32, depths 2-3, ReLU or leaky ReLU, a normalisation layer and pooling
(the strong corner of the 720-grid), minus the development pool and fmnist-ref's candidates, each trained once
(seed 0) on one random 100-per-class proxy (selection seed 1000, none of the benchmark's draws) as the
benchmark trains proxies. The pool is the ``--pool`` candidates of highest screen accuracy.

    python scripts/competitive_pool.py          # run what is missing, then write the pool
    python scripts/competitive_pool.py --analyse

Writes ``results/competitive-pool/``: the screen's experiment and journal, jobs.csv, pool.txt (one id per
line, best first) and README.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nasprune.analysis import candidate_means, markdown_table, write_readme
from nasprune.data import DatasetSpec
from nasprune.provenance import provenance
from nasprune.proxies import build_proxy
from nasprune.search import Experiment, TrainingSet, exit_on_interrupt, load_jobs, run_search
from nasprune.training import TrainConfig
from search_spaces import convnet_720


DIR = Path("results/competitive-pool")
SCREEN_SEED = 1000
GRID = dict(widths=(16, 32), depths=(2, 3), acts=("relu", "leakyrelu"),
            norms=("batchnorm", "instancenorm", "groupnorm", "layernorm"), pools=("avgpooling", "maxpooling"))
USED = (Path("results/objective-study"), Path("results/fmnist-ref"))  # pools already spent


def screen_experiment() -> Experiment:
    used = {c for d in USED for c in Experiment.load(d).candidates}
    candidates = [s.id for s in convnet_720(**GRID) if s.id not in used]
    train = TrainConfig(epochs=50, batch_size=128, lr=0.01, eval_test=False)
    return Experiment(name="competitive-screen", dataset=DatasetSpec("fashion-mnist", val_size=10000, seed=0),
                      candidates=candidates, training_sets={"screen": TrainingSet("proxies/screen.json", train)},
                      seeds=[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--analyse", action="store_true", help="only write the pool from the jobs finished so far")
    ap.add_argument("--pool", type=int, default=24, help="candidates in the pool")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    start = time.perf_counter()
    exp = screen_experiment()
    if not args.analyse:
        proxy = DIR / "proxies" / "screen.json"
        if not proxy.exists():
            build_proxy(exp.dataset.load(), None, "random", 100, seed=SCREEN_SEED).save(proxy)
        exp.save(DIR)
        with exit_on_interrupt("scripts/competitive_pool.py"):
            run_search(DIR, workers=args.workers)
    jobs = load_jobs(DIR)
    jobs.to_csv(DIR / "jobs.csv", index=False)
    screen = candidate_means(jobs, "screen")["val_acc"].dropna().sort_values(ascending=False)
    pool = list(screen.index[:args.pool])
    body = [f"{len(screen)} of {len(exp.candidates)} candidates screened. Rule (fixed before the screen): the "
            f"{args.pool} of highest validation accuracy after 50 epochs on one random 100-per-class proxy "
            f"(selection seed {SCREEN_SEED}, training seed 0); grid {GRID}, minus the candidates of "
            f"{', '.join(str(d) for d in USED)}.", ""]
    if len(screen) == len(exp.candidates):
        (DIR / "pool.txt").write_text("\n".join(pool) + "\n")
        kept = screen.loc[pool]
        body += [f"The pool (pool.txt): screen accuracies {kept.min():.2f}-{kept.max():.2f}% (spread "
                 f"{kept.max() - kept.min():.2f} points).", ""]
    else:
        body += ["The pool is written once every candidate is screened.", ""]
    rows = [[i + 1, f"`{c}`", f"{v:.2f}", "pool" if c in pool and len(screen) == len(exp.candidates) else ""]
            for i, (c, v) in enumerate(screen.items())]
    body += markdown_table(["rank", "candidate", "screen val acc (%)", ""], rows) + [""]
    write_readme(DIR / "README.md", "Competitive pool: the screen", body,
                 provenance(time.perf_counter() - start, seeds=[0], selection_seed=SCREEN_SEED,
                            analyse_only=args.analyse))
    print(f"{len(screen)} of {len(exp.candidates)} screened; {DIR / 'README.md'} written")


if __name__ == "__main__":
    main()
