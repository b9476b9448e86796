"""Shared by claim_efficiency.py (the paper's Fig. 4, section 6.5) and claim_cross_arch.py (Fig. 3, section 6.4):
prune a training set at several rates with several methods, train nets on what is kept, and compare their
accuracy and training time with the whole set's.

A grid is an experiment like any other, run by the runner:

    OUT/scoring.pt            the scoring run (nasprune/scoring.py; OUT/scoring.ckpt while it trains)
    OUT/proxies/<set>.json    one proxy per method and rate, e.g. cardinality-40 (40% pruned), built by
                              nasprune.prune.build_proxy at the per-class quotas of the keep rate
    OUT/experiment.json       the whole subset and every proxy as training sets, the nets as candidates
                              (nasprune/experiment.py), trained by nasprune.runner.run_search
    OUT/jobs.csv, summary.csv, README.md and the plot: from the finished jobs

A rerun resumes: it reuses the scoring run and the proxy files (refusing one built with other settings)
and trains only the jobs not finished. Every net is normalised with the dataset's statistics, whatever
subset it trains on (``TrainingSet``, nasprune/experiment.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from nasprune.config import to_mapping
from nasprune.data import Dataset, DatasetSpec
from nasprune.experiment import Experiment, TrainingSet
from nasprune.jobs import load_jobs
from nasprune.prune import (InfluenceConfig, ObjectiveConfig, build_proxy, check_reuse, influence_vectors,
                            needs_scoring_run, proxy_settings)
from nasprune.provenance import provenance
from nasprune.proxy import ProxySet
from nasprune.report import markdown_table, write_readme
from nasprune.runner import exit_on_interrupt, run_search
from nasprune.scoring import ScoringConfig, ScoringRun, load_or_run
from nasprune.selection import fraction_quota, select
from nasprune.train import TrainConfig


@dataclass(frozen=True)
class Method:
    """How a grid prunes: a registered selection method (``nasprune.selection``) with its objective (the
    influence method's; S is computed with the default ``InfluenceConfig``).

    With ``bisect``, Eq. 3 is solved instead of per-class quotas (``ObjectiveConfig.epsilon``), with epsilon
    bisected until the pruned fraction meets the rate.
    """

    what: str
    method: str
    objective: ObjectiveConfig | None = None
    bisect: bool = False


#: The grid's methods by name; ``what`` says in the README what each optimises.
METHODS = {
    "random": Method("uniform random, per-class quotas", "random"),
    "cardinality": Method("Eq. 4 with nasprune's default target (ObjectiveConfig())", "influence",
                          ObjectiveConfig(bound=False)),
    "cardinality-paper": Method("the literal Eq. 4 (target 'paper')", "influence",
                                ObjectiveConfig(target="paper", bound=False)),
    "epsilon": Method("Eq. 3 (target 'paper'), epsilon bisected to reach the pruning rate", "influence",
                      ObjectiveConfig(target="paper"), bisect=True),
}
WHOLE = "the whole training subset, nothing pruned"


@dataclass(frozen=True)
class Grid:
    """Every net trained on the whole subset and on every (method, rate) proxy, under every seed.

    ``specs`` empty trains the scoring network's own architecture. The data is a stratified subset of
    Fashion-MNIST's training split; the scoring network selects, and every net trains with ``train``.
    """

    name: str
    methods: tuple[str, ...]
    rates: tuple[float, ...]  # the fraction of the training subset pruned
    seeds: tuple[int, ...]
    specs: tuple[str, ...] = ()
    dataset: DatasetSpec = DatasetSpec("fashion-mnist", val_size=10_000, seed=0, train_size=10_000)
    scoring: ScoringConfig = field(default_factory=lambda: ScoringConfig(
        spec="w16-d3-relu-instancenorm-avgpooling", train=TrainConfig(epochs=6, batch_size=256, seed=0)))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=5))

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
        if not all(0 < r < 1 for r in self.rates):
            raise ValueError(f"rates are pruned fractions in (0, 1), got {self.rates}")

    def nets(self) -> list[str]:
        return list(self.specs) or [self.scoring.spec]

    def proxies(self) -> dict[str, tuple[str, float]]:
        """Training set name -> (method, rate), in the order of the README's table: by rate, then method."""
        return {f"{m}-{round(100 * r)}": (m, r) for r in self.rates for m in self.methods}

    def experiment(self) -> Experiment:
        sets = {"whole": TrainingSet(None, self.train)}
        sets |= {name: TrainingSet(f"proxies/{name}.json", self.train) for name in self.proxies()}
        return Experiment(name=self.name, dataset=self.dataset, candidates=self.nets(), training_sets=sets,
                          seeds=list(self.seeds))


# --- the proxies ---------------------------------------------------------------------------------------------


def epsilon_at_rate(S: torch.Tensor, labels: torch.Tensor, rate: float, *, tol: float = 0.01, steps: int = 30,
                    time_limit: float = 60.0) -> float:
    """The epsilon of Eq. 3 (target 'paper') whose pruned fraction is nearest ``rate``: bisected geometrically
    (the pruned fraction grows about with log epsilon) until it is within ``tol`` of ``rate``."""
    n, hi = len(S), float(S.norm(dim=1).sum())
    lo, best = hi * 1e-7, None
    for _ in range(steps):
        eps = (lo * hi) ** 0.5
        kept = select("influence", labels, 1, S=S, options={"target": "paper", "epsilon": eps,
                                                            "time_limit": time_limit}).kept
        pruned = 1 - len(kept) / n
        if best is None or abs(pruned - rate) < abs(best[1] - rate):
            best = (eps, pruned)
        if abs(pruned - rate) <= tol:
            break
        lo, hi = (eps, hi) if pruned < rate else (lo, eps)
    return best[0]


def build_proxies(grid: Grid, dataset: Dataset, run: ScoringRun | None, directory: Path) -> None:
    """Write ``directory/proxies/<set>.json`` for every (method, rate) not there yet; refuse one there that
    was built with other settings than the grid asks for."""
    S_cache: dict[str, torch.Tensor] = {}
    for name, (label, rate) in grid.proxies().items():
        path = directory / "proxies" / f"{name}.json"
        m = METHODS[label]
        quota = fraction_quota(dataset.train_y, 1 - rate)
        if path.exists():  # the epsilon a bisection found is the file's own
            check_reuse(ProxySet.load(path, dataset),
                        proxy_settings(m.method, quota, 0, objective=m.objective, scoring=grid.scoring), path,
                        ignore=("objective.epsilon",))
            continue
        objective, search_seconds = m.objective, 0.0
        if m.bisect:
            started = time.perf_counter()
            if "S" not in S_cache:
                S_cache["S"] = influence_vectors(run, InfluenceConfig())[0]
            eps = epsilon_at_rate(S_cache["S"], dataset.train_y, rate, time_limit=m.objective.time_limit)
            objective, search_seconds = dataclasses.replace(m.objective, epsilon=eps), time.perf_counter() - started
        proxy = build_proxy(dataset, run, m.method, quota, seed=0, objective=objective)
        if m.bisect:
            proxy.stats["epsilon_search_seconds"] = search_seconds
        proxy.save(path)
        print(f"proxy {name}: {len(proxy)} of {len(dataset.train_y)} images kept", flush=True)


def scoring_run(grid: Grid, dataset: Dataset, directory: Path) -> ScoringRun | None:
    """The grid's scoring run: ``directory/scoring.pt`` when it exists (refused if made with other settings),
    else trained (resumable) and saved there; None when no method reads one."""
    if not any(needs_scoring_run(METHODS[m].method) for m in grid.methods):
        return None
    return load_or_run(directory / "scoring.pt", dataset, grid.scoring, progress=True)[0]


# --- the grid ------------------------------------------------------------------------------------------------


def run_grid(grid: Grid, directory: Path, *, workers: int = 1, progress: bool = True) -> pd.DataFrame:
    """Build what is missing (scoring run, proxies), train every job not finished through the runner, and
    return the finished jobs (also written to ``directory/jobs.csv``)."""
    directory.mkdir(parents=True, exist_ok=True)
    dataset = grid.dataset.load()
    build_proxies(grid, dataset, scoring_run(grid, dataset, directory), directory)
    grid.experiment().save(directory)
    run_search(directory, workers=workers, progress=progress)
    jobs = load_jobs(directory)
    jobs.to_csv(directory / "jobs.csv", index=False)
    return jobs


def summarise(grid: Grid, jobs: pd.DataFrame, directory: Path) -> pd.DataFrame:
    """Mean (and s.d. over seeds) of accuracy and time per (net, method, rate), the whole subset first;
    ``test_acc_sd`` is NaN where one seed ran."""
    sets = {"whole": ("whole", 0.0, 0.0)}
    for name, (label, rate) in grid.proxies().items():
        stats = ProxySet.load(directory / "proxies" / f"{name}.json").stats
        sets[name] = (label, rate, stats["selection_seconds"] + stats.get("epsilon_search_seconds", 0.0))
    rows = []
    for name, (label, rate, select_seconds) in sets.items():
        for spec in grid.nets():
            g = jobs[(jobs.training_set == name) & (jobs.candidate == spec)]
            if g.empty:
                continue
            rows.append({"spec": spec, "method": label, "rate": rate, "images": g["images"].mean(),
                         "seeds": g.seed.nunique(),
                         "test_acc": g.test_acc.mean(), "test_acc_sd": g.test_acc.std(), "val_acc": g.val_acc.mean(),
                         "train_seconds": g.seconds.mean(), "select_seconds": select_seconds,
                         "diverged": int(g.diverged.astype(bool).sum())})
    out = pd.DataFrame(rows)
    whole_images = out.loc[out.method == "whole", "images"].max()
    out.insert(3, "pruned_fraction", 1 - out.images / whole_images)
    whole = out[out.method == "whole"].set_index("spec")
    out["test_acc_drop"] = whole.test_acc.reindex(out.spec).to_numpy() - out.test_acc
    out["time_fraction"] = out.train_seconds / whole.train_seconds.reindex(out.spec).to_numpy()
    return out


def readme_lines(script: str, doc: str, summary: pd.DataFrame, title: str, plot_name: str) -> list[str]:
    """The README's body: the script's own description, the methods, the table and the plot."""
    head = doc.split("\n\n    python")[0].strip()
    what = {"whole": WHOLE, **{k: m.what for k, m in METHODS.items()}}
    used = set(summary.method)
    rows = [[r.spec, r.method, f"{r.pruned_fraction:.0%}", f"{r.images:.0f}",
             f"{r.test_acc:.2f}{f' ± {r.test_acc_sd:.2f}' if r.seeds > 1 else ''}", f"{r.test_acc_drop:+.2f}",
             f"{r.train_seconds:.1f}", f"{r.time_fraction:.2f}", r.seeds] for r in summary.itertuples()]
    return [f"Generated by `python scripts/{script}`; do not edit by hand.", "", head, "",
            "Methods: " + "; ".join(f"`{k}`: {v}" for k, v in what.items() if k in used) + ".", "",
            *markdown_table(["net", "method", "pruned", "images", "test acc (%): mean ± s.d. over seeds",
                             "drop vs whole (points)", "train time (s)", "time vs whole", "seeds"], rows),
            "", f"![{title}]({plot_name})", ""]


def main(grid: Grid, *, title: str, script: str, doc: str, out: Path,
         plot: Callable[[pd.DataFrame, Path], None], plot_name: str) -> None:
    """A claim script's command line: run (or resume) the grid, then write summary.csv, the plot and README.md."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--out", default=str(out), help=f"the grid's directory (default {out})")
    ap.add_argument("--workers", type=int, default=1, help="runner workers (default 1; 0 trains in this process)")
    args = ap.parse_args()
    out, started = Path(args.out), time.perf_counter()
    with exit_on_interrupt(f"scripts/{script}"):
        jobs = run_grid(grid, out, workers=args.workers)
    summary = summarise(grid, jobs, out)
    summary.to_csv(out / "summary.csv", index=False)
    plot(summary, out / plot_name)
    prov = provenance(time.perf_counter() - started, grid=to_mapping(grid),
                      grid_seconds=float(jobs.seconds.sum() + summary.drop_duplicates(["method", "rate"])
                                         .select_seconds.sum()))
    write_readme(out / "README.md", title, readme_lines(script, doc, summary, title, plot_name), prov)
    print(summary.to_string(index=False))
