"""Selections from the NAS-proxy and coreset literature that beat random at high pruning rates.

None of them keeps the hardest examples first, which is where score baselines (``_baselines.py``) fail at
small keep rates: entropy sampling keeps both tails, CCS drops the hardest and covers the rest evenly,
moderate keeps the middle, easy keeps the easiest. Each keeps exact per-class quotas and reads only what the
scoring run records (``nasprune/proxies/_scoring.py``): the pruning network's final logits and features, and its early
EL2N score or forgetting counts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import torch

from ._common import (SelectionResult, as_labels, as_matrix, as_scores, check_random_state, make_result,
                      per_class_groups, top_k_per_class)
from ._registry import register_method

Quota = int | Mapping[int, int]

#: Entropy-histogram weightings of Na et al.: per example, "p1" (max_count - count_b + 1) / count_b, the
#: paper's choice; "p2" 1 / count_b (every occupied bin equally likely); "p3" 1 / count_b**2.
ENTROPY_WEIGHTINGS = ("p1", "p2", "p3")
_MIN_ENTROPY = 1e-12  # nats; smaller entropies (certain predictions) share one bin instead of reaching -inf
CCS_SCORES = ("el2n", "forgetting_counts")  # difficulty scores ccs can stratify: higher means harder


# ------------------------------------------------------------------------------------------- entropy

def entropy_weights(logits, labels, *, bin_width: float = 0.5, weighting: str = "p1") -> np.ndarray:
    """Per-example sampling probability of ``entropy``: a histogram of log10 prediction entropy per class.

    Bins are ``bin_width`` wide and aligned to multiples of it; an example in bin b of its class, with
    count_b examples of the class in that bin, gets weight ``ENTROPY_WEIGHTINGS[weighting]``. Weights are
    normalised to sum to 1 within each class.
    """
    labels = as_labels(labels)
    if weighting not in ENTROPY_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {ENTROPY_WEIGHTINGS}, got {weighting!r}")
    if not bin_width > 0:
        raise ValueError(f"bin_width must be > 0 (log10 units), got {bin_width}")
    logp = torch.log_softmax(as_matrix(logits, len(labels), "logits").double(), dim=1)
    entropy = -(logp.exp() * logp).sum(1).numpy()
    log_entropy = np.log10(np.maximum(entropy, _MIN_ENTROPY))
    weights = np.zeros(len(labels))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        b = np.floor(log_entropy[idx] / bin_width).astype(np.int64)
        counts = np.bincount(b - b.min())
        count = counts[b - b.min()].astype(np.float64)
        bin_weight = {"p1": counts.max() - count + 1, "p2": np.ones_like(count), "p3": 1.0 / count}[weighting]
        w = bin_weight / count
        weights[idx] = w / w.sum()
    return weights


@register_method("entropy", inputs=("logits",), keeps="both tails", stochastic=True)
def entropy(labels, keep_per_class: Quota, *, logits, seed=0, bin_width: float = 0.5,
            weighting: str = "p1") -> SelectionResult:
    """Entropy-histogram sampling (Na et al., IJCAI 2021): a seeded draw weighted toward sparse entropy bins.

    Keeps both tails. Per class, the pruning network's prediction entropy (from its final logits) is binned on
    a log10 scale, and examples are drawn without replacement with the weights of ``entropy_weights``: an
    example in a sparse bin is more likely to be drawn, so the rare very confident (low-entropy) and very
    uncertain (high-entropy) examples are over-represented next to the crowded middle. Na et al. found that
    NAS on such a proxy finds architectures as good as on the whole set where random and hardest-first
    selections do not. Defaults follow the authors' code for CIFAR-10 (bin width 0.5, their best weighting
    P1); the authors draw from the whole set, here each class is drawn separately for exact quotas.
    """
    started = time.perf_counter()
    rng = check_random_state(seed)
    labels, groups = per_class_groups(labels, keep_per_class)
    weights = entropy_weights(logits, labels, bin_width=bin_width, weighting=weighting)
    kept = [rng.choice(idx, size=k, replace=False, p=weights[idx] / weights[idx].sum()) for _, idx, k in groups]
    kept = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return make_result(kept, labels, len(labels), started=started,
                       stats={"method": "entropy", "bin_width": bin_width, "weighting": weighting})


# ------------------------------------------------------------------------------------------- CCS

def stratum_budgets(sizes, budget: int, seed=None) -> np.ndarray:
    """CCS's allocation of ``budget`` examples over strata of the given sizes (Zheng et al., Algorithm 1).

    Strata are visited from the smallest; each gets min(its size, remaining budget // strata left), so small
    strata are taken whole and the rest share the budget evenly. Equal sizes are visited in a seeded order
    (``seed=None``: by position), which decides who gets the odd examples when the budget does not divide.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.ndim != 1 or (sizes < 0).any():
        raise ValueError(f"sizes must be a 1-d array of counts >= 0, got {sizes}")
    if not 0 <= budget <= sizes.sum():
        raise ValueError(f"budget must be in [0, {int(sizes.sum())}] (the strata's total), got {budget}")
    tiebreak = np.arange(len(sizes)) if seed is None else check_random_state(seed).permutation(len(sizes))
    out = np.zeros_like(sizes)
    left = int(budget)
    for visited, s in enumerate(np.lexsort((tiebreak, sizes))):
        out[s] = min(int(sizes[s]), left // (len(sizes) - visited))
        left -= int(out[s])
    return out


@register_method("ccs", inputs=("el2n",), keeps="coverage", stochastic=True)
def ccs(labels, keep_per_class: Quota, *, el2n=None, forgetting_counts=None, seed=0, score: str = "el2n",
        beta: float = 0.3, strata: int = 50) -> SelectionResult:
    """Coverage-centric coreset selection (Zheng et al., ICLR 2023): drop the hardest, then sample every stratum.

    Keeps all difficulty levels except the hardest. Per class, the ``beta`` fraction with the highest
    difficulty ``score`` (EL2N by default, or forgetting counts; ties in a seeded order) is dropped, never so
    many that fewer than k_c remain. The rest is split into ``strata`` equal-width score strata, the quota is
    spread over them by ``stratum_budgets``, and each stratum is sampled uniformly. Zheng et al. show that at
    high pruning rates hardest-first scores lose coverage of the dense, easy regions and fall below random,
    while CCS stays above it (7 points at 90% pruning on CIFAR-10); the hardest examples it drops are
    often mislabeled or ambiguous. Defaults: beta = 0.3, the paper's setting at its highest rate (90% on
    CIFAR-10; proxies here prune more), and 50 strata, as the authors' code uses.
    """
    started = time.perf_counter()
    if score not in CCS_SCORES:
        raise ValueError(f"score must be one of {CCS_SCORES}, got {score!r}")
    if not 0 <= beta < 1:
        raise ValueError(f"beta (the hardest fraction dropped) must be in [0, 1), got {beta}")
    if isinstance(strata, bool) or not isinstance(strata, (int, np.integer)) or strata < 1:
        raise ValueError(f"strata must be an int >= 1, got {strata!r}")
    rng = check_random_state(seed)
    labels, groups = per_class_groups(labels, keep_per_class)
    values = {"el2n": el2n, "forgetting_counts": forgetting_counts}[score]
    if values is None:
        raise ValueError(f"ccs with score={score!r} needs the {score} input; pass {score}=...")
    difficulty = as_scores(values, len(labels), score)
    tiebreak = rng.permutation(len(labels))
    kept, dropped = [], 0
    for _, idx, k in groups:
        hardest_first = idx[np.lexsort((tiebreak[idx], -difficulty[idx]))]
        drop = min(int(beta * len(idx)), len(idx) - k)
        rest = hardest_first[drop:]
        dropped += drop
        edges = np.histogram_bin_edges(difficulty[rest], bins=strata)
        which = np.clip(np.searchsorted(edges, difficulty[rest], side="right") - 1, 0, strata - 1)
        budgets = stratum_budgets(np.bincount(which, minlength=strata), k, rng)
        for j in np.flatnonzero(budgets):
            kept.append(rng.choice(rest[which == j], size=budgets[j], replace=False))
    kept = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return make_result(kept, labels, len(labels), started=started,
                       stats={"method": "ccs", "score": score, "beta": beta, "strata": strata, "dropped": dropped})


# ------------------------------------------------------------------------------------------- moderate, easy

@register_method("moderate", inputs=("features",), keeps="moderate", stochastic=False)
def moderate(labels, keep_per_class: Quota, *, features, seed=0) -> SelectionResult:
    """Moderate coreset (Xia et al., ICLR 2023): per class, the middle band of distances to the median feature.

    Keeps neither end. Per class, each example's distance to the class's coordinate-wise median feature is
    ranked, and the k_c examples whose ranks are closest to the median rank are kept (the authors' code keeps
    this middle band of sorted distances). Near the centre are the easy, redundant examples, far from it the
    hard and possibly mislabeled ones; Xia et al. find that the moderate band is robust across pruning rates
    and noise where either end fails. Deterministic; ``seed`` breaks ties in distance.
    """
    started = time.perf_counter()
    rng = check_random_state(seed)
    labels, groups = per_class_groups(labels, keep_per_class)
    X = as_matrix(features, len(labels), "features").double().numpy()
    tiebreak = rng.permutation(len(labels))
    kept = []
    for _, idx, k in groups:
        distance = np.linalg.norm(X[idx] - np.median(X[idx], axis=0), axis=1)
        ranked = idx[np.lexsort((tiebreak[idx], distance))]
        start = (len(idx) - k) // 2
        kept.append(ranked[start:start + k])
    kept = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return make_result(kept, labels, len(labels), started=started, stats={"method": "moderate"})


@register_method("easy", inputs=("el2n",), keeps="easiest", stochastic=False)
def easy(labels, keep_per_class: Quota, *, el2n, seed=0) -> SelectionResult:
    """Keep the SMALLEST EL2N scores of each class: the easiest, most prototypical examples (the mirror of el2n).

    Sorscher et al. (NeurIPS 2022, "Beyond neural scaling laws") show that when the kept set is small, keeping
    easy examples beats keeping hard ones (the reverse holds when data is abundant); Shleifer & Prokop (2019)
    found that the easiest 10% of images explain most of the variance of full-data hyperparameter results.
    EL2N is taken early in the scoring run (``nasprune/proxies/_scoring.py``). Ties broken by a seeded order.
    """
    started = time.perf_counter()
    labels = as_labels(labels)
    score = as_scores(el2n, len(labels), "el2n")
    return top_k_per_class(labels, keep_per_class, -score, seed, "easy", started)
