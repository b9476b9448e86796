"""From a scoring run to a proxy set: influence vectors, one selection method, a ``ProxySet``.

This is the selection stage of the pipeline; it reads a :class:`~nasprune.scoring.ScoringRun` and
never trains anything.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from nasprune.data import Dataset
from nasprune.influence import last_layer_influence, refit_last_layer
from nasprune.proxy import ProxySet
from nasprune.scoring import ScoringRun
from nasprune.selection import (BASELINES, TARGETS, SelectionResult, cardinality_prune, epsilon_prune,
                                select_baseline)

#: every method ``build_proxy`` knows: ours ("influence") and the baselines.
METHODS: tuple[str, ...] = ("influence", *BASELINES)


@dataclass
class InfluenceConfig:
    """How the influence method computes S and which objective it optimises.

    ``target`` names the kept-set target of Eq. 4 (see ``nasprune.selection.TARGETS``): "paper" is the
    literal Eq. 4, which at small keep rates fills the proxy with misclassified images (anchors
    section 6); "scaled", the default, asks the kept set to carry the mean influence, the first-order
    parameter change for a mean loss. The default (scaled, l2 = 1e-5) is the best formulation of the
    objective study (results/objective-study/README.md), though not significantly better than random.
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


def kept_set_profile(run: ScoringRun, kept) -> dict:
    """How the pruning network sees the kept images: accuracy (%) and mean true-class probability."""
    kept = torch.as_tensor(kept)
    logits, labels = run.logits[kept], run.labels[kept]
    return {
        "pruning_net_acc_on_kept": float((logits.argmax(1) == labels).float().mean() * 100),
        "pruning_net_p_true_on_kept": float(F.softmax(logits, 1).gather(1, labels[:, None]).mean()),
    }


def select(run: ScoringRun, method: str, per_class, *, seed: int = 0,
           influence: InfluenceConfig | None = None) -> tuple[SelectionResult, dict]:
    """Run one selection method on a scoring run; returns the selection and timing/diagnostic info."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    influence = influence or InfluenceConfig()
    info: dict = {}
    inputs = {"features": run.features, "forgetting_counts": run.forgetting, "grand": run.grand, "el2n": run.el2n}
    start = time.perf_counter()  # selection time includes the refit and influence it needs
    if method in ("influence", "influence_score"):
        inputs["S"], info = influence_vectors(run, influence)
    if method == "influence" and influence.epsilon is not None:
        result = epsilon_prune(inputs["S"], influence.epsilon, labels=run.labels, target=influence.target,
                               time_limit=influence.time_limit)
    elif method == "influence":
        result = cardinality_prune(inputs["S"], run.labels, per_class, target=influence.target,
                                   solver=influence.solver, seed=seed, time_limit=influence.time_limit,
                                   bound=influence.bound)
    else:
        result = select_baseline(method, run.labels, per_class, seed=seed, **inputs)
    info["selection_seconds"] = time.perf_counter() - start
    return result, info


def build_proxy(dataset: Dataset, run: ScoringRun, method: str, per_class=100, *, seed: int = 0,
                influence: InfluenceConfig | None = None) -> ProxySet:
    """Select ``per_class`` images of each class with ``method`` and package them as a ``ProxySet``.

    With ``influence.epsilon`` set, the influence method solves Eq. 3 instead: it keeps whatever the
    largest pruned set within epsilon leaves, and ``per_class`` is ignored.
    """
    run.check_dataset(dataset)
    influence = influence or InfluenceConfig()
    result, info = select(run, method, per_class, seed=seed, influence=influence)
    config = {"method": method, "per_class": per_class, "seed": seed, "scoring": run.config}
    if method in ("influence", "influence_score"):
        config["influence"] = asdict(influence)
    scoring_seconds = float(sum(run.seconds.values()))
    stats = {
        **info,
        **kept_set_profile(run, result.kept),
        "scoring_seconds": scoring_seconds,
        # what building this proxy cost: the scoring run (random needs none) and the selection
        "proxy_seconds": info["selection_seconds"] + (0.0 if method == "random" else scoring_seconds),
        "t_norm": result.t_norm,
        "lower_bound": result.lower_bound,
        "target": result.target,
        "solver": {k: v for k, v in result.stats.items() if isinstance(v, (int, float, str, bool))},
    }
    return ProxySet.from_selection(dataset, result.kept, method, config=config, objective=result.objective,
                                   stats=stats)
