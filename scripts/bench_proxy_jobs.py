"""Benchmark: proxy jobs through the runner end to end, today's runner (git 21f3929) against this tree's.

The workload is fmnist-ref's proxy search in small: candidates of widths 8, 16 and 32 from
``nasprune/configs/fmnist-ref.yaml`` (spread over each width's depths), one 1,000-image random proxy of
Fashion-MNIST (100 per class, ``nasprune.proxies.selection``'s random method), fmnist-ref's proxy training (50
epochs, batch 128, lr 0.01), evaluated on the 10,000 validation images and, by the old runner, the 10,000
test images (the new one runs proxies with ``eval_test: false``; ``--new-eval-test`` gives it both). Both get
the same experiment, each written by its own code, and run as ``nasprune search --workers W`` in a fresh
process, alternating old/new so that machine noise hits both alike. The old code is unpacked with
``git archive 21f3929`` into a temporary folder (nothing in this repository's git state changes).

Printed, per runner: jobs per hour, training images per second end to end, the fraction of worker time
outside the training loop (start-up, data, claiming, model building, evaluation, recording) and, per
width, the training loop's GFLOP/s as a fraction of this machine's fp32 matmul peak at the same thread
count (training FLOPs: 3x ``search_spaces.count_flops``).

``--profile`` first splits where a job's time goes, in one process through the runner (``workers=0``):
loading, queueing, claiming, model building, tensor preparation, the training loop, val and test
evaluation, recording and progress, timed by wrapping those functions (exclusive times). With fewer
epochs than fmnist-ref's, it also prints the split with the loop scaled to ``--scale-to`` epochs.

    python scripts/bench_proxy_jobs.py --quick --profile    # 6 candidates, 3 epochs, 1 round
    python scripts/bench_proxy_jobs.py                      # 12 candidates, 50 epochs, 2 rounds
    python scripts/bench_proxy_jobs.py --epochs 10 --profile --rounds 1

Measured once with ``--quick --profile`` (2-core VM shared with four other agents, load about 1 at the
start; absolute times are noise, fractions less so; rerun on a quiet machine). Profile, loop scaled to 50
epochs, share of wall: old loop 70.2%, val eval 13.9%, test eval 14.2%, load 1.3%; new loop 90.5%, val
eval 7.6% (batches of 128 instead of 2048), test eval 0 (``eval_test: false``), load 1.7%. End to end at
3 epochs (evaluation-bound, so not fmnist-ref's ratio): 683 -> 1463 jobs per hour (2.14x); training loop
at 8% / 13% / 24% of the 1-thread matmul peak for widths 8 / 16 / 32, the same in both.
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
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OLD_REV = "21f3929"
PER_CLASS = 100


# --- Setup: trees, candidates, experiments -------------------------------------------------------------------------


def unpack(rev: str, into: Path) -> Path:
    """The repository at ``rev`` as plain files (``git archive``: reads the object store, writes nothing in it)."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "nasprune", "search_spaces"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def candidates(per_width: int) -> list[str]:
    """``per_width`` fmnist-ref candidates of each width 8, 16, 32, evenly spread over that width's list."""
    from nasprune.workflows import PipelineConfig

    ids = PipelineConfig.load("fmnist-ref").search.candidate_ids()
    chosen = []
    for w in (8, 16, 32):
        mine = [c for c in ids if c.startswith(f"w{w}-")]
        chosen += [mine[i] for i in np.linspace(0, len(mine) - 1, per_width).round().astype(int)]
    return chosen


def proxy_train() -> dict:
    from nasprune.workflows import PipelineConfig

    train = PipelineConfig.load("fmnist-ref").search.proxy_train
    return {"epochs": train.epochs, "batch_size": train.batch_size, "lr": train.lr}


def write_experiment(directory: Path, tree: Path, cands: list[str], train: dict, indices: Path, *,
                     eval_test: bool = True) -> None:
    """The experiment as JSON both versions read, and its proxy file written by ``tree``'s own code."""
    directory.mkdir(parents=True)
    doc = {"format": "nasprune.experiment/1", "name": "bench", "candidates": cands, "seeds": [0],
           "dataset": {"name": "fashion-mnist", "val_size": 10000, "seed": 0},
           "training_sets": {"random": {"proxy": "proxy.json", "train": train if eval_test else
                                        {**train, "eval_test": False}}}}
    (directory / "experiment.json").write_text(json.dumps(doc, indent=2))
    in_tree(tree, ["--setup", str(directory), str(indices)])


def setup_proxy(directory: str, indices: str) -> None:
    """Run inside a tree: the proxy file from the shared indices, with that tree's ProxySet."""
    from nasprune.data import load_dataset
    from nasprune.proxies import ProxySet

    data = load_dataset("fashion-mnist", val_size=10000, seed=0)
    ProxySet.from_selection(data, np.load(indices), "random").save(Path(directory) / "proxy.json")


def in_tree(tree: Path, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """This script, run with ``tree`` first on the path (so ``import nasprune`` is that tree's)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([sys.executable, __file__, *args], env=env, cwd=tree, check=True, capture_output=True,
                          text=True, **kwargs)


# --- Profile: where a job's time goes ------------------------------------------------------------------------------


class Splits:
    """Exclusive wall time per category: a wrapped call's time goes to its category, minus what wrapped
    calls inside it took."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.stack: list[list] = []

    def enter(self, name: str) -> None:
        now = time.perf_counter()
        if self.stack:
            self.total[self.stack[-1][0]] += now - self.stack[-1][1]
        self.stack.append([name, now])

    def leave(self) -> None:
        now = time.perf_counter()
        name, since = self.stack.pop()
        self.total[name] += now - since
        if self.stack:
            self.stack[-1][1] = now

    def wrap(self, owner, attr: str, name) -> None:
        """Time ``owner.attr`` as ``name`` (a string, or a function of the call stack's names giving one or None)."""
        fn = getattr(owner, attr, None)
        if fn is None:
            return

        def timed(*args, **kwargs):
            label = name([s[0] for s in self.stack]) if callable(name) else name
            if label is None:
                return fn(*args, **kwargs)
            self.enter(label)
            try:
                return fn(*args, **kwargs)
            finally:
                self.leave()

        setattr(owner, attr, timed)


def profile_in_tree(directory: str, threads: int) -> None:
    """Run inside a tree: the experiment's jobs in this process through ``run_search``, with splits. Prints JSON."""
    import optuna
    import torch

    try:  # this tree: the stages' subpackages; the runner calls load() from its own module
        import nasprune.search._runner as runner
        import nasprune.training._loop as train_module
        from nasprune.search import load_jobs, run_search

        loader = "load"
    except ImportError:  # 21f3929: flat modules
        import nasprune.runner  # noqa: F401
        import nasprune.train  # noqa: F401

        runner, train_module = sys.modules["nasprune.runner"], sys.modules["nasprune.train"]  # not same-named functions
        run_search, load_jobs, loader = runner.run_search, runner.load_jobs, "_load"

    splits = Splits()
    phases = {"claim", "queue", "progress", "load", "studies"}
    evals = {"n": 0}

    def eval_name(stack):
        evals["n"] += 1
        return "eval val" if evals["n"] % 2 == 1 else "eval test"

    def reset_evals(stack):
        evals["n"] = 0
        return "training loop"

    splits.wrap(runner, "prepare", "studies")
    splits.wrap(runner, loader, "load")
    trainer = runner if hasattr(runner, "build_convnet") else train_module  # 21f3929 or train_candidate
    splits.wrap(trainer, "build_convnet", "build model")
    splits.wrap(trainer, "train", reset_evals)
    splits.wrap(train_module, "evaluate", eval_name)
    splits.wrap(train_module, "to_float", "prepare tensors")
    try:  # this tree: the job life cycle in nasprune.search's JobStore
        from nasprune.search import JobStore

        for attr, name in (("claim", "claim"), ("top_up", "queue"), ("recover", "queue"), ("complete", "record"),
                           ("summary", "progress"), ("status_rows", "progress")):
            splits.wrap(JobStore, attr, name)
    except ImportError:  # 21f3929: functions in nasprune._jobstore, recording inline in runner._run_job
        import nasprune._jobstore as store

        for attr, name in (("claim", "claim"), ("top_up", "queue"), ("recover", "queue")):
            splits.wrap(store, attr, name)
        splits.wrap(runner, "_summary", "progress")
    storage = optuna.storages.JournalStorage
    for attr in ("set_trial_user_attr", "set_trial_state_values"):  # writes of a finished job, where not a phase
        splits.wrap(storage, attr, lambda stack: None if phases & set(stack) or "record" in stack else "record")

    torch.set_num_threads(threads)
    start = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        stderr, sys.stderr = sys.stderr, devnull  # the progress bar runs (as in a real search) but is not shown
        try:
            run_search(directory, workers=0, threads=threads, progress=True)
        finally:
            sys.stderr = stderr
    wall = time.perf_counter() - start
    jobs = load_jobs(directory)
    print(json.dumps({"wall": wall, "splits": dict(splits.total), "loop_seconds": float(jobs["seconds"].sum()),
                      "jobs": len(jobs), "epochs": int(jobs["epochs"].max())}))


ORDER = ["load", "studies", "queue", "claim", "build model", "prepare tensors", "training loop", "eval val",
         "eval test", "record", "progress", "other"]


def split_table(results: dict[str, dict], scale_to: int | None) -> str:
    """Fractions of wall time per category for each runner, measured and with the loop scaled."""
    lines = []
    for label, scale in (("measured", None), (f"loop scaled to {scale_to} epochs", scale_to)):
        if scale is not None and all(r["epochs"] == scale for r in results.values()):
            continue
        lines.append(f"{'share of wall (' + label + ')':38s}" + "".join(f"{name:>10s}" for name in results))
        fractions = {}
        for name, r in results.items():
            parts = dict(r["splits"])
            parts["other"] = max(0.0, r["wall"] - sum(parts.values()))
            if scale is not None:
                parts["training loop"] *= scale / r["epochs"]
            total = sum(parts.values())
            fractions[name] = {k: parts.get(k, 0.0) / total for k in ORDER}
            fractions[name]["outside the loop"] = 1 - fractions[name]["training loop"]
        for k in ORDER + ["outside the loop"]:
            lines.append(f"  {k:36s}" + "".join(f"{100 * fractions[n][k]:9.1f}%" for n in results))
    return "\n".join(lines)


# --- End to end: `nasprune search` ---------------------------------------------------------------------------------


def search(tree: Path, directory: Path, workers: int, threads: int | None) -> dict:
    """``nasprune search`` of ``tree`` on the experiment; wall time and the jobs it recorded."""
    from nasprune.search import load_jobs

    cmd = [sys.executable, "-m", "nasprune.cli", "search", "--experiment", str(directory), "--workers", str(workers),
           "--no-progress"] + (["--threads", str(threads)] if threads else [])
    start = time.perf_counter()
    subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree, check=True, capture_output=True)
    wall = time.perf_counter() - start
    return {"wall": wall, "jobs": load_jobs(directory)}


def matmul_gflops(threads: int, n: int = 1024, reps: int = 10) -> float:
    """fp32 matmul GFLOP/s at ``threads`` threads, best of ``reps``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    torch.set_num_threads(old)
    return 2 * n**3 / best / 1e9


def summarise(run: dict, workers: int, peak: float) -> dict:
    from search_spaces import ConvNetSpec, count_flops

    jobs = run["jobs"].copy()
    jobs["width"] = [ConvNetSpec.from_id(c).width for c in jobs["candidate"]]
    jobs["gflops"] = [3 * count_flops(ConvNetSpec.from_id(c), 1, 28, 10) * ips / 1e9
                      for c, ips in zip(jobs["candidate"], jobs["images_per_sec"])]
    trained = float((jobs["images"] * jobs["epochs"]).sum())
    return {
        "jobs_per_hour": 3600 * len(jobs) / run["wall"],
        "images_per_sec": trained / run["wall"],
        "outside": 1 - jobs["seconds"].sum() / (workers * run["wall"]),
        "job_outside": float(((jobs["wall_seconds"] - jobs["seconds"]) / jobs["wall_seconds"]).median()),
        "per_width": {w: 100 * g["gflops"].mean() / peak for w, g in jobs.groupby("width")},
        "n": len(jobs),
    }


# --- main ----------------------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="6 candidates, 3 epochs, 1 round")
    p.add_argument("--epochs", type=int, default=None, help="proxy epochs (default fmnist-ref's: 50; --quick: 3)")
    p.add_argument("--per-width", type=int, default=None, help="candidates per width 8/16/32 (default 4; --quick 2)")
    p.add_argument("--rounds", type=int, default=None, help="alternating old/new rounds (default 2; --quick 1)")
    p.add_argument("--workers", type=int, default=2, help="workers of each search (default 2)")
    p.add_argument("--threads", type=int, default=None, help="threads per worker (default: each runner's own)")
    p.add_argument("--old", default=OLD_REV, help=f"git revision of today's runner (default {OLD_REV})")
    p.add_argument("--new-eval-test", action="store_true",
                   help="let the new runner evaluate the proxies' test split too (default: eval_test false, as "
                        "proposed for proxies, whose test accuracy no report uses; the old runner always does)")
    p.add_argument("--profile", action="store_true", help="also split one in-process run of each by category")
    p.add_argument("--scale-to", type=int, default=None, help="epochs the profile's loop is scaled to (default 50)")
    p.add_argument("--setup", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--profile-in", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.setup:
        return setup_proxy(*args.setup)
    if args.profile_in:
        return profile_in_tree(args.profile_in, args.threads or 1)

    train = proxy_train()
    full_epochs = train["epochs"]
    train["epochs"] = args.epochs or (3 if args.quick else full_epochs)
    per_width = args.per_width or (2 if args.quick else 4)
    rounds = args.rounds or (1 if args.quick else 2)
    cands = candidates(per_width)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = args.threads or max(1, cpus // args.workers)
    peak = matmul_gflops(threads)
    print(f"# bench_proxy_jobs: {platform.node()}, {cpus} cpus, {platform.processor() or platform.machine()}, "
          f"load average {os.getloadavg()[0]:.2f} at start; fp32 matmul peak {peak:.0f} GFLOP/s at {threads} "
          f"thread(s)")
    print(f"# {len(cands)} fmnist-ref candidates (widths 8-32), {PER_CLASS * 10} random Fashion-MNIST images, "
          f"{train['epochs']} epochs; old: val and test evaluated (10,000 images each), new: "
          f"{'val and test' if args.new_eval_test else 'val only (eval_test false)'}; {args.workers} workers; "
          f"old = git {args.old}, new = this tree")

    from nasprune.data import load_dataset
    from nasprune.proxies.selection import select

    data = load_dataset("fashion-mnist", val_size=10000, seed=0)
    kept = select("random", data.train_y.numpy(), PER_CLASS, seed=0).kept
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "indices.npy", kept)
        trees = {"old": unpack(args.old, tmp / "old"), "new": REPO}
        if args.profile:
            results = {}
            for name, tree in trees.items():
                d = tmp / f"profile-{name}"
                write_experiment(d, tree, cands, train, tmp / "indices.npy",
                                 eval_test=name == "old" or args.new_eval_test)
                out = in_tree(tree, ["--profile-in", str(d), "--threads", str(threads)])
                results[name] = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"profile {name}: {results[name]['jobs']} jobs in one process, {results[name]['wall']:.1f} s")
            print(split_table(results, args.scale_to or full_epochs))

        runs: dict[str, list] = {"old": [], "new": []}
        for r in range(rounds):
            for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
                d = tmp / f"{name}-{r}"
                write_experiment(d, trees[name], cands, train, tmp / "indices.npy",
                                 eval_test=name == "old" or args.new_eval_test)
                run = search(trees[name], d, args.workers, args.threads)
                runs[name].append(summarise(run, args.workers, peak))
                print(f"round {r} {name}: {run['wall']:.1f} s, {runs[name][-1]['n']} jobs")
        mean = {name: {k: np.mean([s[k] for s in ss]) for k in ("jobs_per_hour", "images_per_sec", "outside",
                                                                 "job_outside")} for name, ss in runs.items()}
        print(f"{'':34s}{'old':>10s}{'new':>10s}{'new/old':>9s}")
        for k, label, fmt in (("jobs_per_hour", "jobs per hour", "{:10.0f}"),
                              ("images_per_sec", "training images/s end to end", "{:10.0f}"),
                              ("outside", "worker time outside the loop", "{:9.1%} "),
                              ("job_outside", "median job outside the loop", "{:9.1%} ")):
            o, n = mean["old"][k], mean["new"][k]
            print(f"  {label:32s}" + fmt.format(o) + fmt.format(n) + f"{n / o:8.2f}x")
        widths = sorted(runs["old"][0]["per_width"])
        for w in widths:
            o, n = (np.mean([s["per_width"][w] for s in runs[name]]) for name in ("old", "new"))
            print(f"  {'loop % of peak, width ' + str(w):32s}{o:9.1f}%{n:9.1f}%")


if __name__ == "__main__":
    main()
