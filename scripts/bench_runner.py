"""Benchmark: what the runner costs on top of plain ``train_candidate()`` calls, for proxy-sized jobs.

The same jobs (small ConvNets on a 1,000-image random proxy of Fashion-MNIST, a few epochs, evaluated on
the whole validation and test splits) run twice, each in a fresh process, alternating:

- plain: one script that loads the data and proxy, then loops ``train_candidate`` (the runner's job);
- runner: ``nasprune search --workers 1`` on a fresh experiment (journal storage).

It prints both wall times and their ratio, then splits the runner's extra cost into a per-job part
(claiming, writing metrics: the trial's claim-to-complete time minus the job's own time) and a fixed
part (the parent's start and checks, spawning the worker, loading the data there). Goal: under 5% per
job. ``--throughput`` also runs the jobs with 1 and with 2 workers and prints jobs per hour (goal: 2
workers >= 1.7x on 2 cores; only meaningful on an otherwise idle machine).

    python scripts/bench_runner.py                 # 12 jobs, 1,000 images, 3 epochs
    python scripts/bench_runner.py --jobs 24 --throughput
    python scripts/bench_runner.py --threads 1     # steadier on a machine shared with other jobs

Measured (2-core VM shared with two other CPU-bound jobs, load ~3.5; --threads 1, 12 jobs of 3.6 s,
2 rounds): bookkeeping 47 ms per job (1.3%); fixed extra start-up 6.2 s (the parent's checks and the
worker's start), i.e. 10% end to end at 12 jobs per worker and under 5% from 48 jobs per worker.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CANDIDATES = ["w8-d1-relu-none-avgpooling", "w16-d2-relu-instancenorm-avgpooling",
              "w8-d2-leakyrelu-batchnorm-maxpooling", "w16-d1-sigmoid-none-maxpooling", "w8-d1-relu-groupnorm-none",
              "w16-d2-leakyrelu-layernorm-avgpooling"]


def make_experiment(directory: Path, args) -> None:
    from nasprune.data import load_dataset
    from nasprune.proxies import ProxySet
    from nasprune.search import Experiment

    data = load_dataset(args.dataset)
    rng = np.random.default_rng(0)
    per_class = args.images // data.num_classes
    kept = np.concatenate([rng.choice(np.flatnonzero(data.train_y.numpy() == c), per_class, replace=False)
                           for c in range(data.num_classes)])
    directory.mkdir(parents=True, exist_ok=True)
    ProxySet.from_selection(data, kept, "random").save(directory / "proxy.json")
    n_cands = min(len(CANDIDATES), args.jobs)
    Experiment(name="bench", dataset={"name": args.dataset}, candidates=CANDIDATES[:n_cands],
               training_sets={"random": {"proxy": "proxy.json", "train": {"epochs": args.epochs}}},
               seeds=list(range(int(np.ceil(args.jobs / n_cands))))).save(directory)


def plain(directory: str, threads: int) -> None:
    """The baseline, run as its own process: the same jobs as a plain loop of train_candidate() calls (the
    runner's job itself, without the runner). Prints JSON."""
    import torch

    from nasprune.search import Experiment
    from nasprune.proxies import ProxySet
    from nasprune.training import train_candidate

    torch.set_num_threads(threads)
    exp = Experiment.load(directory)
    data = exp.dataset.load()
    x, y = ProxySet.load(Path(directory) / "proxy.json", data).tensors(data)
    walls = []
    for _, candidate, seed in exp.jobs():
        start = time.perf_counter()
        train_candidate(candidate, data, x, y, exp.training_sets["random"].config(data.mean, data.std, seed))
        walls.append(time.perf_counter() - start)
    print(json.dumps({"job_walls": walls}))


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - start, out


def run_plain(directory: Path, threads: int) -> dict:
    wall, out = timed([sys.executable, __file__, "--plain", str(directory), "--threads", str(threads)])
    walls = json.loads(out.strip().splitlines()[-1])["job_walls"]
    return {"wall": wall, "jobs": sum(walls), "n": len(walls)}


def run_runner(directory: Path, workers: int, threads: int | None = None) -> dict:
    """``nasprune search`` on the experiment; with the trials' claim and completion times, split its wall
    time into the jobs, the bookkeeping between and around them (``busy``: first claim to last
    completion), and the start and end of the command."""
    from datetime import datetime

    from nasprune.search import load_jobs

    t0 = time.time()
    wall, _ = timed([sys.executable, "-m", "nasprune.cli", "search", "--experiment", str(directory),
                     "--workers", str(workers), "--no-progress"] + (["--threads", str(threads)] if threads else []))
    jobs = load_jobs(directory)
    first = min(datetime.fromisoformat(t).timestamp() for t in jobs["started"])
    last = max(datetime.fromisoformat(t).timestamp() for t in jobs["completed"])
    return {"wall": wall, "jobs": jobs["wall_seconds"].sum(), "busy": last - first, "outside": wall - (last - first),
            "n": len(jobs), "t0": t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--images", type=int, default=1000, help="proxy size (default 1000)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--jobs", type=int, default=12)
    p.add_argument("--repeats", type=int, default=2, help="alternating plain/runner rounds (default 2)")
    p.add_argument("--throughput", action="store_true", help="also compare 1 and 2 workers")
    p.add_argument("--plain", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=None, help="torch threads for both (default: all cpus)")
    args = p.parse_args()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if args.plain:
        return plain(args.plain, args.threads or cpus)

    print(f"# bench_runner: {platform.node()}, {cpus} cpus, {platform.processor() or platform.machine()}, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    print(f"# {args.jobs} jobs: {args.images} {args.dataset} images, {args.epochs} epochs, ConvNets w8-w16 d1-d2, "
          "each evaluated on the full val and test splits")
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for r in range(args.repeats):
            d = Path(tmp) / f"round{r}"
            make_experiment(d, args)
            pl = run_plain(d, args.threads or cpus)
            rn = run_runner(d, 1, args.threads)
            per_job = (rn["busy"] - rn["jobs"]) / rn["n"]  # with one worker, jobs run back to back
            fixed = rn["outside"] - (pl["wall"] - pl["jobs"])  # start and end, beyond what plain needs
            rows.append((pl, rn, per_job, fixed))
            print(f"round {r}: plain {pl['wall']:.1f} s (jobs {pl['jobs']:.1f} s) | runner {rn['wall']:.1f} s "
                  f"(jobs {rn['jobs']:.1f} s) | runner/plain {rn['wall'] / pl['wall']:.3f} | per-job storage "
                  f"{1000 * per_job:.0f} ms = {100 * per_job / (rn['jobs'] / rn['n']):.2f}% of a job | extra fixed "
                  f"start-up {fixed:.1f} s")
        pl_wall = np.mean([r[0]["wall"] for r in rows])
        rn_wall = np.mean([r[1]["wall"] for r in rows])
        job = np.mean([r[1]["jobs"] / r[1]["n"] for r in rows])  # as the runner measured its jobs
        per_job = np.mean([r[2] for r in rows])
        fixed = np.mean([r[3] for r in rows])
        print(f"mean: plain {pl_wall:.1f} s, runner {rn_wall:.1f} s, ratio {rn_wall / pl_wall:.3f} (end to end, "
              f"{args.jobs} jobs; on a shared machine this ratio mostly measures the neighbours)")
        print(f"per job: {job:.2f} s of work, {1000 * per_job:.0f} ms runner bookkeeping "
              f"({100 * per_job / job:.2f}%); fixed extra start-up {fixed:.1f} s, amortised "
              f"{100 * (per_job + fixed / args.jobs) / job:.1f}% at {args.jobs} jobs per worker; under 5% from "
              f"{int(np.ceil(fixed / max(0.05 * job - per_job, 1e-9)))} jobs per worker")
        if args.throughput:
            rates = {}
            for w in (1, 2):
                d = Path(tmp) / f"workers{w}"
                make_experiment(d, args)
                rn = run_runner(d, w)
                rates[w] = 3600 * rn["n"] / rn["wall"]
                print(f"{w} worker(s): {rn['wall']:.1f} s, {rates[w]:.0f} jobs/hour")
            print(f"throughput 2 workers / 1 worker: {rates[2] / rates[1]:.2f}x (goal >= 1.7x)")


if __name__ == "__main__":
    main()
