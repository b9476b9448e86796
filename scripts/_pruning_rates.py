"""Shared by claim_efficiency.py (Fig. 4) and claim_cross_arch.py (Fig. 3): prune a training set at a
given rate with one method, train a net on what is kept, and record accuracy and wall time.

Each finished training is appended to ``rows.csv`` at once, and a rerun skips those already there, so a
killed run loses at most the training in progress.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from nasprune.data import Dataset, load_dataset
from nasprune.prune import InfluenceConfig, influence_vectors
from nasprune.provenance import markdown, provenance
from nasprune.scoring import ScoringConfig, ScoringRun, run_scoring
from nasprune.selection import cardinality_prune, epsilon_prune, select_baseline
from nasprune.train import TrainConfig, train
from search_spaces.convnet import ConvNetSpec, build_convnet

# name -> what it optimises; every method keeps per-class quotas except Eq. 3, which prunes what epsilon allows
METHODS = {
    "whole": "the whole training subset, nothing pruned",
    "random": "uniform random, per-class quotas",
    "cardinality": "Eq. 4 with nasprune's default target (InfluenceConfig())",
    "cardinality-paper": "the literal Eq. 4 (target 'paper')",
    "epsilon": "Eq. 3 (target 'paper'), epsilon bisected to reach the pruning rate",
}


@dataclass
class Setup:
    """The data, the scoring network that selects, and the training of every evaluated net."""

    train_size: int = 10_000
    scoring_spec: str = "w16-d3-relu-instancenorm-avgpooling"
    scoring_epochs: int = 6
    epochs: int = 5
    seed: int = 0

    def dataset(self) -> Dataset:
        return load_dataset("fashion-mnist", val_size=10_000, seed=0, train_size=self.train_size)

    def scoring(self, dataset: Dataset, path: Path) -> ScoringRun:
        """The scoring run, trained once and cached at ``path``."""
        if path.exists():
            return ScoringRun.load(path, dataset)
        run = run_scoring(dataset, ScoringConfig(spec=self.scoring_spec, epochs=self.scoring_epochs, seed=self.seed),
                          progress=True)
        run.save(path)
        return run


def _epsilon_at_rate(S: torch.Tensor, labels: torch.Tensor, rate: float, tol: float = 0.01,
                     steps: int = 30) -> tuple[np.ndarray, float]:
    """Kept indices of Eq. 3 with epsilon bisected (geometrically: the pruned fraction grows about with
    log epsilon) until the pruned fraction is within ``tol`` of ``rate``."""
    n, hi = len(S), float(S.norm(dim=1).sum())
    lo = hi * 1e-7
    best = None
    for _ in range(steps):
        eps = (lo * hi) ** 0.5
        kept = epsilon_prune(S, eps, labels=labels, target="paper", time_limit=60).kept
        pruned = 1 - len(kept) / n
        if best is None or abs(pruned - rate) < abs(best[2] - rate):
            best = (kept, eps, pruned)
        if abs(pruned - rate) <= tol:
            break
        lo, hi = (eps, hi) if pruned < rate else (lo, eps)
    return np.asarray(best[0]), best[1]


def select_at_rate(run: ScoringRun, method: str, rate: float, seed: int = 0,
                   cache: dict | None = None) -> tuple[np.ndarray, dict]:
    """Kept indices after pruning the fraction ``rate`` with ``method``, and what it cost. ``cache`` keeps
    the influence vectors of each InfluenceConfig across calls (they do not depend on the rate)."""
    if method not in METHODS or method == "whole":
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    started = time.perf_counter()
    labels = run.labels
    counts = torch.bincount(labels).tolist()
    quota = {c: round((1 - rate) * k) for c, k in enumerate(counts)}
    info: dict = {}
    if method == "random":
        kept = select_baseline("random", labels, quota, seed=seed).kept
    else:
        config = InfluenceConfig(target="paper") if method in ("cardinality-paper", "epsilon") else InfluenceConfig()
        cache = {} if cache is None else cache
        key = (config.l2, config.damping, config.method, config.refit)  # what S depends on
        if key not in cache:
            cache[key] = influence_vectors(run, config)[0]
        S = cache[key]
        if method == "epsilon":
            kept, info["epsilon"] = _epsilon_at_rate(S, labels, rate)
        else:
            kept = cardinality_prune(S, labels, quota, target=config.target, seed=seed,
                                     time_limit=config.time_limit, bound=False).kept
        info.update(target=config.target, l2=config.l2)
    info["select_seconds"] = time.perf_counter() - started
    return np.asarray(kept), info


def train_on(dataset: Dataset, kept: np.ndarray | None, spec: str, epochs: int, seed: int) -> dict:
    """Train ``spec`` on the kept images (None: all) and return its accuracies and wall time."""
    x, y = dataset.train_x, dataset.train_y
    if kept is not None:
        x, y = x[torch.as_tensor(kept)], y[torch.as_tensor(kept)]
    torch.manual_seed(seed)
    model = build_convnet(ConvNetSpec.from_id(spec), dataset.in_channels, dataset.image_size, dataset.num_classes)
    r = train(model, x, y, TrainConfig(epochs=epochs, seed=seed), val=(dataset.val_x, dataset.val_y),
              test=(dataset.test_x, dataset.test_y))
    return {"images": len(y), "val_acc": r.val_acc, "test_acc": r.test_acc, "train_seconds": r.seconds,
            "diverged": r.diverged}


def run_grid(setup: Setup, out: Path, specs: list[str], rates: list[float], methods: list[str],
             seeds: list[int]) -> pd.DataFrame:
    """Every (spec, method, rate, seed) plus the whole set per (spec, seed); resumes from ``out/rows.csv``."""
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.csv"
    rows = pd.read_csv(rows_path) if rows_path.exists() else pd.DataFrame()
    done = set() if rows.empty else set(zip(rows.spec, rows.method, rows.rate.round(3), rows.seed))
    dataset = setup.dataset()
    run = setup.scoring(dataset, out / "scoring.pt")
    selections: dict = {}
    influence: dict = {}
    jobs = [(s, "whole", 0.0, sd) for sd in seeds for s in specs] + \
           [(s, m, r, sd) for sd in seeds for r in rates for m in methods for s in specs]
    for spec, method, rate, seed in jobs:
        if (spec, method, round(rate, 3), seed) in done:
            continue
        if method == "whole":
            kept, info = None, {"select_seconds": 0.0}
        else:
            key = (method, rate, seed if method == "random" else 0)  # the influence methods are deterministic
            if key not in selections:
                selections[key] = select_at_rate(run, method, rate, seed=seed, cache=influence)
            kept, info = selections[key]
        row = {"spec": spec, "method": method, "rate": rate, "seed": seed, **info,
               **train_on(dataset, kept, spec, setup.epochs, seed)}
        row["pruned_fraction"] = 1 - row["images"] / len(dataset.train_y)
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        rows = pd.concat([rows, pd.DataFrame([row])], ignore_index=True)
        tmp = rows_path.with_suffix(".tmp")
        rows.to_csv(tmp, index=False)
        tmp.replace(rows_path)
    return rows


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean (and s.d. over seeds) of accuracy and time per (spec, method, rate)."""
    g = rows.groupby(["spec", "method", "rate"], sort=False)
    out = g.agg(pruned_fraction=("pruned_fraction", "mean"), images=("images", "mean"), seeds=("seed", "nunique"),
                test_acc=("test_acc", "mean"), test_acc_sd=("test_acc", "std"), val_acc=("val_acc", "mean"),
                train_seconds=("train_seconds", "mean"), select_seconds=("select_seconds", "mean"),
                diverged=("diverged", "sum")).reset_index()
    whole = out[out.method == "whole"].set_index("spec")
    out["test_acc_drop"] = whole.test_acc.reindex(out.spec).to_numpy() - out.test_acc
    out["time_fraction"] = out.train_seconds / whole.train_seconds.reindex(out.spec).to_numpy()
    return out  # test_acc_sd is NaN where one seed ran


def write_readme(path: Path, title: str, script: str, doc: str, summary: pd.DataFrame, plot_name: str,
                 prov: dict) -> None:
    """README.md: the script's own description, the table and the plot, and provenance."""

    head = doc.split("\n\n    python")[0].strip()
    lines = [f"# {title}", "", f"Generated by `python scripts/{script}`; do not edit by hand.", "", head, "",
             "Methods: " + "; ".join(f"`{k}`: {v}" for k, v in METHODS.items() if k in set(summary.method)) + ".", "",
             "| net | method | pruned | images | test acc (%): mean ± s.d. over seeds | drop vs whole (points) | "
             "train time (s) | time vs whole | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        lines.append(f"| {r.spec} | {r.method} | {r.pruned_fraction:.0%} | {r.images:.0f} | "
                     f"{r.test_acc:.2f}{f' ± {r.test_acc_sd:.2f}' if r.seeds > 1 else ''} | "
                     f"{r.test_acc_drop:+.2f} | {r.train_seconds:.1f} | "
                     f"{r.time_fraction:.2f} | {r.seeds} |")
    lines += ["", f"![{title}]({plot_name})", "", *markdown(prov)]
    path.write_text("\n".join(lines))


def main(*, title: str, script: str, doc: str, out: Path, specs: list[str] | None, rates: list[float],
         methods: list[str], seeds: list[int], plot: Callable[[pd.DataFrame, Path], None], plot_name: str) -> None:
    """A claim script's command line: run (or resume) the grid, then write summary.csv, the plot and README.md.
    ``specs`` None trains the scoring network's own architecture."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--out", default=str(out))
    args = ap.parse_args()
    setup, out, started = Setup(), Path(args.out), time.perf_counter()
    rows = run_grid(setup, out, specs or [setup.scoring_spec], rates, methods, seeds)
    summary = summarise(rows)
    summary.to_csv(out / "summary.csv", index=False)
    plot(summary, out / plot_name)
    write_readme(out / "README.md", title, script, doc, summary, plot_name,
                 provenance(time.perf_counter() - started, setup=vars(setup), seeds=seeds,
                            grid_seconds=float(rows.select_seconds.sum() + rows.train_seconds.sum())))
    print(summary.to_string(index=False))
