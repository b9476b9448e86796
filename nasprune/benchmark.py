"""The proxy benchmark: every proxy against the random draws of its size, read against the whole set's noise
ceiling, the rule that picks a default method per size on the development pool, the stricter one that
confirms it on held-out pools (``results/proxy-benchmark/PLAN.md``) and the recommendation both give
(:func:`recommend`, the project README's table via ``scripts/recommendation.py``).

Pure functions of the jobs table (:func:`nasprune.jobs.load_jobs`), like :mod:`nasprune.metrics`, whose
:func:`~nasprune.metrics.random_null` and :func:`~nasprune.metrics.noise_ceiling` they apply size by size. A
training set's size is its ``images`` and its method the jobs' ``method``; the random draws of a size are
its training sets whose method is ``random``, except those that hold every image of the whole set: they are the
whole set trained another way (:func:`whole_variants`), not draws. Only training sets finished on every candidate
the whole set has finished are read, so a partial run gives a smaller but consistent benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from nasprune.metrics import (LOWER_IS_BETTER, NULL_COLUMNS, candidate_means, draw_metrics, place_among, random_null,
                              ranking_by_epoch)
from nasprune.selection import get_method

__all__ = ["CONFIRMATION_COLUMNS", "CONFIRM_MAX_REGRET", "CONFIRM_PERCENTILE", "PLAN_DRAWS", "SWEEP_COLUMNS",
           "chance_qualifications", "choose_defaults", "choose_network", "complete_sets", "confirm", "costs",
           "paired_draws", "paper_scale", "primary_metrics", "qualifies", "random_spread", "recommend", "settling",
           "size_sweep", "top_quartile_k", "whole_variant_sweep", "whole_variants"]

#: The columns of :func:`size_sweep`: the size, the proxy's method, then :data:`nasprune.metrics.NULL_COLUMNS`.
SWEEP_COLUMNS = ["per_class", "images", "method", *NULL_COLUMNS]
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


def top_quartile_k(candidates: int) -> int:
    """k of the top-quartile NDCG: ceil(n / 4), at least 1 (4 for 16 candidates, 9 for 36)."""
    return max(1, math.ceil(candidates / 4))


def primary_metrics(k: int) -> tuple[str, str]:
    """The two metrics the decision rule reads: Kendall over all candidates and NDCG@k."""
    return "kendall_all", f"ndcg_top{k}"


def complete_sets(jobs: pd.DataFrame, whole: str = "whole") -> list[str]:
    """Training sets (``whole`` first) finished on every candidate the whole set has finished on."""
    done = set(candidate_means(jobs, whole)["val_acc"].dropna().index)
    names = [t for t in dict.fromkeys(jobs["training_set"]) if t != whole]
    return [whole] + [t for t in names if done and done <= set(candidate_means(jobs, t)["val_acc"].dropna().index)]


def whole_variants(jobs: pd.DataFrame, whole: str = "whole") -> list[str]:
    """Training sets other than ``whole`` that hold as many images as it does: the whole set trained another way
    (one epoch, another seed), whatever method wrote their proxy file. A random "draw" of every image is no draw,
    so the size-by-size functions leave these out and :func:`whole_variant_sweep` reads them."""
    images = jobs.groupby("training_set", sort=False)["images"].first()
    if whole not in images.index:
        return []
    return [t for t in images.index if t != whole and images[t] == images[whole]]


def _sets_by_size(jobs: pd.DataFrame, whole: str):
    """(images, each training set's method, the random draws) for every size with at least one draw, ascending."""
    info = jobs[~jobs["training_set"].isin([whole, *whole_variants(jobs, whole)])]
    info = info.groupby("training_set", sort=False)[["method", "images"]].first()
    for images, group in info.groupby("images", sort=True):
        draws = list(group.index[group["method"] == "random"])
        if draws:
            yield images, group["method"], draws


def size_sweep(jobs: pd.DataFrame, whole: str = "whole", *, classes: int, k: int | None = None, top: int = 10,
               n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every complete non-random proxy against the complete random draws of its size (:data:`SWEEP_COLUMNS`,
    one row per proxy and metric), sizes ascending. ``k`` of the NDCG defaults to :func:`top_quartile_k` of the
    whole set's finished candidates. Sizes with no finished draw, or no other proxy, are left out."""
    return _against_draws(jobs, whole, lambda complete, methods: list(methods.index[methods != "random"]),
                          classes=classes, k=k, top=top, n_boot=n_boot, seed=seed)


def whole_variant_sweep(jobs: pd.DataFrame, whole: str = "whole", *, classes: int, k: int | None = None,
                        top: int = 10, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Each complete :func:`whole_variants` set placed among the complete random draws of every size, as
    :func:`size_sweep` places a method among the draws of its own size (``per_class`` and ``images`` are the
    draws' size, ``method`` is "whole"). Empty when there is no such set."""
    placed = _against_draws(jobs, whole, lambda complete, methods: whole_variants(complete, whole), classes=classes,
                            k=k, top=top, n_boot=n_boot, seed=seed)
    return placed.assign(method="whole")


def _against_draws(jobs: pd.DataFrame, whole: str, pick, *, classes: int, k: int | None, top: int, n_boot: int,
                   seed: int) -> pd.DataFrame:
    """:func:`~nasprune.metrics.random_null` of the sets ``pick(complete, methods)`` names at each size against
    that size's draws, over complete sets only (``complete``: their jobs; ``methods``: the size's training sets
    and their methods)."""
    jobs = jobs[jobs["training_set"].isin(complete_sets(jobs, whole))]
    k = k or top_quartile_k(len(candidate_means(jobs, whole)["val_acc"].dropna()))
    frames = []
    for images, methods, draws in _sets_by_size(jobs, whole):
        proxies = pick(jobs, methods)
        if not proxies:  # random alone at this size: see random_spread
            continue
        null = random_null(jobs, draws, proxies, whole, top=top, k=k, n_boot=n_boot, seed=seed)
        null.insert(0, "method", null["proxy"].map(methods))
        null.insert(0, "images", int(images))
        null.insert(0, "per_class", int(images) // classes)
        frames.append(null)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SWEEP_COLUMNS)


def random_spread(jobs: pd.DataFrame, whole: str = "whole", *, classes: int, k: int, top: int = 10,
                  band: float = 0.90) -> pd.DataFrame:
    """Random as a distribution at every size, whether or not another proxy of that size was run: per size and
    metric the number of finished draws, their median and their central ``band`` (0.90: the 5th and 95th
    percentiles, as :func:`nasprune.metrics.random_null` draws it). Columns ``per_class``, ``metric``,
    ``draws``, ``median``, ``band_lo``, ``band_hi``."""
    jobs = jobs[jobs["training_set"].isin(complete_sets(jobs, whole))]
    rows = []
    for images, _, draws in _sets_by_size(jobs, whole):
        for metric, values in draw_metrics(jobs, draws, whole, top=top, k=k).items():
            spread = place_among(values, float("nan"), band=band)
            if spread["draws"]:
                rows.append({"per_class": int(images) // classes, "metric": metric, "draws": spread["draws"],
                             "median": spread["draw_median"], "band_lo": spread["band_lo"],
                             "band_hi": spread["band_hi"]})
    return pd.DataFrame(rows, columns=["per_class", "metric", "draws", "median", "band_lo", "band_hi"])


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
    for images, _, draws in _sets_by_size(jobs, whole):
        if len(draws) < 2:
            continue
        table = draw_metrics(jobs, draws, whole, k=k)  # each draw's metrics once, over the same candidates
        hits = [d for d in draws if qualifies(_among_the_others(table, d), d, k, min_percentile=min_percentile,
                                              max_regret=max_regret) is not None]
        rows.append({"per_class": int(images) // classes, "draws": len(draws), "qualified": len(hits),
                     "rate": len(hits) / len(draws), "which": ", ".join(hits)})
    return pd.DataFrame(rows, columns=["per_class", "draws", "qualified", "rate", "which"])


def _among_the_others(table: pd.DataFrame, draw: str) -> pd.DataFrame:
    """One draw placed among the other draws, metric by metric, as :func:`~nasprune.metrics.random_null` places a
    method (no bootstrap: :func:`qualifies` reads point values and percentiles). ``table`` is
    :func:`~nasprune.metrics.draw_metrics` of all the draws of one size."""
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


def settling(history: pd.DataFrame, whole: str = "whole", epochs=(1, 3, 5)) -> pd.DataFrame:
    """:func:`nasprune.metrics.ranking_by_epoch` of the whole set at ``epochs`` and its last epoch."""
    table = ranking_by_epoch(history, whole)
    last = table["epoch"].max()
    return table[table["epoch"].isin([*epochs, last])].reset_index(drop=True)


def paired_draws(jobs: pd.DataFrame, pairs: Sequence[tuple[str, str]], whole: str = "whole", *, k: int,
                 top: int = 10) -> pd.DataFrame:
    """Training sets that hold the same images but train differently (``(before, after)`` pairs: one random
    draw at two step budgets, say), each metric of both against ``whole`` over the candidates finished on all
    of them: columns ``before``, ``after``, then ``<metric>_before``, ``<metric>_after`` and ``<metric>_change``
    (after minus before) for each metric of :func:`nasprune.metrics.draw_metrics`. A pair is a paired sample:
    the images' luck cancels, and only the training differs."""
    values = draw_metrics(jobs, [n for pair in pairs for n in pair], whole, top=top, k=k)
    rows = []
    for before, after in pairs:
        row = {"before": before, "after": after}
        for metric in values.columns:
            b, a = float(values.loc[before, metric]), float(values.loc[after, metric])
            row.update({f"{metric}_before": b, f"{metric}_after": a, f"{metric}_change": a - b})
        rows.append(row)
    return pd.DataFrame(rows)


def costs(jobs: pd.DataFrame, whole: str = "whole") -> pd.DataFrame:
    """Per complete training set (:func:`complete_sets`: a half-finished set would look cheap): its search's
    seconds per training seed (the sum of its jobs' ``seconds`` over candidates, averaged over seeds), building
    its proxy (``proxy_minutes``, in seconds) and the total as a fraction of the whole set's search at one seed.
    Index: training set; columns ``search_seconds``, ``proxy_seconds``, ``fraction_of_whole``; empty before
    the whole set has a finished job."""
    if not len(jobs) or not (jobs["training_set"] == whole).any():
        return pd.DataFrame(columns=["search_seconds", "proxy_seconds", "fraction_of_whole"])
    jobs = jobs[jobs["training_set"].isin(complete_sets(jobs, whole))]
    per_seed = jobs.groupby(["training_set", "seed"])["seconds"].sum().groupby("training_set").mean()
    proxy = jobs.groupby("training_set")["proxy_minutes"].first().fillna(0.0) * 60
    out = pd.DataFrame({"search_seconds": per_seed, "proxy_seconds": proxy.reindex(per_seed.index).fillna(0.0)})
    out["fraction_of_whole"] = (out["search_seconds"] + out["proxy_seconds"]) / out.loc[whole, "search_seconds"]
    return out


def paper_scale(jobs: pd.DataFrame, whole: str = "whole", *, candidates: int = 720, epochs: int = 100,
                train_images: int = 50_000) -> pd.DataFrame:
    """Each complete proxy's search, building included, as a fraction of the whole set's at the paper's scale
    (its Table 1: ``candidates`` nets, each trained ``epochs`` on the proxy and on ``train_images``), from this
    pool's jobs rather than its budgets: a set's cost per image seen (summed ``seconds`` over summed images x
    epochs, per seed; a small set runs less efficiently per image) against the whole set's, and the proxy's
    building (``proxy_minutes``: the scoring run and selection) amortised over ``candidates`` instead of this
    pool's few, in units of the whole set's mean seconds per candidate-epoch here. Assumes both sides scale alike
    to the paper's data and nets, so only the ratio carries over. Index: training set; columns ``images``,
    ``per_image_ratio``, ``search_fraction``, ``building_fraction``, ``fraction_of_whole``."""
    c = costs(jobs, whole)  # the complete sets' search and building seconds, per seed
    if len(c) < 2:
        return pd.DataFrame(columns=["images", "per_image_ratio", "search_fraction", "building_fraction",
                                     "fraction_of_whole"])
    first = jobs[jobs["training_set"].isin(c.index)].groupby("training_set")[["images", "epochs"]].first()
    per_image = c["search_seconds"] / (first["images"] * first["epochs"])  # the same candidates in every set
    candidate_epochs = len(candidate_means(jobs, whole)) * first.loc[whole, "epochs"]
    out = pd.DataFrame({"images": first["images"].astype(int), "per_image_ratio": per_image / per_image[whole]})
    out["search_fraction"] = out["per_image_ratio"] * out["images"] / train_images
    epoch_seconds = c.loc[whole, "search_seconds"] / candidate_epochs  # one candidate-epoch of the whole set
    out["building_fraction"] = c["proxy_seconds"] / (candidates * epochs * epoch_seconds)
    out["fraction_of_whole"] = out["search_fraction"] + out["building_fraction"]
    return out.drop(index=whole)
