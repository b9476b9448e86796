"""Influence-based pruning (Yang et al., ICLR 2023, section 4): Eq. 4, Eq. 3 and a certified relaxation bound.

Notation. ``S`` (n, P) holds one influence vector per example, ``T = sum_i S_i``. A kept set ``K`` leaves the
pruned set ``D \\ K``. Every target below scores a selection by the norm of the pruned examples' summed
influence after subtracting a reference vector ``c_g`` per group of classes:

    objective = sqrt( sum_g || sum_{i pruned, i in g} (S_i - c_g) ||^2 )
              = sqrt( sum_g || target_g - sum_{i kept, i in g} S_i ||^2 ),   target_g = T_g - m_g c_g,

with ``T_g`` the group's sum and ``m_g`` its pruned count. The second form involves only the (small) kept set,
so the solvers work with the residual ``r_g = target_g - sum_{kept in g} S_i``. Sums, residuals and objectives
are float64; products with ``S`` run in S's own dtype (float32 S stays float32, which halves memory traffic).

Targets (``TARGETS``; add an entry to add one):
    "paper": c = 0, target = T. The literal Eq. 4: the pruned set's summed influence is small. With a small
        kept set this means sum_kept S_i ~ T, which favours large S_i aligned with T, i.e. high-loss examples
        (results/objective-study/README.md: the kept set collapsed to mostly misclassified examples).
    "scaled": c = T/n, target = (k/n) T. The kept set's mean influence equals the full set's mean.
    "classwise": per class c_c = T_c/n_c, target_c = (k_c/n_c) T_c. The same per class; the objective
        decomposes over classes.

Measured on this project's 2-core CPU (n = 50,000, P = 650, 10 classes, 100 kept per class, float32 S,
one torch thread, a busy machine): greedy 2.5-12 s, the swap search a further 0.3-1 s to convergence;
greedy + swap ended below simulated annealing run for 20 s on all three targets.
"""


from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ._common import (SelectionResult, as_matrix, make_result)

_CHUNK = 8192  # rows per chunk when a float64 pass over S would otherwise copy all of it


# ------------------------------------------------------------------------------------------- targets

@dataclass(frozen=True)
class TargetSpec:
    """How a target groups classes and which reference vector each pruned example is measured against.

    Attributes:
        group_of_class: (C,) group id (0..G-1) of each class, classes in increasing label order.
        shift: (G, P) float64 reference vector ``c_g`` subtracted from every pruned example of group g.
    """

    group_of_class: np.ndarray
    shift: torch.Tensor


def _paper_target(class_sums: torch.Tensor, class_sizes: np.ndarray) -> TargetSpec:
    """Literal Eq. 4: minimise ||sum_pruned S_i||, i.e. kept sum close to T (favours large S_i along T)."""
    zero = torch.zeros(1, class_sums.shape[1], dtype=torch.float64)
    return TargetSpec(np.zeros(len(class_sizes), dtype=np.int64), zero)


def _scaled_target(class_sums: torch.Tensor, class_sizes: np.ndarray) -> TargetSpec:
    """Kept sum close to (k/n) T: the kept set's mean influence matches the full set's mean."""
    mean = class_sums.sum(0, keepdim=True) / float(class_sizes.sum())
    return TargetSpec(np.zeros(len(class_sizes), dtype=np.int64), mean)


def _classwise_target(class_sums: torch.Tensor, class_sizes: np.ndarray) -> TargetSpec:
    """Per class c, kept sum close to (k_c/n_c) T_c: each class's mean influence is preserved separately."""
    sizes = torch.as_tensor(class_sizes, dtype=torch.float64)[:, None]
    return TargetSpec(np.arange(len(class_sizes), dtype=np.int64), class_sums / sizes)


#: Target name -> function(class_sums (C, P) float64, class_sizes (C,)) -> TargetSpec.
TARGETS: dict[str, Callable[[torch.Tensor, np.ndarray], TargetSpec]] = {
    "paper": _paper_target,
    "scaled": _scaled_target,
    "classwise": _classwise_target,
}
SOLVERS = ("swap", "anneal")


# ------------------------------------------------------------------------------------------- problem

@dataclass
class _Problem:
    """Inputs sorted by (target group, class), so that both are contiguous slices."""

    A: torch.Tensor            # (n, P) S rows in sorted order, working dtype
    order: np.ndarray          # sorted position -> original index
    classes: np.ndarray        # (C,) class labels
    cls_bounds: np.ndarray     # (C, 2) [start, stop) of each class in sorted order
    cls_group: np.ndarray      # (C,) group of each class
    grp_bounds: np.ndarray     # (G, 2) [start, stop) of each group
    ex_group: torch.Tensor     # (n,) group of each sorted example (long)
    sq: torch.Tensor           # (n,) float64 squared norms of the rows of A
    class_sums: torch.Tensor   # (C, P) float64
    spec: TargetSpec
    t_norm: float
    quota: np.ndarray | None = None    # (C,) kept count per class
    targets: torch.Tensor | None = None  # (G, P) float64 kept-form targets

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def classes_of_group(self, g: int) -> np.ndarray:
        return np.flatnonzero(self.cls_group == g)


def _row_sq_norms(A: torch.Tensor) -> torch.Tensor:
    out = torch.empty(len(A), dtype=torch.float64)
    for s in range(0, len(A), _CHUNK):
        out[s:s + _CHUNK] = A[s:s + _CHUNK].double().pow(2).sum(1)
    return out


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {sorted(TARGETS)}")


def _prepare(S, labels: np.ndarray, target: str, quota: Mapping[int, int] | None) -> _Problem:
    """Validate, sort by (group, class) and precompute norms, class sums and targets."""
    _check_target(target)
    S = as_matrix(S, len(labels), "S")
    classes, cls_idx = np.unique(labels, return_inverse=True)
    sizes = np.bincount(cls_idx, minlength=len(classes))
    class_sums = torch.zeros(len(classes), S.shape[1], dtype=torch.float64)
    idx_t = torch.as_tensor(cls_idx)
    for s in range(0, len(S), _CHUNK):
        class_sums.index_add_(0, idx_t[s:s + _CHUNK], S[s:s + _CHUNK].double())
    spec = TARGETS[target](class_sums, sizes)
    cls_group = np.asarray(spec.group_of_class, dtype=np.int64)
    n_groups = int(cls_group.max()) + 1 if len(cls_group) else 0
    order = np.lexsort((cls_idx, cls_group[cls_idx])).astype(np.int64)  # stable: ties keep original order
    A = S if np.array_equal(order, np.arange(len(order))) else S[torch.as_tensor(order)]
    # classes sorted by (group, label) so that both are contiguous
    cls_order = np.lexsort((np.arange(len(classes)), cls_group))
    cls_bounds = np.zeros((len(classes), 2), dtype=np.int64)
    start = 0
    for c in cls_order:
        cls_bounds[c] = (start, start + sizes[c])
        start += sizes[c]
    grp_bounds = np.array([(cls_bounds[cls_group == g, 0].min(), cls_bounds[cls_group == g, 1].max())
                           for g in range(n_groups)], dtype=np.int64).reshape(-1, 2)
    prob = _Problem(A=A, order=order, classes=classes, cls_bounds=cls_bounds, cls_group=cls_group,
                    grp_bounds=grp_bounds, ex_group=torch.as_tensor(cls_group[cls_idx][order]),
                    sq=_row_sq_norms(A), class_sums=class_sums, spec=spec,
                    t_norm=float(class_sums.sum(0).norm()))
    if quota is not None:
        prob.quota = np.array([quota[int(c)] for c in classes], dtype=np.int64)
        group_sums = torch.zeros(n_groups, S.shape[1], dtype=torch.float64).index_add_(
            0, torch.as_tensor(cls_group), class_sums)
        pruned = np.bincount(cls_group, weights=sizes - prob.quota, minlength=n_groups)
        prob.targets = group_sums - torch.as_tensor(pruned, dtype=torch.float64)[:, None] * spec.shift
    return prob


def _kept_residual(prob: _Problem, kept: torch.Tensor) -> torch.Tensor:
    """r_g = target_g - sum of kept rows of group g, float64 (G, P)."""
    sums = torch.zeros_like(prob.targets).index_add_(0, prob.ex_group[kept], prob.A[kept].double())
    return prob.targets - sums


def _objective(prob: _Problem, kept: torch.Tensor) -> float:
    return float(_kept_residual(prob, kept).pow(2).sum().sqrt())


def _result(prob: _Problem, labels: np.ndarray, kept_sorted: torch.Tensor, target: str, started: float,
            stats: dict, lower_bound: float | None = None) -> SelectionResult:
    kept = prob.order[kept_sorted.numpy()]
    return make_result(kept, labels, len(labels), started=started, stats=stats, target=target,
                       objective=_objective(prob, kept_sorted), t_norm=prob.t_norm, lower_bound=lower_bound)


def _tolerance(prob: _Problem, r: torch.Tensor) -> float:
    """Smallest decrease of the squared objective trusted as real, given the rounding of S's dtype."""
    eps = torch.finfo(prob.A.dtype).eps
    scale = float(r.norm(dim=1).max()) * float(prob.sq.max().sqrt()) + float(prob.sq.max())
    return 8.0 * math.sqrt(prob.A.shape[1]) * eps * scale

