"""Selection of a kept subset: influence-based pruning (Eq. 4 / Eq. 3 of Yang et al. 2023) and baselines.

Every method keeps exact per-class quotas and returns a ``SelectionResult``: sorted kept indices plus
diagnostics.
"""

from ._baselines import BASELINES, baseline_inputs, select_baseline
from ._common import SelectionResult, check_random_state, resolve_quota
from ._cardinality import cardinality_prune, influence_objective, relaxation_bound
from ._epsilon import epsilon_prune
from ._problem import SOLVERS, TARGETS, TargetSpec

#: Names of all selection methods: "influence" (``cardinality_prune``) and every baseline.
METHODS: tuple[str, ...] = ("influence", *BASELINES)

__all__ = [
    "BASELINES", "METHODS", "SOLVERS", "TARGETS", "SelectionResult", "TargetSpec", "baseline_inputs",
    "cardinality_prune", "check_random_state", "epsilon_prune", "influence_objective", "relaxation_bound",
    "resolve_quota", "select_baseline",
]
