"""From a scoring run to a proxy set: influence vectors, one registered selection method, a ``ProxySet``.

This is the selection stage of the pipeline; it reads a :class:`~nasprune.scoring.ScoringRun` (none for a
method that needs no inputs, such as random) and never trains anything. ``METHODS`` is the selection
registry's live list of names (``nasprune/selection/_registry.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from nasprune.data import Dataset
from nasprune.influence import last_layer_influence, refit_last_layer
from nasprune.proxy import ProxySet
from nasprune.scoring import ScoringRun
from nasprune.selection import METHODS, TARGETS, SelectionResult, get_method
from nasprune.selection import select as select_method

__all__ = ["METHODS", "InfluenceConfig", "build_proxy", "influence_vectors", "kept_set_profile",
           "needs_scoring_run", "select", "uses_influence"]


@dataclass
class InfluenceConfig:
    """How the influence method computes S and which objective it optimises.

    ``target`` names the kept-set target of Eq. 4 (see ``nasprune.selection.TARGETS``): "paper" is the
    literal Eq. 4, which at small keep rates fills the proxy with misclassified images; "scaled", the
    default, asks the kept set to carry the mean influence, the first-order parameter change for a mean
    loss. The default (scaled, l2 = 1e-5) is the best formulation of the objective study
    (results/objective-study/README.md), though not significantly better than random.
    """

    target: str = "scaled"
    l2: float = 1e-5
    damping: float = 0.0
    method: str = "exact"
    refit: bool = True
    solver: str = "swap"
    time_limit: float | None = 60.0
    bound: bool = True
    epsilon: float | None = None  # set: Eq. 3 (prune as many as the bound allows) instead of per-class quotas

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}; choose one of {', '.join(TARGETS)}")
        if self.epsilon is not None and (self.epsilon < 0 or self.target != "paper"):
            raise ValueError(f"epsilon needs epsilon >= 0 and target 'paper' (got {self.epsilon}, {self.target!r}): "
                             "with the scaled or classwise target, pruning everything meets any epsilon")
        if self.l2 + self.damping <= 0:
            raise ValueError("l2 + damping must be > 0: the last layer's Hessian is singular without them")


def influence_vectors(run: ScoringRun, config: InfluenceConfig) -> tuple[torch.Tensor, dict]:
    """S (n, C*(d+1)) for the run's final layer, refit to the minimiser first when ``config.refit``."""
    info: dict = {}
    weight, bias = run.weight, run.bias
    start = time.perf_counter()
    if config.refit:
        fit = refit_last_layer(run.features, run.labels, weight, bias, l2=config.l2)
        weight, bias = fit.weight, fit.bias
        info.update(refit_grad_norm=fit.grad_norm, refit_iterations=fit.iterations, refit_converged=fit.converged)
    info["refit_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    S = last_layer_influence(run.features, run.labels, weight, bias, l2=config.l2, damping=config.damping,
                             method=config.method)
    info["influence_seconds"] = time.perf_counter() - start
    return S, info


def kept_set_profile(run: ScoringRun | None, kept) -> dict:
    """How the pruning network sees the kept images: accuracy (%) and mean true-class probability.

    Both are None without a scoring run (a random proxy built without one).
    """
    if run is None:
        return {"pruning_net_acc_on_kept": None, "pruning_net_p_true_on_kept": None}
    kept = torch.as_tensor(kept)
    logits, labels = run.logits[kept], run.labels[kept]
    return {
        "pruning_net_acc_on_kept": float((logits.argmax(1) == labels).float().mean() * 100),
        "pruning_net_p_true_on_kept": float(F.softmax(logits, 1).gather(1, labels[:, None]).mean()),
    }


#: Where each registered input (``nasprune.selection.INPUTS``) comes from in a scoring run; "S" is computed
#: from it by ``influence_vectors``.
RUN_INPUTS: dict[str, Callable[[ScoringRun], torch.Tensor]] = {
    "features": lambda run: run.features,
    "logits": lambda run: run.logits,
    "forgetting_counts": lambda run: run.forgetting,
    "el2n": lambda run: run.el2n,
    "grand": lambda run: run.grand,
}


def needs_scoring_run(method: str) -> bool:
    """Whether ``method`` reads anything from a scoring run (random does not, so it needs no training)."""
    return bool(get_method(method).inputs)


def uses_influence(method: str) -> bool:
    """Whether ``method`` reads the influence vectors S, so that ``InfluenceConfig`` shapes its result."""
    return "S" in get_method(method).inputs


def _selection_options(method: str, influence: InfluenceConfig) -> dict:
    """The InfluenceConfig fields that are settings of the method itself (Eq. 4's target, solver, ...)."""
    if method != "influence":
        return {}
    return {"target": influence.target, "solver": influence.solver, "time_limit": influence.time_limit,
            "bound": influence.bound, "epsilon": influence.epsilon}


def _missing_run(method: str) -> ValueError:
    inputs = get_method(method).inputs
    return ValueError(f"method {method!r} selects from the scoring run's {', '.join(inputs)}, but no run was "
                      "given; pass run=run_scoring(dataset) or ScoringRun.load(path) (random needs none)")


def select(run: ScoringRun | None, method: str, per_class, *, seed: int = 0,
           influence: InfluenceConfig | None = None, labels=None) -> tuple[SelectionResult, dict]:
    """Run one registered selection method on a scoring run; returns the selection and timing/diagnostic info.

    ``run`` may be None for a method that needs no inputs (``needs_scoring_run``); ``labels`` are then
    required. Selection time includes the refit and influence computation a method needs.
    """
    spec = get_method(method)
    if run is None and spec.inputs:
        raise _missing_run(method)
    if run is not None:
        labels = run.labels
    elif labels is None:
        raise ValueError("select needs labels when run is None; pass labels=dataset.train_y")
    influence = influence or InfluenceConfig()
    info: dict = {}
    start = time.perf_counter()
    inputs = {}
    for name in spec.inputs:
        if name == "S":
            inputs["S"], info = influence_vectors(run, influence)
        else:
            inputs[name] = RUN_INPUTS[name](run)
    result = select_method(method, labels, per_class, seed=seed, options=_selection_options(method, influence),
                           **inputs)
    info["selection_seconds"] = time.perf_counter() - start
    return result, info


def build_proxy(dataset: Dataset, run: ScoringRun | None = None, method: str = "random", per_class=100, *,
                seed: int = 0, influence: InfluenceConfig | None = None) -> ProxySet:
    """Select ``per_class`` images of each class with ``method`` and package them as a ``ProxySet``.

    A method that needs no scoring run (``needs_scoring_run``: random) works with ``run=None``; the kept
    set's pruning-network profile is then None. With ``influence.epsilon`` set, the influence method solves
    Eq. 3 instead: it keeps whatever the largest pruned set within epsilon leaves, and ``per_class`` is
    ignored.
    """
    if run is not None:
        run.check_dataset(dataset)
    elif needs_scoring_run(method):
        raise _missing_run(method)
    influence = influence or InfluenceConfig()
    result, info = select(run, method, per_class, seed=seed, influence=influence, labels=dataset.train_y)
    config = {"method": method, "per_class": per_class, "seed": seed,
              "scoring": None if run is None else run.config}
    if uses_influence(method):
        config["influence"] = asdict(influence)
    # the scoring run's cost counts only for a method that reads it
    scoring_seconds = float(sum(run.seconds.values())) if run is not None and needs_scoring_run(method) else None
    stats = {
        **info,
        **kept_set_profile(run, result.kept),
        "scoring_seconds": scoring_seconds,
        # what building this proxy cost: the scoring run it used (if any) and the selection
        "proxy_seconds": info["selection_seconds"] + (scoring_seconds or 0.0),
        "t_norm": result.t_norm,
        "lower_bound": result.lower_bound,
        "target": result.target,
        "solver": {k: v for k, v in result.stats.items() if isinstance(v, (int, float, str, bool))},
    }
    return ProxySet.from_selection(dataset, result.kept, method, config=config, objective=result.objective,
                                   stats=stats)
