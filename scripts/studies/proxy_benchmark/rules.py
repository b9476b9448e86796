"""The proxy benchmark's decision rules (``results/proxy-benchmark/PLAN.md``): which method becomes the default at a
size on the development pool, whether a held-out pool confirms it, how often the rule passes a random draw by
chance, and the recommendation both give. Applied to :func:`nasprune.analysis.size_sweep` tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from nasprune.analysis import LOWER_IS_BETTER, complete_sets, draw_metrics, place_among, sets_by_size
from nasprune.proxies.selection import get_method

__all__ = ["CONFIRMATION_COLUMNS", "CONFIRM_MAX_REGRET", "CONFIRM_PERCENTILE", "PLAN_DRAWS", "chance_qualifications",
           "choose_defaults", "choose_network", "confirm", "primary_metrics", "qualifies", "recommend"]

#: PLAN.md's random draws per size; a reading with fewer is provisional.
PLAN_DRAWS = 20
#: The confirmation rule on a held-out pool (PLAN.md): at least this percentile among the draws on both primary
#: metrics (beats 19 of 20 draws) ...
CONFIRM_PERCENTILE = 95.0
#: ... and a regret of at most this many points.
CONFIRM_MAX_REGRET = 0.5
#: The columns of :func:`confirm`, around the two primary metrics' value and percentile (after ``method``).
CONFIRMATION_COLUMNS = ["per_class", "proxy", "method", "regret", "draws", "candidates", "confirmed", "provisional"]
#: How cheap a method's inputs are, for breaking ties between defaults (cheapest first).
_INPUT_COST = {"features": 0, "logits": 1, "el2n": 2, "grand": 2, "forgetting_counts": 2, "S": 3}


def primary_metrics(k: int) -> tuple[str, str]:
    """The two metrics the decision rule reads: Kendall over all candidates and NDCG@k."""
    return "kendall_all", f"ndcg_top{k}"


def qualifies(sweep: pd.DataFrame, proxy: str, k: int, *, min_percentile: float = 80.0,
              max_regret: float | None = None) -> float | None:
    """The decision rule's test of one proxy (``results/proxy-benchmark/PLAN.md``): the mean of its two primary
    percentiles among the draws of its size when both are at least ``min_percentile`` and its regret is at most
    ``max_regret`` points (None: the draws' median regret, the development pool's rule); None when it does not
    qualify (or is not in ``sweep``)."""
    return _qualifies(sweep[sweep["proxy"] == proxy].set_index("metric"), k, min_percentile=min_percentile,
                      max_regret=max_regret)


def _qualifies(rows: pd.DataFrame, k: int, *, min_percentile: float, max_regret: float | None) -> float | None:
    """:func:`qualifies` on one proxy's sweep rows, indexed by metric."""
    primary = primary_metrics(k)
    if not all(m in rows.index for m in (*primary, "regret")):
        return None
    pct = [float(rows.loc[m, "percentile"]) for m in primary]
    regret = rows.loc["regret", "value"]
    if all(p >= min_percentile for p in pct) and regret <= (rows.loc["regret", "draw_median"] if max_regret is None
                                                            else max_regret):
        return float(np.mean(pct))
    return None


def choose_defaults(sweep: pd.DataFrame, k: int, *, min_percentile: float = 80.0,
                    exclude: Sequence[str] = ()) -> pd.DataFrame:
    """The decision rule of ``results/proxy-benchmark/PLAN.md``, size by size, among the proxies not in ``exclude``
    (e.g. those selected with another pruning network, which :func:`choose_network` judges afterwards).

    The default is the qualifier (:func:`qualifies`) with the highest mean primary percentile (ties: the method
    with the cheaper inputs), else ``random``. One row per size: ``per_class``, ``default``, ``method``,
    ``qualified`` (names, comma-separated), ``mean_percentile`` of the default (NaN for random), ``draws``.
    """
    rows = []
    for per_class, group in sweep[~sweep["proxy"].isin(list(exclude))].groupby("per_class", sort=True):
        qualified = []
        for proxy, method in group.groupby("proxy", sort=False)["method"].first().items():
            score = qualifies(group, proxy, k, min_percentile=min_percentile)
            if score is not None:
                cost = max((_INPUT_COST.get(i, 4) for i in get_method(method).inputs), default=0)
                qualified.append((-score, cost, proxy, method))
        best = min(qualified) if qualified else None
        rows.append({"per_class": int(per_class), "default": best[2] if best else "random",
                     "method": best[3] if best else "random",
                     "qualified": ", ".join(q[2] for q in sorted(qualified)),
                     "mean_percentile": -best[0] if best else float("nan"), "draws": int(group["draws"].max())})
    return pd.DataFrame(rows, columns=["per_class", "default", "method", "qualified", "mean_percentile", "draws"])


def chance_qualifications(jobs: pd.DataFrame, whole: str = "whole", *, classes: int, k: int,
                          min_percentile: float = 80.0, max_regret: float | None = None) -> pd.DataFrame:
    """How often the decision rule picks a proxy that is random: each random draw judged by :func:`qualifies`
    against the other draws of its size (leave one out), as the methods are judged against all of them.

    The share of draws that qualify is the rule's chance rate per try; times the tries made (methods x sizes)
    it is the number of qualifications to expect when no method is better than random. One row per size:
    ``per_class``, ``draws``, ``qualified`` (how many draws qualify), ``rate``, ``which`` (their names)."""
    jobs = jobs[jobs["training_set"].isin(complete_sets(jobs, whole))]
    rows = []
    for images, _, draws in sets_by_size(jobs, whole):
        if len(draws) < 2:
            continue
        table = draw_metrics(jobs, draws, whole, k=k)  # each draw's metrics once, over the same candidates
        hits = [d for d in draws if qualifies(_among_the_others(table, d), d, k, min_percentile=min_percentile,
                                              max_regret=max_regret) is not None]
        rows.append({"per_class": int(images) // classes, "draws": len(draws), "qualified": len(hits),
                     "rate": len(hits) / len(draws), "which": ", ".join(hits)})
    return pd.DataFrame(rows, columns=["per_class", "draws", "qualified", "rate", "which"])


def _among_the_others(table: pd.DataFrame, draw: str) -> pd.DataFrame:
    """One draw placed among the other draws, metric by metric, as :func:`~nasprune.analysis.random_null` places a
    method (no bootstrap: :func:`qualifies` reads point values and percentiles). ``table`` is
    :func:`~nasprune.analysis.draw_metrics` of all the draws of one size."""
    return pd.DataFrame([{"proxy": draw, "metric": m, "value": table.loc[draw, m],
                          **place_among(table[m].drop(draw), table.loc[draw, m], lower_is_better=m in LOWER_IS_BETTER)}
                         for m in table.columns])


def confirm(sweep: pd.DataFrame, k: int, proxies: Sequence[str], *, min_percentile: float = CONFIRM_PERCENTILE,
            max_regret: float = CONFIRM_MAX_REGRET, ground_truth_complete: bool = True) -> pd.DataFrame:
    """PLAN.md's confirmation of the development pool's defaults (``proxies``) on one held-out pool: each at
    least ``min_percentile`` among the draws of its size on both primary metrics, and its regret at most
    ``max_regret`` points (:func:`qualifies`). One row per proxy in ``sweep`` (:data:`CONFIRMATION_COLUMNS`
    with the two primary metrics' value and percentile): ``provisional`` while it has fewer than
    :data:`PLAN_DRAWS` draws or the ground truth lacks a seed (not ``ground_truth_complete``), since the
    verdict may still change."""
    primary = primary_metrics(k)
    rows = []
    for proxy in proxies:
        found = sweep[sweep["proxy"] == proxy].set_index("metric")
        if not all(m in found.index for m in (*primary, "regret")):
            continue
        first = found.iloc[0]
        row = {"per_class": int(first["per_class"]), "proxy": proxy, "method": first["method"]}
        for m in primary:
            row[m], row[f"{m}_percentile"] = float(found.loc[m, "value"]), float(found.loc[m, "percentile"])
        row["regret"], row["draws"] = float(found.loc["regret", "value"]), int(found["draws"].max())
        row["candidates"] = int(found["candidates"].max())
        row["confirmed"] = _qualifies(found, k, min_percentile=min_percentile, max_regret=max_regret) is not None
        row["provisional"] = row["draws"] < PLAN_DRAWS or not ground_truth_complete
        rows.append(row)
    columns = [*CONFIRMATION_COLUMNS[:3], *(c for m in primary for c in (m, f"{m}_percentile")),
               *CONFIRMATION_COLUMNS[3:]]
    return pd.DataFrame(rows, columns=columns).sort_values("per_class", kind="stable", ignore_index=True)


def recommend(defaults: pd.DataFrame, confirmations: Mapping[str, pd.DataFrame | None]) -> pd.DataFrame:
    """The project README's recommendation per size (PLAN.md, 'Confirmation'): the development pool's default
    (``defaults``, :func:`choose_defaults`) only where every held-out pool (``confirmations``: a name for each,
    to its :func:`confirm` table, None where it has not run) confirms it with a final verdict; random elsewhere.

    One row per size: ``per_class``, ``candidate`` (the development pool's default), ``use`` (its method or
    ``random``), ``pending`` (True while a verdict that could still make it the default is missing or
    provisional) and one column per pool: ``confirmed``, ``not confirmed``, the same with `` so far`` when
    only the ground truth lacks a seed, ``under way`` (fewer than :data:`PLAN_DRAWS` draws), ``not finished``
    (no row yet), ``not run``, or ``''`` where the default is random."""
    if not confirmations:
        raise ValueError("recommend: no held-out pool given; PLAN.md's rule needs at least one")
    rows = []
    for d in defaults.sort_values("per_class").itertuples():
        verdicts = {pool: "" if d.default == "random" else _verdict(table, d.default)
                    for pool, table in confirmations.items()}
        confirmed = d.default != "random" and all(v == "confirmed" for v in verdicts.values())
        rows.append({"per_class": int(d.per_class), "candidate": d.default, "use": d.method if confirmed else "random",
                     "pending": d.default != "random" and not confirmed and "not confirmed" not in verdicts.values(),
                     **verdicts})
    return pd.DataFrame(rows, columns=["per_class", "candidate", "use", "pending", *confirmations])


def _verdict(table: pd.DataFrame | None, proxy: str) -> str:
    """One held-out pool's verdict on ``proxy`` from its :func:`confirm` table (None: the pool has not run)."""
    found = None if table is None else table[table["proxy"] == proxy]
    if found is None:
        return "not run"
    if not len(found):
        return "not finished"
    r = found.iloc[0]
    if r["draws"] < PLAN_DRAWS:  # a percentile among a few draws says little yet
        return "under way"
    return ("confirmed" if r["confirmed"] else "not confirmed") + (" so far" if r["provisional"] else "")


def choose_network(sweep: pd.DataFrame, k: int, candidates: Sequence[str], *,
                   min_percentile: float = 80.0) -> str | None:
    """PLAN.md's rule for the pruning network: of ``candidates`` (the chosen method's proxies of one size from
    each network, cheapest network first, the default network's last), the first that still qualifies; None
    when none does."""
    return next((c for c in candidates if qualifies(sweep, c, k, min_percentile=min_percentile) is not None), None)

