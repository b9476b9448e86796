"""What to read a proxy's metrics against: the noise ceiling (how well the whole set agrees with itself across
seeds), the random null (where a proxy falls among many random proxies of its size), and whether the whole set's
ranking has settled by its last epoch. Pure functions of the jobs table, like ``_metrics.py``.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ._metrics import (LOWER_IS_BETTER, candidate_means, interval, metric_names, point_metrics, quarter_name,
                       resamples, with_intervals)

__all__ = ["NULL_COLUMNS", "draw_metrics", "noise_ceiling", "place_among", "random_draws", "random_null",
           "ranking_by_epoch", "seed_agreement"]


def _by_seed(jobs: pd.DataFrame, training_set: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Val and test accuracy per candidate (rows, sorted) and seed (columns), for the candidates finished
    under every seed."""
    rows = jobs[jobs["training_set"] == training_set]
    val, test = (rows.pivot_table(index="candidate", columns="seed", values=c, aggfunc="first", dropna=False)
                 for c in ("val_acc", "test_acc"))
    keep = val.notna().all(axis=1) & test.notna().all(axis=1)
    return val[keep], test[keep]


def seed_agreement(jobs: pd.DataFrame, whole: str = "whole", *, top: int = 10, k: int = 10, quarter: float = 0.25,
                   n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> pd.DataFrame:
    """How well the whole set agrees with itself: for every ordered pair of its seeds (a, b), the metrics of
    seed a's validation accuracy ranking the candidates as a proxy would, against seed b's validation and
    test accuracy as the truth, with bootstrap intervals over candidates.

    Ordered, because the top-k metrics and regret are not symmetric (who picks the top, who is the
    truth). Only candidates finished under every seed of ``whole`` are used. Columns: ``seed_a``,
    ``seed_b``, each metric with ``_lo``/``_hi``, ``candidates``; empty with fewer than 2 seeds.
    """
    val, test = _by_seed(jobs, whole)
    settings = dict(top=top, k=k, quarter=quarter)
    rows = [{"seed_a": a, "seed_b": b,
             **with_intervals(val[a].to_numpy(float), val[b].to_numpy(float), test[b].to_numpy(float), settings,
                               n_boot, seed, ci), "candidates": len(val)}
            for a in val.columns for b in val.columns if a != b]
    ordered = [f"{m}{s}" for m in metric_names(**settings) for s in ("", "_lo", "_hi")]
    return pd.DataFrame(rows, columns=["seed_a", "seed_b", *ordered, "candidates"])


def noise_ceiling(jobs: pd.DataFrame, whole: str = "whole", *, top: int = 10, k: int = 10, quarter: float = 0.25,
                  n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> dict:
    """The ceiling every proxy metric is read against: each metric of :func:`seed_agreement` averaged over the
    ordered pairs of the whole set's seeds, with a bootstrap interval over candidates (each resample is used
    for every pair, and the mean over pairs is taken per resample).

    One seed against another is noisier than a proxy's mean over seeds against the whole set's mean, so a
    proxy can land a little above it; one far below it has room to improve, one at it has none. Returns a
    dict like :func:`ranking_metrics` (each metric, ``_lo``/``_hi``, ``candidates``) plus ``seeds`` and ``pairs``;
    every metric is NaN with fewer than 2 seeds.
    """
    val_frame, test_frame = _by_seed(jobs, whole)
    seeds, n = [int(s) for s in val_frame.columns], len(val_frame)
    val, test = val_frame.to_numpy(float), test_frame.to_numpy(float)
    pairs = [(a, b) for a in range(len(seeds)) for b in range(len(seeds)) if a != b]
    settings = dict(top=top, k=k, quarter=quarter)
    names = metric_names(**settings)

    def mean_over_pairs(i: np.ndarray | slice) -> dict[str, float]:
        per_pair = [point_metrics(val[i, a], val[i, b], test[i, b], **settings) for a, b in pairs]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-NaN metric (too few candidates): NaN
            return {m: float(np.nanmean([p[m] for p in per_pair])) if per_pair else float("nan") for m in names}

    out: dict = mean_over_pairs(slice(None))
    boots = [mean_over_pairs(i) for i in resamples(n, n_boot, seed)] if pairs and n else []
    for m in names:
        out[f"{m}_lo"], out[f"{m}_hi"] = interval(np.array([b[m] for b in boots], dtype=float), ci)
    return {**out, "candidates": n, "seeds": seeds, "pairs": len(pairs)}


def _aligned_sets(jobs: pd.DataFrame, names: Sequence[str], whole: str) -> tuple[dict[str, np.ndarray], np.ndarray,
                                                                                   np.ndarray, list[str]]:
    """Mean val acc per training set in ``names``, and the whole set's val and test acc, over the candidates
    finished on every one of them (sorted)."""
    w = candidate_means(jobs, whole).dropna(subset=["val_acc", "test_acc"])
    means = {n: candidate_means(jobs, n)["val_acc"].dropna() for n in names}
    common = sorted(set(w.index).intersection(*(set(m.index) for m in means.values())))
    return ({n: m.loc[common].to_numpy(float) for n, m in means.items()}, w.loc[common, "val_acc"].to_numpy(float),
            w.loc[common, "test_acc"].to_numpy(float), common)


def draw_metrics(jobs: pd.DataFrame, names: Sequence[str], whole: str = "whole", *, top: int = 10, k: int = 10,
                 quarter: float = 0.25) -> pd.DataFrame:
    """The point metrics (no intervals) of each training set in ``names`` against ``whole``, all over the same
    candidates (those finished on every one of them): one row per set (index), one column per metric."""
    vals, wv, wt, _ = _aligned_sets(jobs, names, whole)
    rows = {n: point_metrics(v, wv, wt, top=top, k=k, quarter=quarter) for n, v in vals.items()}
    return pd.DataFrame.from_dict(rows, orient="index", columns=metric_names(top, k, quarter))


#: The columns of :func:`random_null`.
NULL_COLUMNS = ["proxy", "metric", "value", "lo", "hi", "percentile", "draws_as_good", "draws", "draw_median",
                "band_lo", "band_hi", "candidates"]


def random_draws(jobs: pd.DataFrame, draws: Sequence[str] | str) -> list[str]:
    """The training sets ``draws`` names: a list as given, or a prefix (``"random-draw-"``) matching names that
    start with it, in the jobs' order. Refuses names without jobs."""
    present = list(dict.fromkeys(jobs["training_set"]))
    names = [t for t in present if t.startswith(draws)] if isinstance(draws, str) else list(draws)
    missing = [d for d in names if d not in present]
    if missing or not names:
        raise ValueError(f"random draws {missing or draws!r} have no finished jobs; training sets with jobs: "
                         f"{present}")
    return names


def place_among(draws: Sequence[float] | np.ndarray, value: float, *, lower_is_better: bool = False,
                band: float = 0.90) -> dict[str, float]:
    """Where ``value`` falls among random draws' values of one metric, NaN draws left out (see
    :func:`random_null` for the meaning of each key): ``percentile``, ``draws_as_good``, ``draws``,
    ``draw_median``, ``band_lo`` and ``band_hi``. The first two are NaN when ``value`` is; all but ``draws``
    are NaN without a finite draw."""
    d = np.asarray(draws, dtype=float)
    d = d[np.isfinite(d)]
    out = dict.fromkeys(["percentile", "draws_as_good", "draw_median", "band_lo", "band_hi"], float("nan"))
    out["draws"] = len(d)
    if not len(d):
        return out
    lo, hi = np.percentile(d, [50 * (1 - band), 50 * (1 + band)])
    out.update(draw_median=float(np.median(d)), band_lo=float(lo), band_hi=float(hi))
    if np.isfinite(value):
        pct = stats.percentileofscore(d, value, kind="mean")
        out["percentile"] = float(100 - pct if lower_is_better else pct)
        out["draws_as_good"] = float(np.mean(d <= value if lower_is_better else d >= value))
    return out


def random_null(jobs: pd.DataFrame, draws: Sequence[str] | str, proxies: Sequence[str] | None = None,
                whole: str = "whole", *, top: int = 10, k: int = 10, quarter: float = 0.25, band: float = 0.90,
                n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> pd.DataFrame:
    """Where each proxy falls among random proxies of its size, metric by metric.

    ``draws`` are the training sets that are independent random draws of one size (a list, or a name
    prefix; see :func:`random_draws`); ``proxies`` default to every other training set but ``whole``. All
    metrics are computed over the candidates finished on every one of these sets. One row per proxy and
    metric (:data:`NULL_COLUMNS`):

    - ``value``, ``lo``, ``hi``: the proxy's metric and its bootstrap interval over candidates;
    - ``percentile``: the share of draws the proxy beats, in percent, ties counting half
      (``scipy.stats.percentileofscore(..., kind="mean")``; for regret, where lower is better, the share it
      is below);
    - ``draws_as_good``: the fraction of draws at or above it (at or below it for regret), that is, as good
      as the proxy or better: the one-sided p-value of "the proxy is no better than random";
    - ``draws``, ``draw_median`` and ``band_lo``/``band_hi``: random's spread, the central ``band`` of the
      draws (0.90: the 5th and 95th percentiles, linearly interpolated).

    NaN draws (a metric undefined for too few candidates) are left out of the counts.
    """
    names = random_draws(jobs, draws)
    if proxies is None:
        proxies = [t for t in dict.fromkeys(jobs["training_set"]) if t != whole and t not in names]
    settings = dict(top=top, k=k, quarter=quarter)
    vals, wv, wt, common = _aligned_sets(jobs, [*names, *proxies], whole)
    null = pd.DataFrame.from_dict({d: point_metrics(vals[d], wv, wt, **settings) for d in names}, orient="index")
    rows = []
    for p in proxies:
        m = with_intervals(vals[p], wv, wt, settings, n_boot, seed, ci)
        for metric in metric_names(**settings):
            rows.append({"proxy": p, "metric": metric, "value": m[metric], "lo": m[f"{metric}_lo"],
                         "hi": m[f"{metric}_hi"], "candidates": len(common),
                         **place_among(null[metric], m[metric], lower_is_better=metric in LOWER_IS_BETTER,
                                       band=band)})
    return pd.DataFrame(rows, columns=NULL_COLUMNS)


def ranking_by_epoch(history: pd.DataFrame, training_set: str = "whole", *, quarter: float = 0.25) -> pd.DataFrame:
    """Whether a training set's ranking has settled: from the per-epoch validation accuracy
    (:func:`nasprune.search.load_history`), for every evaluated epoch, how its ranking (mean over seeds)
    agrees with that of the last evaluated epoch, and how its seeds agree with each other.

    Columns: ``epoch``, ``candidates`` (those evaluated at both epochs), ``kendall_vs_last``,
    ``spearman_vs_last``, ``kendall_top25pct_vs_last`` (over the last epoch's top quarter) and
    ``seed_kendall`` (mean Kendall over pairs of seeds at that epoch; NaN with one seed).
    """
    rows = history[(history["training_set"] == training_set) & history["val_acc"].notna()]
    if rows.empty:
        raise ValueError(f"no per-epoch validation accuracy for training set {training_set!r}; train it with "
                         f"TrainConfig.eval_every > 0 (training sets with history: "
                         f"{sorted(set(history['training_set']))})")
    by_epoch = rows.pivot_table(index="candidate", columns="epoch", values="val_acc", aggfunc="mean")
    last = by_epoch.columns.max()
    out = []
    for epoch in by_epoch.columns:
        both = pd.DataFrame({"now": by_epoch[epoch], "last": by_epoch[last]}).dropna()
        now, final = both["now"].to_numpy(float), both["last"].to_numpy(float)
        seeds = rows[rows["epoch"] == epoch].pivot_table(index="candidate", columns="seed", values="val_acc").dropna()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant input: nan
            taus = [stats.kendalltau(seeds[a], seeds[b])[0] for i, a in enumerate(seeds.columns)
                    for b in seeds.columns[i + 1:]]
            m = point_metrics(now, final, final, quarter=quarter)
            out.append({"epoch": int(epoch), "candidates": len(both), "kendall_vs_last": m["kendall_all"],
                        "spearman_vs_last": m["spearman_all"], f"{quarter_name(quarter)}_vs_last":
                        m[quarter_name(quarter)], "seed_kendall": float(np.mean(taus)) if taus else float("nan")})
    return pd.DataFrame(out)
