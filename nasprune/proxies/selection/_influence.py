"""Influence-based pruning as the registry sees it: Eq. 4 with per-class quotas, or Eq. 3 with a bound."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._cardinality import cardinality_prune
from ._common import SelectionResult
from ._epsilon import epsilon_prune
from ._registry import register_method


@register_method("influence", inputs=("S",), keeps="representative", stochastic=False)
def influence(labels, keep_per_class: int | Mapping[int, int], *, S, seed: None | int | np.random.Generator = 0,
              target: str = "scaled", solver: str = "swap", time_limit: float | None = None, bound: bool = True,
              epsilon: float | None = None) -> SelectionResult:
    """Ours: Eq. 4 over the influence vectors S (``cardinality_prune``), keeping exact per-class quotas.

    Which end it keeps depends on ``target`` (see ``nasprune/proxies/selection/_problem.py``): the default "scaled"
    keeps a set whose summed influence matches the whole set's mean, i.e. a representative one; "paper", the
    literal Eq. 4, keeps mostly high-loss (hard) examples at small keep rates. The defaults are those of
    ``nasprune.proxies.InfluenceConfig``, which passes its own settings. With ``epsilon`` set, Eq. 3 is solved
    instead (``epsilon_prune``: prune as much as the bound allows) and ``keep_per_class`` is ignored.
    Deterministic with the "swap" solver; ``seed`` drives the "anneal" solver.
    """
    if epsilon is not None:
        return epsilon_prune(S, epsilon, labels=labels, target=target, time_limit=time_limit)
    return cardinality_prune(S, labels, keep_per_class, target=target, solver=solver, seed=seed,
                             time_limit=time_limit, bound=bound)
