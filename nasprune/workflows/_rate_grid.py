"""A rate grid: a training set pruned at several rates by several methods, nets trained on what each keeps, and
their accuracy and training time set beside the whole set's (the paper's Figs. 3 and 4).

A grid is an experiment like any other, run by the runner:

    OUT/scoring.pt            the scoring run (one training of the pruning network; resumable)
    OUT/proxies/<set>.json    one proxy per method and rate, e.g. cardinality-40 (40% pruned), built at the
                              per-class quotas of the keep rate (Eq. 3: epsilon bisected to the rate)
    OUT/experiment.json       the whole subset and every proxy as training sets, the nets as candidates
    OUT/jobs.csv              the finished jobs

A rerun resumes: it reuses the scoring run and the proxy files (refusing one built with other settings) and trains
only the jobs not finished. Every net is normalised with the dataset's statistics, whatever subset it trains on.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from nasprune.data import Dataset, DatasetSpec
from nasprune.proxies import (InfluenceConfig, ObjectiveConfig, ProxySet, ScoringConfig, ScoringRun, build_proxy,
                              check_reuse, epsilon_for_rate, influence_vectors, load_or_run, needs_scoring_run,
                              proxy_settings)
from nasprune.proxies.selection import fraction_quota
from nasprune.search import Experiment, TrainingSet, load_jobs, run_search
from nasprune.training import TrainConfig

__all__ = ["RATE_METHODS", "RateGrid", "RateMethod", "run_rate_grid", "summarise_rate_grid"]


@dataclass(frozen=True)
class RateMethod:
    """How a grid prunes: a registered selection method (``nasprune.proxies.selection``) with its objective (the
    influence method's; S is computed with the default ``InfluenceConfig``).

    With ``bisect``, Eq. 3 is solved instead of per-class quotas (``ObjectiveConfig.epsilon``), with epsilon
    bisected until the pruned fraction meets the rate.
    """

    what: str
    method: str
    objective: ObjectiveConfig | None = None
    bisect: bool = False


#: The rate grid's ways of pruning by name; ``what`` says in a write-up what each optimises.
RATE_METHODS = {
    "random": RateMethod("uniform random, per-class quotas", "random"),
    "cardinality": RateMethod("Eq. 4 with nasprune's default target (ObjectiveConfig())", "influence",
                          ObjectiveConfig(bound=False)),
    "cardinality-paper": RateMethod("the literal Eq. 4 (target 'paper')", "influence",
                                ObjectiveConfig(target="paper", bound=False)),
    "epsilon": RateMethod("Eq. 3 (target 'paper'), epsilon bisected to reach the pruning rate", "influence",
                      ObjectiveConfig(target="paper"), bisect=True),
}
@dataclass(frozen=True)
class RateGrid:
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
        unknown = [m for m in self.methods if m not in RATE_METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(RATE_METHODS)}")
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


def _build_proxies(grid: RateGrid, dataset: Dataset, scoring: Callable[[], ScoringRun | None],
                   directory: Path) -> None:
    """Write ``directory/proxies/<set>.json`` for every (method, rate) not there yet, from the scoring run
    ``scoring()`` gives; refuse one there that was built with other settings than the grid asks for."""
    S_cache: dict[str, torch.Tensor] = {}
    for name, (label, rate) in grid.proxies().items():
        path = directory / "proxies" / f"{name}.json"
        m = RATE_METHODS[label]
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
                S_cache["S"] = influence_vectors(scoring(), InfluenceConfig())[0]
            eps = epsilon_for_rate(S_cache["S"], dataset.train_y, rate, time_limit=m.objective.time_limit)
            objective, search_seconds = dataclasses.replace(m.objective, epsilon=eps), time.perf_counter() - started
        proxy = build_proxy(dataset, scoring() if needs_scoring_run(m.method) else None, m.method, quota, seed=0,
                            objective=objective)
        if m.bisect:
            proxy.stats["epsilon_search_seconds"] = search_seconds
        proxy.save(path)
        print(f"proxy {name}: {len(proxy)} of {len(dataset.train_y)} images kept", flush=True)


def _scoring_run(grid: RateGrid, dataset: Dataset, directory: Path) -> Callable[[], ScoringRun | None]:
    """The grid's scoring run, as a function: ``directory/scoring.pt``, loaded at once when it exists (refused if
    made with other settings), else trained (resumable) and saved there when a proxy first needs it, so that a
    grid whose proxies all exist trains nothing; None when no method reads one."""
    if not any(needs_scoring_run(RATE_METHODS[m].method) for m in grid.methods):
        return lambda: None
    path, cache = directory / "scoring.pt", {}

    def run() -> ScoringRun:
        if "run" not in cache:
            cache["run"] = load_or_run(path, dataset, grid.scoring, progress=True)[0]
        return cache["run"]

    if path.exists():
        run()
    return run


# --- running it ------------------------------------------------------------------------------------------------


def run_rate_grid(grid: RateGrid, directory: Path, *, workers: int = 1, progress: bool = True) -> pd.DataFrame:
    """Build what is missing (the proxies, and the scoring run if a missing proxy needs it), train every job not
    finished through the runner, and return the finished jobs (also written to ``directory/jobs.csv``)."""
    directory.mkdir(parents=True, exist_ok=True)
    dataset = grid.dataset.load()
    _build_proxies(grid, dataset, _scoring_run(grid, dataset, directory), directory)
    grid.experiment().save(directory)
    run_search(directory, workers=workers, progress=progress)
    jobs = load_jobs(directory)
    jobs.to_csv(directory / "jobs.csv", index=False)
    return jobs


def summarise_rate_grid(grid: RateGrid, jobs: pd.DataFrame, directory: Path) -> pd.DataFrame:
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
