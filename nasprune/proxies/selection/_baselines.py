"""Baseline selections with the same exact per-class quotas as the influence method (paper section 6.3).

Every baseline has the signature ``fn(labels, keep_per_class, *, seed=0, <its input>=...)``, returns a
SelectionResult and is registered in ``_registry``. Scores and features are inputs: nothing here trains or
scores a model.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import torch

from ._common import (SelectionResult, as_labels, as_matrix, as_scores, check_random_state, make_result,
                      per_class_groups, single_threaded, top_k_per_class)
from ._registry import register_method

Quota = int | Mapping[int, int]


@register_method("random", inputs=(), keeps="uniform", stochastic=True)
def random(labels, keep_per_class: Quota, *, seed=0) -> SelectionResult:
    """Uniformly random k_c examples of each class (the baseline every method must beat)."""
    started = time.perf_counter()
    rng = check_random_state(seed)
    labels, groups = per_class_groups(labels, keep_per_class)
    kept = [rng.choice(idx, size=k, replace=False) for _, idx, k in groups]
    kept = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return make_result(kept, labels, len(labels), started=started, stats={"method": "random"})


@register_method("herding", inputs=("features",), keeps="representative", stochastic=False)
@single_threaded
def herding(labels, keep_per_class: Quota, *, features, seed=0) -> SelectionResult:
    """Welling's herding per class: repeatedly add the example that brings the mean of the selected features
    closest to the class mean feature (Welling 2009). Deterministic; ``seed`` is unused."""
    started = time.perf_counter()
    check_random_state(seed)
    labels, groups = per_class_groups(labels, keep_per_class)
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


@register_method("kcenter", inputs=("features",), keeps="diverse", stochastic=False)
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
    labels, groups = per_class_groups(labels, keep_per_class)
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


@register_method("forgetting", inputs=("forgetting_counts",), keeps="hardest", stochastic=False)
def forgetting(labels, keep_per_class: Quota, *, forgetting_counts, seed=0) -> SelectionResult:
    """Keep the MOST forgotten examples of each class (Toneva et al.: forgettable examples are the informative
    ones; the paper's baseline "selects examples easy to be forgotten"). Counts are used as given, so the
    caller decides how never-learned examples are counted. Ties (common: many zeros) are broken by a seeded
    order."""
    started = time.perf_counter()
    labels = as_labels(labels)
    score = as_scores(forgetting_counts, len(labels), "forgetting_counts")
    return top_k_per_class(labels, keep_per_class, score, seed, "forgetting", started)


@register_method("grand", inputs=("grand",), keeps="hardest", stochastic=False)
def grand(labels, keep_per_class: Quota, *, grand, seed=0) -> SelectionResult:
    """Keep the LARGEST GraNd scores (expected loss-gradient norm, Paul et al. 2021): large-gradient examples
    are the hard, informative ones. Ties broken by a seeded order."""
    started = time.perf_counter()
    labels = as_labels(labels)
    score = as_scores(grand, len(labels), "grand")
    return top_k_per_class(labels, keep_per_class, score, seed, "grand", started)


@register_method("el2n", inputs=("el2n",), keeps="hardest", stochastic=False)
def el2n(labels, keep_per_class: Quota, *, el2n, seed=0) -> SelectionResult:
    """Keep the LARGEST EL2N scores (norm of softmax output minus one-hot label, Paul et al. 2021): large
    error norms mark hard examples. Ties broken by a seeded order."""
    started = time.perf_counter()
    labels = as_labels(labels)
    score = as_scores(el2n, len(labels), "el2n")
    return top_k_per_class(labels, keep_per_class, score, seed, "el2n", started)


@register_method("influence_score", inputs=("S",), keeps="hardest", stochastic=False)
def influence_score(labels, keep_per_class: Quota, *, S, seed=0) -> SelectionResult:
    """Keep the examples with the LARGEST influence norm ||S_i|| (Koh & Liang 2017): each example judged
    alone, without the group effect that Eq. 4 accounts for. Ties broken by a seeded order."""
    started = time.perf_counter()
    labels = as_labels(labels)
    S = as_matrix(S, len(labels), "S")
    norms = torch.linalg.vector_norm(S.double(), dim=1).numpy()
    return top_k_per_class(labels, keep_per_class, norms, seed, "influence_score", started)
