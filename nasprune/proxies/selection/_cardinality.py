"""Eq. 4 (cardinality-guaranteed pruning): greedy + swap and simulated annealing, and the Frank-Wolfe bound.

See ``_problem`` for the targets and the residual bookkeeping the solvers share.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import numpy as np
import torch

from ._common import (SelectionResult, as_labels, check_random_state, resolve_quota,
                      single_threaded)
from ._problem import (SOLVERS, _Problem, _kept_residual, _objective, _prepare, _result, _tolerance)


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
            and results/objective-study/README.md for why the literal target collapses to high-loss examples).
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


