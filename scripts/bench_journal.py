"""Benchmark: how many bytes a finished job adds to the journal file, and whether that grows with the job's wall time.

The same small search (``--jobs`` proxy jobs on a 500-image random proxy of Fashion-MNIST, journal storage, one
worker in this process) runs at two job lengths, ``--epochs`` short and long, with the heartbeat interval set to
``--heartbeat`` seconds (a short interval stands in for hours of real jobs at the default 30 s). For each it prints
the journal's bytes per finished job and the jobs' mean wall time; the last line is the ratio of bytes per job,
long against short. A journal whose size depends only on the jobs gives a ratio near 1; one that records every
heartbeat grows with the wall time.

    python scripts/bench_journal.py                      # 4 jobs, 2 and 40 epochs, heartbeat every 0.5 s
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

CANDIDATES = ["w8-d1-relu-none-avgpooling", "w8-d2-relu-instancenorm-avgpooling", "w8-d1-leakyrelu-batchnorm-none",
              "w8-d2-relu-groupnorm-maxpooling"]


def search(directory: Path, epochs: int, jobs: int, heartbeat: float) -> dict:
    from nasprune.data import load_dataset
    from nasprune.proxies import ProxySet
    from nasprune.search import Experiment, load_jobs, run_search

    data = load_dataset("fashion-mnist")
    rng = np.random.default_rng(0)
    kept = np.concatenate([rng.choice(np.flatnonzero(data.train_y.numpy() == c), 50, replace=False)
                           for c in range(data.num_classes)])
    directory.mkdir(parents=True, exist_ok=True)
    ProxySet.from_selection(data, kept, "random").save(directory / "proxy.json")
    Experiment(name="bench", dataset={"name": "fashion-mnist"}, candidates=CANDIDATES[:jobs],
               training_sets={"random": {"proxy": "proxy.json", "train": {"epochs": epochs, "eval_test": False}}},
               seeds=[0]).save(directory)
    run_search(directory, workers=0, progress=False, heartbeat=heartbeat, log=None)
    done = load_jobs(directory)
    size = (directory / "optuna.journal").stat().st_size
    return {"jobs": len(done), "bytes": size, "bytes_per_job": size / len(done),
            "job_seconds": float(done["wall_seconds"].mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--epochs", type=int, nargs=2, default=[2, 40], metavar=("SHORT", "LONG"))
    ap.add_argument("--heartbeat", type=float, default=0.5, help="seconds between heartbeats")
    args = ap.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for epochs in args.epochs:
            rows[epochs] = r = search(Path(tmp) / f"e{epochs}", epochs, args.jobs, args.heartbeat)
            print(f"{epochs} epochs: {r['jobs']} jobs of {r['job_seconds']:.1f} s wall each; journal {r['bytes']:,} "
                  f"bytes, {r['bytes_per_job']:,.0f} per job")
    short, long = (rows[e] for e in args.epochs)
    print(f"bytes per job, long / short: {long['bytes_per_job'] / short['bytes_per_job']:.2f} "
          f"(jobs {long['job_seconds'] / short['job_seconds']:.1f}x as long; heartbeat every {args.heartbeat} s)")


if __name__ == "__main__":
    main()
