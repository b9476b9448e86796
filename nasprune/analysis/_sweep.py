"""Random as a distribution, size by size: every proxy against the random draws of its size, read against the
whole set's noise ceiling, and what a search on each training set costs against the whole set's.

Pure functions of the jobs table (:func:`nasprune.search.load_jobs`), like ``_metrics.py``, applying
:func:`~nasprune.analysis.random_null` size by size. A training set's size is its ``images`` and its method the
jobs' ``method``; the random draws of a size are its training sets whose method is ``random``, except those that
hold every image of the whole set: they are the whole set trained another way (:func:`whole_variants`), not
draws. Only training sets finished on every candidate the whole set has finished are read, so a partial run
gives a smaller but consistent reading. The rules a study applies to these tables (which method to recommend)
live with that study, under ``scripts/studies/``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ._metrics import candidate_means
from ._null import NULL_COLUMNS, draw_metrics, noise_ceiling, place_among, random_null, ranking_by_epoch

__all__ = ["SWEEP_COLUMNS", "PoolReading", "complete_sets", "cost_fractions", "paired_draws", "paper_scale",
           "random_spread", "read_pool", "sets_by_size", "settling", "size_sweep", "top_quartile_k",
           "whole_variant_sweep", "whole_variants"]

#: The columns of :func:`size_sweep`: the size, the proxy's method, then :data:`NULL_COLUMNS`.
SWEEP_COLUMNS = ["per_class", "images", "method", *NULL_COLUMNS]


def top_quartile_k(candidates: int) -> int:
    """k of the top-quartile NDCG: ceil(n / 4), at least 1 (4 for 16 candidates, 9 for 36)."""
    return max(1, math.ceil(candidates / 4))


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


def sets_by_size(jobs: pd.DataFrame, whole: str):
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
    """:func:`~nasprune.analysis.random_null` of the sets ``pick(complete, methods)`` names at each size against
    that size's draws, over complete sets only (``complete``: their jobs; ``methods``: the size's training sets
    and their methods)."""
    jobs = jobs[jobs["training_set"].isin(complete_sets(jobs, whole))]
    k = k or top_quartile_k(len(candidate_means(jobs, whole)["val_acc"].dropna()))
    frames = []
    for images, methods, draws in sets_by_size(jobs, whole):
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
    percentiles, as :func:`nasprune.analysis.random_null` draws it). Columns ``per_class``, ``metric``,
    ``draws``, ``median``, ``band_lo``, ``band_hi``."""
    jobs = jobs[jobs["training_set"].isin(complete_sets(jobs, whole))]
    rows = []
    for images, _, draws in sets_by_size(jobs, whole):
        for metric, values in draw_metrics(jobs, draws, whole, top=top, k=k).items():
            spread = place_among(values, float("nan"), band=band)
            if spread["draws"]:
                rows.append({"per_class": int(images) // classes, "metric": metric, "draws": spread["draws"],
                             "median": spread["draw_median"], "band_lo": spread["band_lo"],
                             "band_hi": spread["band_hi"]})
    return pd.DataFrame(rows, columns=["per_class", "metric", "draws", "median", "band_lo", "band_hi"])


def settling(history: pd.DataFrame, whole: str = "whole", epochs=(1, 3, 5)) -> pd.DataFrame:
    """:func:`nasprune.analysis.ranking_by_epoch` of the whole set at ``epochs`` and its last epoch."""
    table = ranking_by_epoch(history, whole)
    last = table["epoch"].max()
    return table[table["epoch"].isin([*epochs, last])].reset_index(drop=True)


def paired_draws(jobs: pd.DataFrame, pairs: Sequence[tuple[str, str]], whole: str = "whole", *, k: int,
                 top: int = 10) -> pd.DataFrame:
    """Training sets that hold the same images but train differently (``(before, after)`` pairs: one random
    draw at two step budgets, say), each metric of both against ``whole`` over the candidates finished on all
    of them: columns ``before``, ``after``, then ``<metric>_before``, ``<metric>_after`` and ``<metric>_change``
    (after minus before) for each metric of :func:`nasprune.analysis.draw_metrics`. A pair is a paired sample:
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


def cost_fractions(jobs: pd.DataFrame, whole: str = "whole") -> pd.DataFrame:
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
    c = cost_fractions(jobs, whole)  # the complete sets' search and building seconds, per seed
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


@dataclass
class PoolReading:
    """A pool's finished jobs read against random, size by size (:func:`read_pool`).

    Attributes:
        jobs: the jobs read (:func:`nasprune.search.load_jobs`).
        whole_done: candidates finished on the whole set; 0 leaves every table below empty.
        k: the NDCG's k, the whole set's top quarter (:func:`top_quartile_k`).
        ceiling: :func:`~nasprune.analysis.noise_ceiling` at that k (empty before a whole-set job has finished).
        sweep: :func:`size_sweep`; variants: :func:`whole_variant_sweep`; spread: :func:`random_spread` (None
            before a whole-set job has finished).
    """

    jobs: pd.DataFrame
    whole_done: int
    k: int
    ceiling: dict
    sweep: pd.DataFrame
    variants: pd.DataFrame
    spread: pd.DataFrame | None


def read_pool(jobs: pd.DataFrame, *, classes: int, candidates: int, whole: str = "whole",
              n_boot: int = 1000) -> PoolReading:
    """Every table a benchmark of proxies against random draws reads, from the finished jobs of a pool of
    ``candidates`` (the experiment's count: it sets k until the whole set has finished some) over ``classes``
    classes. A partial run gives partial, consistent tables (only complete training sets are read)."""
    whole_done = len(candidate_means(jobs, whole)["val_acc"].dropna()) if len(jobs) else 0
    k = top_quartile_k(whole_done or candidates)
    if not whole_done:
        return PoolReading(jobs, 0, k, {}, pd.DataFrame(), pd.DataFrame(), None)
    return PoolReading(jobs, whole_done, k, noise_ceiling(jobs, whole, k=k, n_boot=n_boot),
                       size_sweep(jobs, whole, classes=classes, k=k, n_boot=n_boot),
                       whole_variant_sweep(jobs, whole, classes=classes, k=k, n_boot=n_boot),
                       random_spread(jobs, whole, classes=classes, k=k))
