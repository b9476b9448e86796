"""Baseline selections with the same exact per-class quotas as the influence method (paper section 6.3).

Every baseline has the signature ``fn(labels, keep_per_class, *, seed=0, <its input>=...)`` and returns a
SelectionResult. Scores and features are inputs: nothing here trains or scores a model.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping

import numpy as np
import torch

from ._common import (SelectionResult, as_labels, as_matrix, as_scores, check_random_state, make_result,
                      resolve_quota, single_threaded)

Quota = int | Mapping[int, int]


def _per_class(labels, keep_per_class: Quota):
    """Validated labels, quota and, per class with a positive quota, (class, member indices, k)."""
    labels = as_labels(labels)
    quota = resolve_quota(labels, keep_per_class)
    groups = [(c, np.flatnonzero(labels == c), k) for c, k in quota.items() if k > 0]
    return labels, groups


def _top_k_by_score(labels, keep_per_class: Quota, score: np.ndarray, seed, method: str,
                    started: float) -> SelectionResult:
    """Keep the k_c highest scores of each class; ties broken by one seeded random order."""
    rng = check_random_state(seed)
    labels, groups = _per_class(labels, keep_per_class)
    tiebreak = rng.permutation(len(labels))
    kept = []
    for _, idx, k in groups:
        order = np.lexsort((tiebreak[idx], -score[idx]))  # primary key: score descending
        kept.append(idx[order[:k]])
    kept = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return make_result(kept, labels, len(labels), started=started, stats={"method": method})


def random(labels, keep_per_class: Quota, *, seed=0) -> SelectionResult:
    """Uniformly random k_c examples of each class (the baseline every method must beat)."""
    started = time.perf_counter()
    rng = check_random_state(seed)
    labels, groups = _per_class(labels, keep_per_class)
    kept = [rng.choice(idx, size=k, replace=False) for _, idx, k in groups]
    kept = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return make_result(kept, labels, len(labels), started=started, stats={"method": "random"})


@single_threaded
def herding(labels, keep_per_class: Quota, *, features, seed=0) -> SelectionResult:
    """Welling's herding per class: repeatedly add the example that brings the mean of the selected features
    closest to the class mean feature (Welling 2009). Deterministic; ``seed`` is unused."""
    started = time.perf_counter()
    check_random_state(seed)
    labels, groups = _per_class(labels, keep_per_class)
    X = as_matrix(features, len(labels), "features").double()
    kept = []
    for _, idx, k in groups:
        Xc = X[torch.as_tensor(idx)]
        mu, total = Xc.mean(0), torch.zeros(Xc.shape[1], dtype=torch.float64)
        sq = Xc.pow(2).sum(1)
        taken = torch.zeros(len(idx), dtype=torch.bool)
        for t in range(k):
            a = (t + 1) * mu - total  # ||a - x_i||^2 = ||(t+1) mu - (total + x_i)||^2; ||a||^2 is constant
            score = (sq - 2.0 * (Xc @ a)).masked_fill_(taken, float("inf"))
            i = int(score.argmin())
            taken[i] = True
            total += Xc[i]
            kept.append(idx[i])
    return make_result(np.array(kept, dtype=np.int64), labels, len(labels), started=started,
                       stats={"method": "herding"})


@single_threaded
def kcenter(labels, keep_per_class: Quota, *, features, seed=0, start: str = "mean") -> SelectionResult:
    """k-center greedy per class: repeatedly add the example farthest from everything selected so far.

    The first center is the example closest to the class mean (``start="mean"``, deterministic) or a seeded
    random example (``start="random"``). Distances are Euclidean in feature space.
    """
    started = time.perf_counter()
    if start not in ("mean", "random"):
        raise ValueError(f"start must be 'mean' or 'random', got {start!r}")
    rng = check_random_state(seed)
    labels, groups = _per_class(labels, keep_per_class)
    X = as_matrix(features, len(labels), "features").double()
    kept = []
    for _, idx, k in groups:
        Xc = X[torch.as_tensor(idx)]
        if start == "mean":
            first = int((Xc - Xc.mean(0)).pow(2).sum(1).argmin())
        else:
            first = int(rng.integers(len(idx)))
        dist = (Xc - Xc[first]).pow(2).sum(1)
        chosen = [first]
        for _ in range(k - 1):
            i = int(dist.argmax())
            chosen.append(i)
            dist = torch.minimum(dist, (Xc - Xc[i]).pow(2).sum(1))
        kept.extend(idx[chosen])
    return make_result(np.array(kept, dtype=np.int64), labels, len(labels), started=started,
                       stats={"method": "kcenter", "start": start})


def forgetting(labels, keep_per_class: Quota, *, forgetting_counts, seed=0) -> SelectionResult:
    """Keep the MOST forgotten examples of each class (Toneva et al.: forgettable examples are the informative
    ones; the paper's baseline "selects examples easy to be forgotten"). Counts are used as given, so the
    caller decides how never-learned examples are counted. Ties (common: many zeros) are broken by a seeded
    order."""
    started = time.perf_counter()
    labels = as_labels(labels)
    score = as_scores(forgetting_counts, len(labels), "forgetting_counts")
    return _top_k_by_score(labels, keep_per_class, score, seed, "forgetting", started)


def grand(labels, keep_per_class: Quota, *, grand, seed=0) -> SelectionResult:
    """Keep the LARGEST GraNd scores (expected loss-gradient norm, Paul et al. 2021): large-gradient examples
    are the hard, informative ones. Ties broken by a seeded order."""
    started = time.perf_counter()
    labels = as_labels(labels)
    score = as_scores(grand, len(labels), "grand")
    return _top_k_by_score(labels, keep_per_class, score, seed, "grand", started)


def el2n(labels, keep_per_class: Quota, *, el2n, seed=0) -> SelectionResult:
    """Keep the LARGEST EL2N scores (norm of softmax output minus one-hot label, Paul et al. 2021): large
    error norms mark hard examples. Ties broken by a seeded order."""
    started = time.perf_counter()
    labels = as_labels(labels)
    score = as_scores(el2n, len(labels), "el2n")
    return _top_k_by_score(labels, keep_per_class, score, seed, "el2n", started)


def influence_score(labels, keep_per_class: Quota, *, S, seed=0) -> SelectionResult:
    """Keep the examples with the LARGEST influence norm ||S_i|| (Koh & Liang 2017): each example judged
    alone, without the group effect that Eq. 4 accounts for. Ties broken by a seeded order."""
    started = time.perf_counter()
    labels = as_labels(labels)
    S = as_matrix(S, len(labels), "S")
    norms = torch.linalg.vector_norm(S.double(), dim=1).numpy()
    return _top_k_by_score(labels, keep_per_class, norms, seed, "influence_score", started)


#: Baseline name -> selection function.
BASELINES: dict[str, Callable[..., SelectionResult]] = {
    "random": random,
    "herding": herding,
    "kcenter": kcenter,
    "forgetting": forgetting,
    "grand": grand,
    "el2n": el2n,
    "influence_score": influence_score,
}


def baseline_inputs(name: str) -> tuple[str, ...]:
    """Names of the inputs (features, scores) that baseline ``name`` requires."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known baselines: {sorted(BASELINES)}")
    params = inspect.signature(BASELINES[name]).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty)


def select_baseline(name: str, labels, keep_per_class: Quota, *, seed=0, **inputs) -> SelectionResult:
    """Run baseline ``name``, passing only the inputs it takes (one dict of all inputs serves every baseline).

    Raises ValueError for an unknown name or a missing required input.
    """
    required = baseline_inputs(name)
    missing = [key for key in required if key not in inputs]
    if missing:
        raise ValueError(f"baseline {name!r} needs input(s) {missing}; pass them as keyword arguments")
    accepted = inspect.signature(BASELINES[name]).parameters
    kwargs = {key: value for key, value in inputs.items() if key in accepted}
    return BASELINES[name](labels, keep_per_class, seed=seed, **kwargs)
