"""Benchmark: the share of a short rung job's wall time spent outside its training loop, validating on the whole
validation split or on a fixed stratified part of it (``TrainConfig.val_images``), and what the part costs the ranking.

Candidates of the development pool train on a 100-per-class random proxy of Fashion-MNIST for 400 SGD steps (50
epochs at batch 128: a screening rung), through the runner (journal storage, one worker in this process), once with
each validation: the training is bit for bit the same (evaluation draws no random numbers), so the runs differ only
in what they validate on. It prints, side by side, each way's median share of the job's wall time outside the loop,
and the Kendall tau between the candidates' accuracies on the part and on the whole split (1: the same ranking).

    python scripts/bench_rung_eval.py                      # 8 candidates, 2,000 validation images: ~6 min on 2 cores
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from scipy import stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=8, help="how many of the development pool's 16 (every k-th)")
    ap.add_argument("--val-images", type=int, default=2000)
    args = ap.parse_args()

    from nasprune.data import load_dataset
    from nasprune.proxies import build_proxy
    from nasprune.search import Experiment, load_jobs, run_search

    pool = Experiment.load("results/proxy-benchmark").candidates
    candidates = pool[:: max(1, len(pool) // args.candidates)][: args.candidates]
    data = load_dataset("fashion-mnist")
    train = {"epochs": 50, "batch_size": 128, "lr": 0.01, "eval_test": False}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        build_proxy(data, method="random", per_class=100, seed=0).save(directory / "proxy.json")
        Experiment(name="bench-rung-eval", dataset={"name": "fashion-mnist"}, candidates=candidates, seeds=[0],
                   training_sets={"all": {"proxy": "proxy.json", "train": train},
                                  "part": {"proxy": "proxy.json", "train": {**train, "val_images": args.val_images}}}
                   ).save(directory)
        run_search(directory, workers=0, progress=False, log=None)
        jobs = load_jobs(directory)
    jobs["outside"] = (jobs["wall_seconds"] - jobs["seconds"]) / jobs["wall_seconds"]
    by = jobs.pivot(index="candidate", columns="training_set", values=["outside", "val_acc", "seconds"])
    tau = stats.kendalltau(by["val_acc"]["all"], by["val_acc"]["part"])[0]
    print(f"{len(candidates)} candidates, 400 steps on 1,000 images each")
    print(f"training loop, median s:          whole split {by['seconds']['all'].median():.2f}   "
          f"part {by['seconds']['part'].median():.2f}")
    print(f"outside the loop, median share:    whole split (10,000 images) {by['outside']['all'].median():.1%}   "
          f"part ({args.val_images:,} images) {by['outside']['part'].median():.1%}")
    print(f"outside the loop, max share:       whole split {by['outside']['all'].max():.1%}   "
          f"part {by['outside']['part'].max():.1%}")
    print(f"Kendall tau, part against whole split: {tau:.3f}; "
          f"largest accuracy difference {np.abs(by['val_acc']['all'] - by['val_acc']['part']).max():.2f} points")
    print(f"ratio of the outside shares (part / whole split): "
          f"{by['outside']['part'].median() / by['outside']['all'].median():.2f}")


if __name__ == "__main__":
    main()
