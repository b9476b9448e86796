"""What every selection method shares: the result type, per-class quotas, seeds and input checks."""

from __future__ import annotations

import functools
import numbers
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from nasprune.config import check_random_state  # noqa: F401  (the methods' one seed path)


@dataclass
class SelectionResult:
    """A selected (kept) subset and how it was found.

    Attributes:
        kept: sorted int64 indices of the kept examples.
        pruned_count: number of examples left out.
        objective: the method's objective at ``kept`` (None for score baselines).
        t_norm: ``||T||`` with ``T`` the sum of all influence vectors (None for baselines).
        lower_bound: certified lower bound on ``objective`` over all feasible selections, if computed.
        target: name of the influence target optimised (None for baselines).
        per_class: kept count for each class label (empty when no labels were given).
        stats: solver details (name, iterations, seconds, greedy objective, swaps, ...).
    """

    kept: np.ndarray
    pruned_count: int
    objective: float | None = None
    t_norm: float | None = None
    lower_bound: float | None = None
    target: str | None = None
    per_class: dict[int, int] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    def mask(self, n: int) -> np.ndarray:
        """Boolean mask of length ``n``, True where an example is kept."""
        out = np.zeros(n, dtype=bool)
        out[self.kept] = True
        return out


def single_threaded(fn: Callable) -> Callable:
    """Run ``fn`` with one torch intra-op thread, restoring the setting afterwards.

    The solvers are long chains of small dependent tensor ops (argmin, a row update, a small Gram block) where
    intra-op threads buy nothing and, on a busy machine, every parallel region waits for a descheduled
    thread: measured here, a 600-row index_add went from 27 us to 59 ms with two threads under load. The big
    matvecs are memory-bound and lose little on one thread. Note: torch's thread count is process-wide.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)
    return wrapper


def as_labels(labels) -> np.ndarray:
    """Labels as a 1-d int64 numpy array (accepts a tensor or any array-like of integers)."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-d, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {arr.dtype}; cast them with .astype(int)")
    return arr.astype(np.int64, copy=False)


def as_scores(values, n: int, name: str) -> np.ndarray:
    """A per-example score as a finite float64 array of length ``n``."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match labels, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf values; clean them before selection")
    return arr


def as_matrix(values, n: int, name: str) -> torch.Tensor:
    """A per-example matrix (n, P) as a finite float32/float64 CPU tensor."""
    t = torch.as_tensor(values).detach().cpu()
    if t.ndim != 2 or t.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n}, P) to match labels, got {tuple(t.shape)}")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf values; clean them before selection")
    return t


def fraction_quota(labels, keep: float) -> dict[int, int]:
    """Per-class counts that keep the fraction ``keep`` (in (0, 1]) of every class present in ``labels``,
    rounded: a keep rate as a ``keep_per_class`` mapping (pruning 40% is ``keep=0.6``)."""
    if isinstance(keep, bool) or not isinstance(keep, numbers.Real) or not 0 < keep <= 1:
        raise ValueError(f"keep must be a fraction in (0, 1], got {keep!r}")
    classes, counts = np.unique(as_labels(labels), return_counts=True)
    return {int(c): round(keep * int(k)) for c, k in zip(classes, counts)}


def resolve_quota(labels, keep_per_class: int | Mapping[int, int]) -> dict[int, int]:
    """Exact number of examples to keep in each class present in ``labels``.

    ``keep_per_class`` is one int for every class, or a mapping class -> count; classes missing from the
    mapping keep 0 examples. Raises ValueError for a negative count, a class not in ``labels``, or a count
    larger than the class.
    """
    labels = as_labels(labels)
    classes, counts = np.unique(labels, return_counts=True)
    sizes = dict(zip(classes.tolist(), counts.tolist()))
    if isinstance(keep_per_class, Mapping):
        unknown = sorted(set(keep_per_class) - set(sizes))
        if unknown:
            raise ValueError(f"keep_per_class names unknown class(es) {unknown}; "
                             f"classes present: {sorted(sizes)}")
        quota = {c: keep_per_class.get(c, 0) for c in sizes}
    else:
        quota = {c: keep_per_class for c in sizes}
    for c, k in quota.items():
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise ValueError(f"keep_per_class for class {c} must be an int, got {k!r}")
        if k < 0:
            raise ValueError(f"keep_per_class for class {c} must be >= 0, got {k}")
        if k > sizes[c]:
            raise ValueError(f"keep_per_class asks for {k} examples of class {c}, which has only {sizes[c]}; "
                             f"lower the quota to at most {sizes[c]}")
    return {int(c): int(k) for c, k in quota.items()}


def per_class_groups(labels, keep_per_class: int | Mapping[int, int]) -> tuple[np.ndarray, list]:
    """Validated labels and, per class with a positive quota, (class, member indices, k_c)."""
    labels = as_labels(labels)
    quota = resolve_quota(labels, keep_per_class)
    groups = [(c, np.flatnonzero(labels == c), k) for c, k in quota.items() if k > 0]
    return labels, groups


def top_k_per_class(labels, keep_per_class: int | Mapping[int, int], score: np.ndarray, seed, method: str,
                    started: float, stats: dict | None = None) -> SelectionResult:
    """Keep the k_c highest scores of each class; ties broken by one seeded random order."""
    rng = check_random_state(seed)
    labels, groups = per_class_groups(labels, keep_per_class)
    tiebreak = rng.permutation(len(labels))
    kept = []
    for _, idx, k in groups:
        order = np.lexsort((tiebreak[idx], -score[idx]))  # primary key: score descending
        kept.append(idx[order[:k]])
    kept = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return make_result(kept, labels, len(labels), started=started, stats={"method": method, **(stats or {})})


def per_class_counts(labels: np.ndarray, kept: np.ndarray) -> dict[int, int]:
    """Kept count for every class present in ``labels`` (0 for classes with nothing kept)."""
    classes = np.unique(labels)
    counts = dict(zip(*np.unique(labels[kept], return_counts=True)))
    return {int(c): int(counts.get(c, 0)) for c in classes}


def make_result(kept, labels: np.ndarray | None, n: int, *, started: float, stats: dict | None = None,
                **fields) -> SelectionResult:
    """Build a SelectionResult with sorted indices, pruned count, per-class counts and elapsed seconds."""
    kept = np.sort(np.asarray(kept, dtype=np.int64))
    stats = dict(stats or {})
    stats.setdefault("seconds", time.perf_counter() - started)
    per_class = per_class_counts(labels, kept) if labels is not None else {}
    return SelectionResult(kept=kept, pruned_count=int(n - len(kept)), per_class=per_class, stats=stats,
                           **fields)
