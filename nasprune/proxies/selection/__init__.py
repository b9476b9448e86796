"""Selection of a kept subset: influence-based pruning (Eq. 4 / Eq. 3 of Yang et al. 2023), score and feature
baselines, and the NAS-proxy methods, all in one registry.

Every method keeps exact per-class quotas and returns a ``SelectionResult``: sorted kept indices plus
diagnostics. ``select(name, labels, keep_per_class, seed=..., **inputs)`` runs any registered method;
``get_method(name)`` says what it reads and which end it keeps; ``nasprune.proxies.selection.testing`` holds the
conformance check every method passes.
"""

from ._common import SelectionResult, fraction_quota, resolve_quota
from ._registry import INPUTS, METHODS, MethodSpec, get_method, register_method, select

# these modules register their methods on import, in this order: "influence", the baselines, the NAS-proxy ones
from . import _influence, _baselines  # noqa: F401
from ._nasproxy import CCS_SCORES, ENTROPY_WEIGHTINGS, entropy_weights, stratum_budgets
from ._cardinality import cardinality_prune, influence_objective, relaxation_bound
from ._epsilon import epsilon_prune
from ._problem import SOLVERS, TARGETS, TargetSpec

__all__ = [
    "CCS_SCORES", "ENTROPY_WEIGHTINGS", "INPUTS", "METHODS", "MethodSpec", "SOLVERS", "SelectionResult", "TARGETS",
    "TargetSpec", "cardinality_prune", "entropy_weights", "epsilon_prune", "fraction_quota", "get_method",
    "influence_objective", "register_method", "relaxation_bound", "resolve_quota", "select",
    "stratum_budgets",
]
