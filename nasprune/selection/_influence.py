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
        (reference anchors, section 6: the kept set collapsed to mostly misclassified examples).
    "scaled": c = T/n, target = (k/n) T. The kept set's mean influence equals the full set's mean.
    "classwise": per class c_c = T_c/n_c, target_c = (k_c/n_c) T_c. The same per class; the objective
        decomposes over classes.

Measured on this project's 2-core CPU (n = 50,000, P = 650, 10 classes, 100 kept per class, float32 S,
one torch thread, a busy machine): greedy 2.5-12 s, the swap search a further 0.3-1 s to convergence;
greedy + swap ended below simulated annealing run for 20 s on all three targets.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ._common import (SelectionResult, as_labels, as_matrix, check_random_state, make_result, resolve_quota,
                      single_threaded)

_CHUNK = 8192  # rows per chunk when a float64 pass over S would otherwise copy all of it
_EPS_BATCH = 256  # epsilon_prune: candidates scored per matvec
_EPS_ROOM = 0.25  # epsilon_prune: below this fraction of epsilon^2, batch order is trusted without rescoring
_EPS_LOOKAHEAD = 16  # epsilon_prune: additions tried above epsilon in the hope that later ones cancel them


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


# ------------------------------------------------------------------------------------------- greedy + swap

def _greedy(prob: _Problem, block: int = 64) -> torch.Tensor:
    """Per group, repeatedly keep the eligible example i minimising ||r - S_i||^2 = ||r||^2 + score_i.

    score_i = ||S_i||^2 - 2 r.S_i is kept exact for every example: keeping a changes it by 2 S_a.S_i, a column
    of the Gram matrix. Columns come from one matrix product (n_g x P x block) for the ``block`` best-scored
    candidates, refilled whenever a pick falls outside the cached ones (the block adapts to how many picks a
    refill serves); this replaces one memory-bound matvec per step by fewer, compute-bound products when the
    ranking is stable (the "paper" target), and costs about one matvec per step when it is not ("scaled").
    The picks are those of the plain greedy.
    """
    kept: list[int] = []
    for g, (gs, ge) in enumerate(prob.grp_bounds):
        A, dtype = prob.A[gs:ge], prob.A.dtype
        owner = prob.classes_of_group(g)
        bounds = prob.cls_bounds[owner] - gs  # ascending starts: maps a position to its class
        left = prob.quota[owner].copy()
        score = prob.sq[gs:ge] - 2.0 * (A @ prob.targets[g].to(dtype)).double()  # +inf marks ineligible
        for (cs, ce), k in zip(bounds, left):
            if k == 0:
                score[cs:ce] = math.inf
        cache: dict[int, int] = {}
        hits = 0
        for _ in range(int(left.sum())):
            a = int(score.argmin())
            if a not in cache:  # size the next block by how many picks the last one served
                block = min(max(2 * hits + 2, 4), 128) if cache else block
                eligible = int(torch.isfinite(score).sum())
                top = torch.topk(score, min(block, eligible), largest=False).indices
                gram = (A @ A[top].T).T.contiguous()  # (block, n_g): row t holds S_top[t] . S_i for all i
                cache, hits = {int(i): row for row, i in enumerate(top)}, 0
            hits += 1
            score.add_(gram[cache[a]], alpha=2.0)
            kept.append(gs + a)
            score[a] = math.inf
            pos = int(np.searchsorted(bounds[:, 0], a, side="right")) - 1
            left[pos] -= 1
            if left[pos] == 0:
                score[bounds[pos, 0]:bounds[pos, 1]] = math.inf
    return torch.as_tensor(sorted(kept), dtype=torch.long)


def _swap_search(prob: _Problem, kept: torch.Tensor, deadline: float,
                 max_rounds: int) -> tuple[torch.Tensor, dict]:
    """Best-improvement within-class swaps (one kept i out, one unkept j in) until none lowers the objective.

    For class c with kept K and unkept U, swapping i in K for j in U changes the squared objective by
    2 r.(S_i - S_j) + ||S_i||^2 + ||S_j||^2 - 2 S_i.S_j, computed for all |K| x |U| pairs at once from
    v = S r (maintained by one matvec per swap) and the kept rows' Gram block (one row refreshed per swap).
    Memory: sum_c k_c n_c entries of S's dtype (20 MB for 100 of 5,000 in each of 10 classes, float32).
    """
    dtype = prob.A.dtype
    r = _kept_residual(prob, kept)
    tol = _tolerance(prob, r)
    kept_mask = torch.zeros(len(prob.A), dtype=torch.bool)
    kept_mask[kept] = True

    def refresh_v(g: int) -> None:
        gs, ge = prob.grp_bounds[g]
        v[gs:ge] = prob.A[gs:ge] @ r[g].to(dtype)

    v = torch.empty(len(prob.A), dtype=dtype)
    for g in range(len(prob.grp_bounds)):
        refresh_v(g)
    sq = prob.sq.to(dtype)
    active = [c for c in range(prob.n_classes) if 0 < prob.quota[c] < np.diff(prob.cls_bounds[c])[0]]
    members = {c: kept[(kept >= prob.cls_bounds[c, 0]) & (kept < prob.cls_bounds[c, 1])].clone()
               for c in active}
    gram = {c: prob.A[members[c]] @ prob.A[slice(*prob.cls_bounds[c])].T for c in active}
    best: dict[int, tuple[float, int, int]] = {}

    def class_best(c: int) -> tuple[float, int, int]:
        cs, ce = prob.cls_bounds[c]
        K = members[c]
        D = (2.0 * v[K] + sq[K])[:, None] + (sq[cs:ce] - 2.0 * v[cs:ce])[None, :]
        D.add_(gram[c], alpha=-2.0).masked_fill_(kept_mask[cs:ce][None, :], math.inf)
        flat = int(D.argmin())
        return float(D.view(-1)[flat]), flat // D.shape[1], flat % D.shape[1]

    dirty, rounds, converged = list(active), 0, False
    while rounds < max_rounds and time.perf_counter() < deadline:
        for c in dirty:
            best[c] = class_best(c)
        if not best:
            converged = True
            break
        c = min(best, key=lambda key: best[key][0])
        delta, pos, jloc = best[c]
        if delta >= -tol:
            converged = True
            break
        cs, ce = prob.cls_bounds[c]
        g = int(prob.cls_group[c])
        gs, ge = prob.grp_bounds[g]
        i, j = int(members[c][pos]), int(cs + jloc)
        d = prob.A[i].double() - prob.A[j].double()
        r[g] += d
        v[gs:ge] += prob.A[gs:ge] @ d.to(dtype)
        gram[c][pos] = prob.A[cs:ce] @ prob.A[j]
        members[c][pos] = j
        kept_mask[i], kept_mask[j] = False, True
        rounds += 1
        if rounds % 100 == 0:  # re-anchor the running residual and products against drift
            r = _kept_residual(prob, torch.nonzero(kept_mask).view(-1))
            for gg in range(len(prob.grp_bounds)):
                refresh_v(gg)
            dirty = list(active)
        else:
            dirty = [cc for cc in active if prob.cls_group[cc] == g]
    stats = {"iterations": rounds, "swaps_accepted": rounds, "converged": converged, "swap_tol": tol}
    return torch.nonzero(kept_mask).view(-1), stats


def _kick(prob: _Problem, kept: torch.Tensor, rng: np.random.Generator, swaps: int) -> torch.Tensor:
    """``swaps`` random within-class swaps applied to a kept set (the kick of iterated local search)."""
    kept_mask = torch.zeros(len(prob.A), dtype=torch.bool)
    kept_mask[kept] = True
    sizes = prob.cls_bounds[:, 1] - prob.cls_bounds[:, 0]
    active = np.flatnonzero((prob.quota > 0) & (prob.quota < sizes))
    if len(active) == 0:
        return kept
    weights = (prob.quota[active] * (sizes[active] - prob.quota[active])).astype(np.float64)
    for c in rng.choice(active, size=swaps, p=weights / weights.sum()):
        cs, ce = prob.cls_bounds[c]
        inside = kept_mask[cs:ce].numpy()
        i, j = rng.choice(np.flatnonzero(inside)), rng.choice(np.flatnonzero(~inside))
        kept_mask[cs + i], kept_mask[cs + j] = False, True
    return torch.nonzero(kept_mask).view(-1)


# ------------------------------------------------------------------------------------------- annealing

def _anneal(prob: _Problem, rng: np.random.Generator, deadline: float, time_limit: float | None,
            steps: int) -> tuple[torch.Tensor, dict]:
    """Simulated annealing over kept sets with exact quotas (the paper's solver).

    Move: a uniformly random within-class swap (kept i out, unkept j in), delta from the residual in O(P).
    Metropolis acceptance; geometric cooling from T0 (an average uphill move of the random start accepted
    with probability 1/2) to T_end = 1e-3 x min(T0, median ||S_i - S_j||^2). Progress is the larger of the
    step and the time fractions, so a time-limited run still cools fully. Proposals are drawn and evaluated
    in batches against the current state; the first accepted one is applied and the rest discarded, which
    leaves the Markov chain exactly that of one-at-a-time proposals. Returns the best state seen.
    """
    A = prob.A.numpy()
    bounds = prob.cls_bounds
    sizes = bounds[:, 1] - bounds[:, 0]
    kept_parts, unkept_parts = [], []
    for c in range(prob.n_classes):
        perm = rng.permutation(sizes[c]) + bounds[c, 0]
        kept_parts.append(np.sort(perm[:prob.quota[c]]))
        unkept_parts.append(perm[prob.quota[c]:])
    active = np.flatnonzero((prob.quota > 0) & (prob.quota < sizes))
    kept_flat = np.concatenate(kept_parts).astype(np.int64) if kept_parts else np.zeros(0, np.int64)
    unkept_flat = np.concatenate(unkept_parts).astype(np.int64) if unkept_parts else np.zeros(0, np.int64)
    koff = np.cumsum([0] + [len(p) for p in kept_parts])[:-1]
    uoff = np.cumsum([0] + [len(p) for p in unkept_parts])[:-1]
    r = _kept_residual(prob, torch.as_tensor(kept_flat)).numpy()
    f = float((r ** 2).sum())
    stats = {"initial_objective": math.sqrt(f), "iterations": 0, "accepted": 0}
    best_f, best = f, kept_flat.copy()
    if len(active) == 0:
        return torch.as_tensor(np.sort(best)), stats
    weights = (prob.quota[active] * (sizes[active] - prob.quota[active])).astype(np.float64)
    cum = np.cumsum(weights) / weights.sum()
    kq, uq = prob.quota[active], sizes[active] - prob.quota[active]

    def propose(size: int):
        a = np.minimum(np.searchsorted(cum, rng.random(size), side="right"), len(active) - 1)
        p1 = koff[active[a]] + rng.integers(0, kq[a])
        p2 = uoff[active[a]] + rng.integers(0, uq[a])
        D = A[kept_flat[p1]].astype(np.float64) - A[unkept_flat[p2]]
        g = prob.cls_group[active[a]]
        return p1, p2, g, D, 2.0 * np.einsum("bp,bp->b", D, r[g]) + np.einsum("bp,bp->b", D, D)

    *_, D0, delta0 = propose(2000)
    uphill = delta0[delta0 > 0]
    t0 = float(uphill.mean() / math.log(2.0)) if len(uphill) else float(np.abs(delta0).mean() + 1e-300)
    t_end = 1e-3 * min(t0, float(np.median(np.einsum("bp,bp->b", D0, D0))))
    stats.update(T0=t0, T_end=t_end)
    started, batch, proposals, accepted = time.perf_counter(), 8, 0, 0
    while proposals < steps and time.perf_counter() < deadline:
        frac = proposals / steps
        if time_limit:
            frac = max(frac, (time.perf_counter() - started) / max(deadline - started, 1e-9))
        temp = t0 * (t_end / t0) ** min(frac, 1.0)
        p1, p2, g, D, delta = propose(batch)
        with np.errstate(over="ignore"):
            ok = (delta <= 0) | (rng.random(batch) < np.exp(-delta / temp))
        if not ok.any():
            proposals += batch
            batch = min(2 * batch, 1024)
            continue
        b = int(np.argmax(ok))
        proposals += b + 1
        accepted += 1
        kept_flat[p1[b]], unkept_flat[p2[b]] = unkept_flat[p2[b]], kept_flat[p1[b]]
        r[g[b]] += D[b]
        f += float(delta[b])
        if accepted % 5000 == 0:
            r = _kept_residual(prob, torch.as_tensor(kept_flat)).numpy()
            f = float((r ** 2).sum())
        if f < best_f:
            best_f, best = f, kept_flat.copy()
        batch = int(min(1024, max(8, 2 * (b + 1))))
    stats.update(iterations=proposals, accepted=accepted)
    return torch.as_tensor(np.sort(best)), stats


# ---------------------------------------------------------------------------------------- Eq. 4 and its bound

@single_threaded
def relaxation_bound(S: torch.Tensor, labels, keep_per_class: int | Mapping[int, int], *,
                     target: str = "paper", max_iter: int = 200, tol: float = 1e-6) -> dict:
    """Certified lower bound on the cardinality objective from its convex relaxation.

    Relaxes the kept indicator to 0 <= w_i <= 1 with per-class sums k_c and minimises the convex quadratic
    f(w) = sum_g ||target_g - sum_{i in g} w_i S_i||^2 by Frank-Wolfe with exact line search, starting from
    the uniform w_i = k_c / n_c. The linear oracle keeps, per class, the k_c examples with the largest
    S_i.r_g. Every iterate gives f* >= f(w) - gap(w) (the Frank-Wolfe duality gap, computed from float64
    sums); a rounding slack for products taken in S's dtype is subtracted, so the bound holds for float32 S.
    The relaxed minimum is 0 whenever the uniform weights meet the target (always for "classwise", and for
    "scaled" with proportional quotas), so the bound is informative mainly for "paper".

    Returns:
        dict with lower_bound (on the objective, not squared), upper_bound_relaxed (best relaxed objective
        found), gap (their difference) and iterations.
    """
    labels = as_labels(labels)
    quota = resolve_quota(labels, keep_per_class)
    prob = _prepare(S, labels, target, quota)
    return _fw_bound(prob, max_iter, tol)


def _fw_bound(prob: _Problem, max_iter: int, tol: float) -> dict:
    if max_iter < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter}")
    dtype, P = prob.A.dtype, prob.A.shape[1]
    sizes = (prob.cls_bounds[:, 1] - prob.cls_bounds[:, 0]).astype(np.float64)
    frac = torch.as_tensor(np.where(sizes > 0, prob.quota / np.maximum(sizes, 1), 0.0))
    u = torch.zeros_like(prob.targets).index_add_(0, torch.as_tensor(prob.cls_group),
                                                  frac[:, None] * prob.class_sums)  # S^T w
    norms = prob.sq.sqrt()
    top_norm = torch.zeros(len(prob.grp_bounds), dtype=torch.float64)  # per group: sum of k_c largest norms
    for c in range(prob.n_classes):
        if prob.quota[c]:
            largest = norms[slice(*prob.cls_bounds[c])].topk(int(prob.quota[c])).values
            top_norm[prob.cls_group[c]] += largest.sum()
    err = (P + 2) * torch.finfo(dtype).eps  # worst-case relative error of one dot product in S's dtype
    v = torch.empty(len(prob.A), dtype=dtype)
    best_f, best_lb, it = math.inf, 0.0, 0
    floor = 1e-12 * float(prob.targets.norm()) + 1e-300  # absolute tolerance, for targets met exactly
    for it in range(max_iter + 1):
        r = prob.targets - u
        f = float(r.pow(2).sum())
        best_f = min(best_f, f)
        upper, lower = math.sqrt(best_f), math.sqrt(max(best_lb, 0.0))
        if upper - lower <= tol * upper + floor or it == max_iter:
            break
        for g, (gs, ge) in enumerate(prob.grp_bounds):
            v[gs:ge] = prob.A[gs:ge] @ r[g].to(dtype)
        sel = [torch.topk(v[cs:ce], int(k)).indices + cs
               for (cs, ce), k in zip(prob.cls_bounds, prob.quota) if k]
        sel = torch.cat(sel) if sel else torch.zeros(0, dtype=torch.long)
        q = torch.zeros_like(u).index_add_(0, prob.ex_group[sel], prob.A[sel].double()) - u  # S^T (s - w)
        gap = 2.0 * float((r * q).sum())
        slack = 4.0 * err * float((r.norm(dim=1) * top_norm).sum())
        best_lb = max(best_lb, f - gap - slack)
        qq = float(q.pow(2).sum())
        if qq == 0.0:
            break
        u = u + min(1.0, max(0.0, gap / (2.0 * qq))) * q
    lower, upper = math.sqrt(max(best_lb, 0.0)), math.sqrt(best_f)
    return {"lower_bound": lower, "upper_bound_relaxed": upper, "gap": upper - lower, "iterations": it}


@single_threaded
def influence_objective(S: torch.Tensor, labels, kept, *, target: str = "paper") -> float:
    """Objective of any kept set (e.g. a baseline's) under ``target``, with quotas k_c read off the kept set.

    Equals ``cardinality_prune(...).objective`` for that method's own kept set; use it to compare methods.
    """
    labels = as_labels(labels)
    kept = np.asarray(kept, dtype=np.int64)
    in_range = len(kept) == 0 or (kept.min() >= 0 and kept.max() < len(labels))
    if kept.ndim != 1 or len(np.unique(kept)) != len(kept) or not in_range:
        raise ValueError(f"kept must be unique indices in [0, {len(labels)}), got {kept.shape} entries")
    classes = np.unique(labels)
    counts = dict(zip(*np.unique(labels[kept], return_counts=True)))
    prob = _prepare(S, labels, target, {int(c): int(counts.get(c, 0)) for c in classes})
    inverse = np.empty_like(prob.order)
    inverse[prob.order] = np.arange(len(prob.order))
    return _objective(prob, torch.as_tensor(inverse[kept]))


@single_threaded
def cardinality_prune(S: torch.Tensor, labels, keep_per_class: int | Mapping[int, int], *,
                      target: str = "paper", solver: str = "swap", seed: None | int | np.random.Generator = 0,
                      time_limit: float | None = None, max_swap_rounds: int = 10_000, perturb_rounds: int = 0,
                      anneal_steps: int = 200_000, bound: bool = True) -> SelectionResult:
    """Eq. 4 with exact per-class quotas: keep k_c examples of each class, minimising the target's objective.

    Solvers:
        "swap": greedy start (keep, one at a time, the eligible example that most lowers the objective), then
            best-improvement within-class swaps until none helps, ``max_swap_rounds`` swaps, or
            ``time_limit``. Never ends above its greedy start (stats["greedy_objective"]). Swap local optima
            can be poor on tiny or low-dimensional problems; ``perturb_rounds`` > 0 adds iterated local
            search: kick the best set with max(2, k/10) seeded random swaps, descend again, keep the better
            (stops at ``time_limit``). Deterministic without kicks; ``seed`` drives the kicks only.
        "anneal": simulated annealing from a seeded random kept set, as the paper does; stops after
            ``anneal_steps`` proposals or ``time_limit`` and returns the best set seen.

    Args:
        S: (n, P) influence vectors, float32 or float64.
        labels: (n,) integer class labels.
        keep_per_class: kept count per class (int or mapping, see ``resolve_quota``).
        target: key of ``TARGETS``: "paper" (literal Eq. 4), "scaled" or "classwise" (see the module docstring
            and anchors section 6 for why the literal target can collapse to high-loss examples).
        time_limit: wall seconds for the whole solve; the greedy start always completes.
        bound: also compute ``relaxation_bound`` (its time is stats["bound_seconds"], outside time_limit).

    Returns:
        SelectionResult with objective = sqrt(sum_g ||target_g - sum_kept S_i||^2), t_norm = ||T|| and
        lower_bound (or None when bound=False).
    """
    started = time.perf_counter()
    labels = as_labels(labels)
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {list(SOLVERS)}")
    if time_limit is not None and not time_limit > 0:
        raise ValueError(f"time_limit must be None or > 0 seconds, got {time_limit}")
    if min(max_swap_rounds, perturb_rounds, anneal_steps) < 0:
        raise ValueError(f"max_swap_rounds, perturb_rounds and anneal_steps must be >= 0, got "
                         f"{max_swap_rounds}, {perturb_rounds}, {anneal_steps}")
    rng = check_random_state(seed)
    quota = resolve_quota(labels, keep_per_class)
    prob = _prepare(S, labels, target, quota)
    deadline = started + time_limit if time_limit is not None else math.inf
    if solver == "swap":
        kept = _greedy(prob)
        greedy_seconds = time.perf_counter() - started
        greedy_obj = _objective(prob, kept)
        improved, stats = _swap_search(prob, kept, deadline, max_swap_rounds)
        reverted = _objective(prob, improved) > greedy_obj  # rounding safety net; never expected to trigger
        kept = kept if reverted else improved
        best_obj, kicks_accepted, rounds = min(greedy_obj, _objective(prob, kept)), 0, 0
        size = max(2, int(prob.quota.sum()) // 10)
        for rounds in range(1, perturb_rounds + 1):  # iterated local search: kick the best set, descend again
            if time.perf_counter() >= deadline:
                rounds -= 1
                break
            candidate, _ = _swap_search(prob, _kick(prob, kept, rng, size), deadline, max_swap_rounds)
            obj = _objective(prob, candidate)
            if obj < best_obj:
                kept, best_obj, kicks_accepted = candidate, obj, kicks_accepted + 1
        stats.update(solver="swap", greedy_objective=greedy_obj, greedy_seconds=greedy_seconds,
                     reverted_to_greedy=reverted, perturb_rounds=rounds, kicks_accepted=kicks_accepted)
    else:
        kept, stats = _anneal(prob, rng, deadline, time_limit, anneal_steps)
        stats["solver"] = "anneal"
    stats["seconds"] = time.perf_counter() - started
    lower = None
    if bound:
        t = time.perf_counter()
        lower = _fw_bound(prob, 200, 1e-6)["lower_bound"]
        stats["bound_seconds"] = time.perf_counter() - t
    return _result(prob, labels, kept, target, started, stats, lower_bound=lower)


# ------------------------------------------------------------------------------------------- Eq. 3 (epsilon)

@single_threaded
def epsilon_prune(S: torch.Tensor, epsilon: float, *, labels=None, seed: None | int | np.random.Generator = 0,
                  target: str = "paper", time_limit: float | None = None,
                  improve_rounds: int = 50) -> SelectionResult:
    """Eq. 3: prune as many examples as possible while the target's objective stays <= epsilon.

    Heuristic (Eq. 3 is NP-hard), with X_i = S_i - c_g (the target's shift; X = S for "paper"):
      1. Forward: grow the pruned set. With p_g its running sum, adding i changes the squared objective by
         2 p_g.X_i + ||X_i||^2; the plain greedy adds the smallest change until nothing fits, one matvec per
         addition (too slow at n = 50,000). Here each round scores every unpruned example with one matvec and
         runs that greedy exactly inside the 256 best (float64 deltas updated with their Gram matrix). It may
         go above epsilon for up to 16 additions (examples larger than epsilon can cancel in pairs) and keeps
         the longest prefix within epsilon; it rescores when the batch's best is scored worse than the first
         example left outside while the objective is above epsilon/2.
      2. Backward: start with everything pruned and greedily keep the example that lowers the objective most
         until it is within epsilon (the cardinality greedy, stopped by epsilon). Used, and then grown
         forward again, when it keeps fewer examples than step 1 left; it gives up when it stalls.
      3. Up to ``improve_rounds`` swaps (one pruned out, one unpruned in, among the 256 most promising of
         each) lower the objective to make room for further additions.
    A final exact float64 check repairs any rounding overshoot. On small random instances this pruned as many
    as the plain greedy or more, and within one of the brute-force maximum on 14-example problems; at
    n = 50,000 it takes 10-50 s on a 2-core CPU (stats["strategy"]: "forward", "backward", or "all" when
    pruning everything fits). Deterministic; ``seed`` is accepted for the shared interface.

    Args:
        S: (n, P) influence vectors.
        epsilon: bound on the objective (same units as ||S_i||), >= 0.
        labels: optional (n,) labels; required by the "classwise" target; fills ``per_class``.
        target: "paper" (||sum_pruned S_i||, the paper's Eq. 3), "scaled" (||sum_pruned (S_i - T/n)||) or
            "classwise". The last two are degenerate here: pruning everything meets them exactly (objective
            0 up to rounding), so any epsilon > 0 prunes all; "paper" is the meaningful Eq. 3 target.
        time_limit: wall seconds; the result is feasible whenever it stops.

    Returns:
        SelectionResult with kept = the complement of the pruned set and objective = its pruned-set norm.
    """
    started = time.perf_counter()
    check_random_state(seed)
    _check_target(target)
    n = len(S)
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not (0 <= epsilon < math.inf):
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    if time_limit is not None and not time_limit > 0:
        raise ValueError(f"time_limit must be None or > 0 seconds, got {time_limit}")
    if improve_rounds < 0:
        raise ValueError(f"improve_rounds must be >= 0, got {improve_rounds}")
    if labels is None:
        if target == "classwise":
            raise ValueError("target 'classwise' needs labels; pass labels=... or use target='paper'")
        lab = np.zeros(n, dtype=np.int64)
    else:
        lab = as_labels(labels)
        if len(lab) != n:
            raise ValueError(f"S has {n} rows but labels has {len(lab)} entries; they must match")
    prob = _prepare(S, lab, target, None)
    deadline = started + time_limit if time_limit is not None else math.inf
    pruned, stats = _epsilon_greedy(prob, float(epsilon), deadline, improve_rounds)
    kept_sorted = torch.nonzero(~pruned).view(-1)
    kept = prob.order[kept_sorted.numpy()]
    return make_result(kept, None if labels is None else lab, n, started=started, stats=stats, target=target,
                       objective=_pruned_objective(prob, pruned), t_norm=prob.t_norm)


def _pruned_objective(prob: _Problem, pruned: torch.Tensor) -> float:
    """Exact float64 sqrt(sum_g ||sum_{pruned in g} (S_i - c_g)||^2)."""
    return float(_pruned_sums(prob, pruned).pow(2).sum().sqrt())


def _pruned_sums(prob: _Problem, pruned: torch.Tensor) -> torch.Tensor:
    idx = torch.nonzero(pruned).view(-1)
    sums = torch.zeros_like(prob.spec.shift).index_add_(0, prob.ex_group[idx], prob.A[idx].double())
    counts = torch.bincount(prob.ex_group[idx], minlength=len(sums)).double()
    return sums - counts[:, None] * prob.spec.shift


def _epsilon_greedy(prob: _Problem, epsilon: float, deadline: float,
                    improve_rounds: int) -> tuple[torch.Tensor, dict]:
    dtype = prob.A.dtype
    shift = prob.spec.shift
    if bool((shift == 0).all()):
        X = prob.A
    else:
        X = torch.empty_like(prob.A)
        for g, (gs, ge) in enumerate(prob.grp_bounds):
            X[gs:ge] = prob.A[gs:ge] - shift[g].to(dtype)
    sqX = _row_sq_norms(X)
    grp = prob.ex_group
    n = len(X)
    eps2 = epsilon * epsilon
    pruned = torch.zeros(n, dtype=torch.bool)
    p = torch.zeros_like(shift)  # running pruned sums of X per group
    f = 0.0
    v = torch.empty(n, dtype=dtype)

    def scores() -> torch.Tensor:
        for g, (gs, ge) in enumerate(prob.grp_bounds):
            v[gs:ge] = X[gs:ge] @ p[g].to(dtype)
        return 2.0 * v.double() + sqX

    def grow(batch: int = _EPS_BATCH) -> tuple[int, int]:
        """Add examples while the batch greedy finds a feasible extension; returns (number added, rounds)."""
        nonlocal f, p
        added = rounds = 0
        while time.perf_counter() < deadline:
            delta = scores().masked_fill_(pruned, math.inf)
            m = int((~pruned).sum())
            if m == 0:
                break
            rounds += 1
            top = torch.topk(delta, min(batch + 1, m), largest=False)
            cand = top.indices[:batch]
            edge = float(top.values[batch]) if len(top.values) > batch else math.inf  # outsiders scored above
            Xb, gb = X[cand].double(), grp[cand]
            d = (2.0 * (Xb * p[gb]).sum(1) + sqX[cand]).numpy()  # exact float64 deltas at the current p
            gram = ((Xb @ Xb.T) * (gb[:, None] == gb[None, :])).numpy()
            taken: list[int] = []
            f_run, feasible = f, 0  # feasible: length of the longest prefix of `taken` within epsilon
            while len(taken) < len(d):  # one-at-a-time greedy inside the batch, with exact Gram updates
                b = int(np.argmin(d))
                if len(taken) == feasible and d[b] > edge and f_run + d[b] > _EPS_ROOM * eps2:
                    break  # an outsider may now be better and room is getting tight: rescore
                f_run += float(d[b])
                d += 2.0 * gram[b]
                d[b] = math.inf
                taken.append(b)
                if f_run <= eps2:
                    feasible = len(taken)
                elif len(taken) - feasible >= _EPS_LOOKAHEAD:
                    break  # the excursion above epsilon did not come back
            if not feasible:
                break
            take = torch.as_tensor(taken[:feasible])
            pruned[cand[take]] = True
            p = p.index_add(0, gb[take], Xb[take])
            f = float(p.pow(2).sum())
            added += feasible
        return added, rounds

    if float(_group_sums(X, grp, len(shift)).pow(2).sum()) <= eps2:  # pruning everything already fits
        added, rounds, strategy, keep = n, 0, "all", None
        pruned[:] = True
    else:
        added, rounds = grow()
        strategy = "forward"
        keep = _epsilon_backward(X, sqX, grp, prob.grp_bounds, eps2, n - int(pruned.sum()) - 1,
                                 deadline)
    if keep is not None:  # keeping a few examples beats pruning upwards: start from its complement
        pruned, strategy = ~keep, "backward"
        p = torch.zeros_like(shift).index_add_(0, grp[keep], X[keep].double())
        p = _group_sums(X, grp, len(shift)) - p
        f = float(p.pow(2).sum())
        more, r2 = grow()
        added, rounds = added + more, rounds + r2
    swaps = 0
    tol = 64 * torch.finfo(dtype).eps * (eps2 + float(sqX.max()))
    for _ in range(improve_rounds):
        if time.perf_counter() >= deadline or not pruned.any() or pruned.all():
            break
        pdot = scores()  # 2 p.X_i + ||X_i||^2: gain of adding i; removing i changes f by -2 p.X_i + ||X_i||^2
        remove = (2.0 * sqX - pdot).masked_fill(~pruned, math.inf)
        add = pdot.masked_fill(pruned, math.inf)
        out_c = torch.topk(remove, min(256, int(pruned.sum())), largest=False).indices
        in_c = torch.topk(add, min(256, int((~pruned).sum())), largest=False).indices
        cross = (X[out_c].double() @ X[in_c].double().T) * (grp[out_c][:, None] == grp[in_c][None, :])
        D = remove[out_c][:, None] + add[in_c][None, :] - 2.0 * cross
        flat = int(D.argmin())
        a, b = flat // D.shape[1], flat % D.shape[1]
        if float(D[a, b]) >= -tol:
            break
        i, j = int(out_c[a]), int(in_c[b])
        pruned[i], pruned[j] = False, True
        p[grp[i]] -= X[i].double()
        p[grp[j]] += X[j].double()
        f = float(p.pow(2).sum())
        swaps += 1
        more, r2 = grow()
        added, rounds = added + more, rounds + r2
    # exact check against S itself; drop the most harmful pruned example while rounding left us above epsilon
    repaired = 0
    while pruned.any() and _pruned_objective(prob, pruned) > epsilon:
        sums = _pruned_sums(prob, pruned)
        idx = torch.nonzero(pruned).view(-1)
        Xi = prob.A[idx].double() - shift[grp[idx]]
        change = -2.0 * (Xi * sums[grp[idx]]).sum(1) + Xi.pow(2).sum(1)
        pruned[idx[int(change.argmin())]] = False
        repaired += 1
    stats = {"solver": "epsilon-greedy", "strategy": strategy, "epsilon": epsilon, "rounds": rounds,
             "swaps": swaps, "repaired": repaired, "pruned": int(pruned.sum())}
    return pruned, stats


def _group_sums(X: torch.Tensor, grp: torch.Tensor, n_groups: int) -> torch.Tensor:
    out = torch.zeros(n_groups, X.shape[1], dtype=torch.float64)
    for s in range(0, len(X), _CHUNK):
        out.index_add_(0, grp[s:s + _CHUNK], X[s:s + _CHUNK].double())
    return out


def _epsilon_backward(X: torch.Tensor, sqX: torch.Tensor, grp: torch.Tensor, grp_bounds: np.ndarray,
                      eps2: float, max_keep: int, deadline: float, block: int = 64) -> torch.Tensor | None:
    """Eq. 3 from the other end: start with everything pruned and greedily keep (un-prune) the example that
    lowers the objective most, until it is within epsilon. Returns the kept mask, or None when it would need
    more than ``max_keep`` examples, runs out of time, or stalls (no example lowers the objective, or under
    1% progress in 100 steps).
    Gram rows for the best-scored candidates are cached as in ``_greedy``."""
    n_groups = len(grp_bounds)
    r = _group_sums(X, grp, n_groups)  # the pruned sum while everything is pruned
    f = float(r.pow(2).sum())
    keep = torch.zeros(len(X), dtype=torch.bool)
    if f <= eps2:
        return keep
    score = sqX.clone()  # change of f when i is kept: ||X_i||^2 - 2 r_g.X_i
    for g, (gs, ge) in enumerate(grp_bounds):
        score[gs:ge] -= 2.0 * (X[gs:ge] @ r[g].to(X.dtype)).double()
    cache: dict[int, int] = {}
    hits, f_window = 0, f
    for step in range(1, max_keep + 1):
        a = int(score.argmin())
        if float(score[a]) >= 0.0 or time.perf_counter() >= deadline:
            return None
        if step % 100 == 0:  # stalled: under 1% progress in 100 steps, the noise floor is above epsilon
            if f > 0.99 * f_window:
                return None
            f_window = f
        if a not in cache:
            block = min(max(2 * hits + 2, 4), 128) if cache else block
            top = torch.topk(score, min(block, int(torch.isfinite(score).sum())), largest=False).indices
            gram = (X @ X[top].T).T.contiguous()
            cache, hits = {int(i): row for row, i in enumerate(top)}, 0
        hits += 1
        row = gram[cache[a]] if n_groups == 1 else gram[cache[a]] * (grp == grp[a])
        f += float(score[a])
        score.add_(row, alpha=2.0)
        score[a] = math.inf
        keep[a] = True
        if f <= eps2:
            return keep
    return None
