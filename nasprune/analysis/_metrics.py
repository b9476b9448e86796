"""How well a proxy training set ranks candidates, compared with the whole training set.

Pure functions of the jobs table (one row per training set, candidate and seed, as
:func:`nasprune.search.load_jobs` returns or ``jobs.csv`` holds); no torch. Each candidate's accuracies
are first averaged over its seeds. With P the proxy's validation accuracy, Wv and Wt the whole set's
validation and test accuracy, over the candidates finished on both sets:

- ``best_arch_test_acc``: Wt of the candidate ranked first by P (the paper's "performance"). Ties in P
  go to the candidate id that sorts first.
- ``spearman_top10``: Spearman between P and Wv over the 10 candidates ranked highest by P (the
  paper's "correlation"; rank correlation is meaningful mainly among the strong candidates). NaN
  ("n/a") with fewer than 10 candidates: it would be Spearman over all of them under another name.
- ``spearman_all``, ``kendall_all``: Spearman and Kendall tau-b between P and Wv over all candidates.
- ``top10_overlap``: the share of P's top 10 that is also in Wv's top 10. NaN ("n/a") unless there
  are more than 10 candidates: with 10 or fewer both top 10s hold every candidate and it is always 1.
- ``regret``: max over candidates of Wt, minus Wt of P's choice (accuracy points; 0 is perfect). The
  whole set's own row is usually above 0: it is the cost of choosing by validation accuracy.
- ``kendall_top25pct``: Kendall tau-b between P and Wv over the whole set's top quarter (the ceil(n/4)
  candidates highest by Wv; ``quarter`` sets the share). Chosen by the ground truth, not by the proxy as
  ``spearman_top10`` is, so a proxy cannot improve it by leaving good candidates out of its own top.
  NaN with fewer than 3 candidates in the quarter.
- ``ndcg_top10``: NDCG@k of P's ranking. A candidate's gain is its Wv minus the Wv of the whole set's
  (k+1)-th best candidate, floored at 0, so only the whole set's top k carry gain, in accuracy points:
  swapping two near-equal candidates costs little, a candidate from outside the whole set's top k in
  P's top k costs its whole slot. Position i (1-based) is discounted by 1/log2(i + 1); the sum over P's
  top k is divided by that of the ideal order (by Wv). 1 is perfect; NaN unless there are more than k
  candidates.

Each comes with a percentile bootstrap interval (``*_lo``, ``*_hi``) from resampling candidates with
replacement, seeded. :func:`paired_difference` compares two proxies on the same resamples.


What to read them against (the noise ceiling, the random null, a settled ground truth) is in ``_null.py``.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from nasprune.config import check_random_state

__all__ = ["LOWER_IS_BETTER", "METRICS", "TABLE1_COLUMNS", "candidate_means", "metric_names", "ndcg",
           "paired_difference", "point_metrics", "ranking_metrics", "table1", "time_and_storage"]

METRICS = ("best_arch_test_acc", "spearman_top10", "spearman_all", "kendall_all", "top10_overlap", "regret",
           "kendall_top25pct", "ndcg_top10")
#: Metrics where a lower value is better; every other metric is better higher.
LOWER_IS_BETTER = frozenset({"regret"})
TABLE1_COLUMNS = ["training_set", "images", "best_arch_test_acc", "spearman_top10", "spearman_all",
                  "kendall_all", "regret", "search_minutes", "proxy_minutes"]


def candidate_means(jobs: pd.DataFrame, training_set: str) -> pd.DataFrame:
    """Mean val_acc and test_acc over seeds per candidate (index: candidate, sorted), with ``seeds``."""
    rows = jobs[jobs["training_set"] == training_set]
    g = rows.groupby("candidate", sort=True)
    return pd.DataFrame({"val_acc": g["val_acc"].mean(), "test_acc": g["test_acc"].mean(), "seeds": g.size()})


def _aligned(jobs: pd.DataFrame, proxy: str, whole: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    p, w = candidate_means(jobs, proxy), candidate_means(jobs, whole)
    both = p.add_suffix("_p").join(w.add_suffix("_w"), how="inner")
    both = both.dropna(subset=["val_acc_p", "val_acc_w", "test_acc_w"])
    return (both["val_acc_p"].to_numpy(float), both["val_acc_w"].to_numpy(float), both["test_acc_w"].to_numpy(float),
            list(both.index))


def point_metrics(proxy_val: np.ndarray, whole_val: np.ndarray, whole_test: np.ndarray, *, top: int = 10,
                  k: int = 10, quarter: float = 0.25) -> dict[str, float]:
    """The metrics for aligned per-candidate arrays (position i is one candidate; earlier positions win
    ties, so pass candidates in a fixed order). See the module docstring for the definitions."""
    n = len(proxy_val)
    if not 0 < quarter <= 1:
        raise ValueError(f"quarter must be in (0, 1], got {quarter}; 0.25 is the whole set's top quarter")
    if n == 0:
        return {m: float("nan") for m in metric_names(top, k, quarter)}
    order = np.argsort(-proxy_val, kind="stable")  # proxy ranking, ties by position
    whole_order = np.argsort(-whole_val, kind="stable")
    chosen = order[0]
    head = order[:top]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: scipy warns and returns nan, which we keep
        sp_top = stats.spearmanr(proxy_val[head], whole_val[head])[0] if n >= max(top, 2) else float("nan")
        sp_all = stats.spearmanr(proxy_val, whole_val)[0] if n >= 2 else float("nan")
        kt_all = stats.kendalltau(proxy_val, whole_val)[0] if n >= 2 else float("nan")
        best = whole_order[:math.ceil(quarter * n)]  # the whole set's top quarter
        kt_top = stats.kendalltau(proxy_val[best], whole_val[best])[0] if len(best) >= 3 else float("nan")
    return {
        "best_arch_test_acc": float(whole_test[chosen]),
        f"spearman_top{top}": float(sp_top),
        "spearman_all": float(sp_all),
        "kendall_all": float(kt_all),
        f"top{k}_overlap": len(set(order[:k]) & set(whole_order[:k])) / k if n > k else float("nan"),
        "regret": float(whole_test.max() - whole_test[chosen]),
        quarter_name(quarter): float(kt_top),
        f"ndcg_top{k}": ndcg(proxy_val, whole_val, k),
    }


def ndcg(proxy_val: np.ndarray, whole_val: np.ndarray, k: int = 10) -> float:
    """NDCG@k of the proxy's ranking with the whole set's accuracy above its (k+1)-th best as the gain (see
    the module docstring); NaN unless there are more than k candidates, or when the whole set's top k + 1
    are all equal (no gain to rank)."""
    n = len(whole_val)
    if n <= k:
        return float("nan")
    ranked = np.sort(whole_val)[::-1]
    gain = np.clip(whole_val - ranked[k], 0, None)
    discount = 1 / np.log2(np.arange(2, k + 2))
    ideal = float((ranked[:k] - ranked[k]) @ discount)
    if ideal <= 0:
        return float("nan")
    return float(gain[np.argsort(-proxy_val, kind="stable")[:k]] @ discount) / ideal


def quarter_name(quarter: float) -> str:
    return f"kendall_top{round(100 * quarter)}pct"


def metric_names(top: int = 10, k: int = 10, quarter: float = 0.25) -> list[str]:
    """The metric names :func:`point_metrics` returns for these settings, in its order (:data:`METRICS` at
    the defaults)."""
    return ["best_arch_test_acc", f"spearman_top{top}", "spearman_all", "kendall_all", f"top{k}_overlap", "regret",
            quarter_name(quarter), f"ndcg_top{k}"]


def resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) candidate positions drawn with replacement, each row sorted so ties keep their order."""
    return np.sort(check_random_state(seed).integers(0, n, size=(n_boot, n)), axis=1)


def interval(values: np.ndarray, ci: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [50 * (1 - ci), 50 * (1 + ci)])
    return float(lo), float(hi)


def ranking_metrics(jobs: pd.DataFrame, proxy: str, whole: str = "whole", *, top: int = 10, k: int = 10,
            quarter: float = 0.25, n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> dict:
    """The metrics of training set ``proxy`` against ``whole``, with bootstrap intervals.

    Returns a dict with each metric, ``<metric>_lo``/``<metric>_hi``, ``candidates`` (how many were
    compared) and ``chosen`` (the candidate ranked first by the proxy).
    """
    pv, wv, wt, names = _aligned(jobs, proxy, whole)
    out: dict = with_intervals(pv, wv, wt, dict(top=top, k=k, quarter=quarter), n_boot, seed, ci)
    out["candidates"] = len(names)
    out["chosen"] = names[int(np.argsort(-pv, kind="stable")[0])] if len(names) else None
    return out


def with_intervals(pv: np.ndarray, wv: np.ndarray, wt: np.ndarray, settings: dict, n_boot: int, seed: int,
                    ci: float) -> dict:
    """:func:`point_metrics` of aligned arrays, each with its ``_lo``/``_hi`` bootstrap interval."""
    out: dict = dict(point_metrics(pv, wv, wt, **settings))
    drawn = resamples(len(pv), n_boot, seed) if len(pv) else []
    boots = [point_metrics(pv[i], wv[i], wt[i], **settings) for i in drawn]
    for m in metric_names(**settings):
        out[f"{m}_lo"], out[f"{m}_hi"] = interval(np.array([b[m] for b in boots], dtype=float), ci)
    return out


def paired_difference(jobs: pd.DataFrame, proxy_a: str, proxy_b: str, metric: str = "spearman_top10",
                      whole: str = "whole", *, top: int = 10, k: int = 10, quarter: float = 0.25,
                      n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> dict:
    """``metric`` of proxy A minus that of proxy B, with a bootstrap interval from resampling the same
    candidates for both (only candidates finished on A, B and the whole set are used).

    Returns ``{"estimate", "lo", "hi", "candidates"}``.
    """
    means = {name: candidate_means(jobs, name) for name in (proxy_a, proxy_b, whole)}
    needed = {proxy_a: ["val_acc"], proxy_b: ["val_acc"], whole: ["val_acc", "test_acc"]}  # proxies need no test
    common = sorted(set.intersection(*(set(means[n].dropna(subset=needed[n]).index) for n in means)))
    a, b = (means[n].loc[common, "val_acc"].to_numpy(float) for n in (proxy_a, proxy_b))
    wv, wt = (means[whole].loc[common, c].to_numpy(float) for c in ("val_acc", "test_acc"))

    def diff(i: np.ndarray | slice) -> float:
        ma = point_metrics(a[i], wv[i], wt[i], top=top, k=k, quarter=quarter)[metric]
        return ma - point_metrics(b[i], wv[i], wt[i], top=top, k=k, quarter=quarter)[metric]

    if not common:
        return {"estimate": float("nan"), "lo": float("nan"), "hi": float("nan"), "candidates": 0}
    boots = np.array([diff(i) for i in resamples(len(common), n_boot, seed)], dtype=float)
    lo, hi = interval(boots, ci)
    return {"estimate": diff(slice(None)), "lo": lo, "hi": hi, "candidates": len(common)}


def time_and_storage(jobs: pd.DataFrame) -> pd.DataFrame:
    """Time and storage per training set (index), from the jobs table.

    ``search_minutes``: sum of the jobs' training seconds (``seconds``, as ``train`` measures them);
    ``job_minutes``: sum of whole-job seconds (``wall_seconds``: model building, training, evaluation);
    ``wall_minutes``: from the first job's start to the last job's end (includes pauses between resumed
    runs); ``images``/``bytes``/``proxy_minutes``: as recorded with the jobs. Missing columns give NaN.
    """
    rows = {}
    for ts, g in jobs.groupby("training_set", sort=False):
        row = {"search_minutes": g["seconds"].sum() / 60,
               "job_minutes": g["wall_seconds"].sum() / 60 if "wall_seconds" in g else np.nan}
        if {"started", "completed"} <= set(g.columns) and g["started"].notna().any():
            span = pd.to_datetime(g["completed"]).max() - pd.to_datetime(g["started"]).min()
            row["wall_minutes"] = span.total_seconds() / 60
        else:
            row["wall_minutes"] = np.nan
        for col in ("images", "bytes", "proxy_minutes"):
            row[col] = g[col].dropna().iloc[0] if col in g and g[col].notna().any() else np.nan
        rows[ts] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def table1(jobs: pd.DataFrame, whole: str = "whole", proxy_info: dict[str, dict] | None = None, *,
           order: Sequence[str] | None = None, top: int = 10, k: int = 10, quarter: float = 0.25,
           n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> pd.DataFrame:
    """The paper's Table 1 with extra metrics: one row per training set, the whole set last.

    Columns: :data:`TABLE1_COLUMNS`, then ``bytes``, ``top10_overlap``, ``kendall_top25pct``, ``ndcg_top10``,
    ``job_minutes``, ``wall_minutes``, ``candidates``, ``seeds``, ``chosen``, and the ``_lo``/``_hi``
    interval of each metric (in :func:`metric_names` order).
    ``proxy_info`` (training set -> {"images", "bytes", "proxy_minutes"}) overrides what the jobs
    record; ``proxy_minutes`` of the whole set is 0. The whole set's own row compares it with itself.
    """
    if whole not in set(jobs["training_set"]):
        raise ValueError(f"no finished jobs on the whole training set {whole!r}; training sets with jobs: "
                         f"{sorted(set(jobs['training_set']))}")
    names = list(order) if order is not None else list(dict.fromkeys(jobs["training_set"]))
    names = [n for n in names if n != whole and n in set(jobs["training_set"])] + [whole]
    cost = time_and_storage(jobs)
    rows = []
    for ts in names:
        m = ranking_metrics(jobs, ts, whole, top=top, k=k, quarter=quarter, n_boot=n_boot, seed=seed, ci=ci)
        info = {c: cost.loc[ts, c] for c in cost.columns} | dict((proxy_info or {}).get(ts, {}))
        if ts == whole:
            info["proxy_minutes"] = 0.0
        seeds = jobs.loc[jobs["training_set"] == ts, "seed"].nunique()
        rows.append({"training_set": ts, **info, **m, "seeds": seeds})
    df = pd.DataFrame(rows)
    all_metrics = metric_names(top, k, quarter)
    extras = ["bytes", f"top{k}_overlap", quarter_name(quarter), f"ndcg_top{k}", "job_minutes", "wall_minutes",
              "candidates", "seeds", "chosen"]
    head = [c if c != "spearman_top10" else f"spearman_top{top}" for c in TABLE1_COLUMNS]
    cis = [f"{m}_{s}" for m in all_metrics for s in ("lo", "hi")]
    return df[head + extras + cis].reset_index(drop=True)


def top_ks(table: pd.DataFrame) -> tuple[int, int]:
    """The ``top`` of ``spearman_top<top>`` and the ``k`` of ``top<k>_overlap`` in a Table-1 frame."""
    top = next(int(m[1]) for c in table.columns if (m := re.fullmatch(r"spearman_top(\d+)", c)))
    k = next(int(m[1]) for c in table.columns if (m := re.fullmatch(r"top(\d+)_overlap", c)))
    return top, k
