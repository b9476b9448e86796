"""The plots: an experiment's (each candidate's rank on a proxy against its rank on the whole set; Table 1 as dots
with intervals), a proxy among random draws of its size, every method against random across sizes, and ranking
quality against cost. Each writes one PNG, titled, with its legend below the panels.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ._metrics import candidate_means, top_ks

__all__ = ["NULL_METRICS", "family_lines", "plot_budget", "plot_proxy_vs_whole", "plot_random_null", "plot_size_sweep",
           "plot_table1", "random_band"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike, handles: Mapping[str, object] | None = None, *, columns: int = 4) -> Path:
    """Add the figure's legend below its panels (one entry per ``handles`` label), write it as a PNG and close it."""
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", fontsize=9, frameon=False,
                   ncol=min(len(handles), columns))
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return Path(path)



def plot_proxy_vs_whole(jobs: pd.DataFrame, path: str | os.PathLike, whole: str = "whole", *, k: int = 10,
                        title: str = "") -> Path:
    """One panel per proxy training set: each candidate's rank on the proxy (y) against its rank on the
    whole set (x), by mean validation accuracy (1 = best, ties share the mean rank).

    Ranks, not accuracies: a small proxy gives lower accuracies than the whole set, so on accuracy axes
    the line y = x means nothing, while on ranks it marks perfect agreement and the Spearman correlation
    in the panel's title is the straightness of exactly these points. Candidates in the proxy's top ``k``
    are coloured (only when there are more than ``k``), and the proxy's choice is ringed.
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    from scipy import stats

    proxies = [t for t in dict.fromkeys(jobs["training_set"]) if t != whole]
    w = candidate_means(jobs, whole)["val_acc"]
    cols = max(1, min(3, len(proxies)))
    rows = max(1, int(np.ceil(len(proxies) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(max(4 * cols, 5.5), 4.2 * rows + 1.2), squeeze=False,
                             layout="constrained")
    handles: dict[str, object] = {}
    for ax, ts in zip(axes.flat, proxies):
        p = candidate_means(jobs, ts)["val_acc"]
        both = pd.concat([w.rename("whole"), p.rename("proxy")], axis=1, join="inner").dropna()
        n = len(both)
        x = stats.rankdata(-both["whole"].to_numpy())
        y = stats.rankdata(-both["proxy"].to_numpy())
        handles["same rank (y = x)"] = ax.plot([1, max(n, 1)], [1, max(n, 1)], color="0.5", lw=1, ls="--",
                                               zorder=1)[0]
        in_top = np.argsort(-both["proxy"].to_numpy(), kind="stable")[:k] if n > k else np.array([], int)
        rest = np.setdiff1d(np.arange(n), in_top)
        if len(in_top):
            handles[f"proxy's top {k}"] = ax.scatter(x[in_top], y[in_top], s=22, color="C3", zorder=3)
        label = "other candidates" if len(in_top) else "candidates"
        if len(rest):
            handles[label] = ax.scatter(x[rest], y[rest], s=18, color="C0" if not len(in_top) else "0.55", zorder=2)
        if n:
            first = int(np.argsort(-both["proxy"].to_numpy(), kind="stable")[0])
            handles["proxy's choice"] = ax.scatter(x[first], y[first], s=110, facecolors="none", edgecolors="k",
                                                   linewidths=1.2, zorder=4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant input: nan, shown as n/a
            rho = stats.spearmanr(both["proxy"], both["whole"])[0] if n >= 2 else float("nan")
            tau = stats.kendalltau(both["proxy"], both["whole"])[0] if n >= 2 else float("nan")
        method = jobs.loc[jobs["training_set"] == ts, "method"].dropna() if "method" in jobs else pd.Series()
        head = ts + (f" ({method.iloc[0]})" if len(method) and method.iloc[0] != ts else "")
        ax.set_title(f"{head}\nSpearman {_num(rho)}, Kendall {_num(tau)}", fontsize=10)
        ax.set_xlabel(f"rank on {whole} (1 = best val acc)")
        ax.set_ylabel("rank on proxy")
        ax.set_xlim(0, n + 1)
        ax.set_ylim(0, n + 1)
        ax.set_aspect("equal")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(proxies):]:
        ax.axis("off")
    n_all = len(w)
    fig.suptitle(f"{title + chr(10) if title else ''}proxy vs {whole}: ranks of {n_all} candidates by mean "
                 "val acc over seeds", fontsize=11)
    return _save(fig, path, handles, columns=len(handles) if cols > 1 else 2)


def _num(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{x:.2f}"



def plot_table1(table: pd.DataFrame, path: str | os.PathLike, whole: str = "whole", *, title: str = "") -> Path:
    """A dot plot per metric: each training set's value with its 95% bootstrap interval, on an axis
    zoomed to the data so that small differences show. The whole set's value is a dashed line; its
    rank correlations with itself are 1 by definition and are not drawn."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    top, _ = top_ks(table)
    if table[f"spearman_top{top}"].notna().any():
        spearman, spearman_label = f"spearman_top{top}", f"Spearman (top {top})"
    else:  # too few candidates for the top-k one
        spearman, spearman_label = "spearman_all", f"Spearman (all; top {top} n/a)"
    # (column, label, whether the whole set's own row is drawn, the narrowest x range shown)
    metrics = [("best_arch_test_acc", "best-arch test acc (%)", True, 2.0), (spearman, spearman_label, False, 0.4),
               ("kendall_all", "Kendall (all)", False, 0.4), ("regret", "regret (points, lower is better)", True, 2.0)]
    names = table["training_set"].tolist()
    y = np.arange(len(names))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics) + 1.2, 0.42 * len(names) + 1.6),
                             sharey=True)
    for ax, (m, label, with_whole, span) in zip(axes, metrics):
        v = table[m].to_numpy(float)
        lo, hi = table[f"{m}_lo"].to_numpy(float), table[f"{m}_hi"].to_numpy(float)
        is_whole = table["training_set"].to_numpy() == whole
        shown = np.isfinite(v) & (with_whole | ~is_whole)
        err = np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])
        ax.errorbar(v[shown], y[shown], xerr=np.nan_to_num(err[:, shown]), fmt="o", color="C0", ms=5, capsize=3,
                    lw=1.2)
        if with_whole and is_whole.any() and np.isfinite(v[is_whole][0]):
            ax.axvline(v[is_whole][0], color="0.4", ls="--", lw=1)
            ax.errorbar(v[is_whole], y[is_whole], xerr=np.nan_to_num(err[:, is_whole]), fmt="s", color="k", ms=5,
                        capsize=3, lw=1.2)
        for i in np.flatnonzero(~shown):
            note = "1 (itself)" if is_whole[i] else "n/a"
            ax.annotate(note, (0.02, y[i]), xycoords=("axes fraction", "data"), va="center", fontsize=8,
                        color="0.4")
        ax.set_title(label, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        drawn = np.concatenate([v[shown], lo[shown], hi[shown], v[is_whole] if with_whole else []])
        drawn = drawn[np.isfinite(drawn)]
        if len(drawn):  # zoomed to the data, but never so far that equal values fill the axis with noise
            left, right = drawn.min(), drawn.max()
            pad = max((right - left) * 0.12, (span - (right - left)) / 2, 0)
            ax.set_xlim(left - pad, right + pad)
        ax.xaxis.set_major_locator(MaxNLocator(5, steps=[1, 2, 2.5, 5, 10]))
    axes[0].set_yticks(y, names)
    axes[0].set_ylim(len(names) - 0.5, -0.5)  # first training set on top
    fig.suptitle(f"{title + ': ' if title else ''}Table 1, each training set with its 95% bootstrap interval over "
                 f"candidates (dashed: {whole})", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


#: The metrics :func:`plot_random_null` draws, with their labels and number formats, in panel order.
NULL_METRICS = [("kendall_all", "Kendall (all)", ".3f"), ("kendall_top25pct", "Kendall (whole's top 25%)", ".3f"),
                ("ndcg_top10", "NDCG@10", ".3f"), ("spearman_top10", "Spearman (proxy's top 10)", ".3f"),
                ("spearman_all", "Spearman (all)", ".3f"), ("top10_overlap", "top-10 overlap", ".2f"),
                ("best_arch_test_acc", "best-arch test acc (%)", ".2f"),
                ("regret", "regret (points, lower is better)", ".2f")]


def plot_random_null(draws: pd.DataFrame, null: pd.DataFrame, path: str | os.PathLike, *,
                     ceiling: Mapping | None = None, title: str = "") -> Path:
    """One panel per metric of :data:`NULL_METRICS`: the random draws as a violin with their points (the
    null distribution), random's 5-95% band as dotted lines, each proxy as a marker labelled with its
    percentile among the draws, and the noise ceiling (the whole set against itself across seeds) as a
    dashed line.

    ``draws`` is :func:`nasprune.analysis.draw_metrics` of the draws (one row per draw), ``null``
    :func:`nasprune.analysis.random_null` (one row per proxy and metric) and ``ceiling``
    :func:`nasprune.analysis.noise_ceiling`. Intervals are left to the printed table: a proxy's bootstrap
    interval over candidates is wider than the spread of the draws and would hide it.
    """
    plt = _pyplot()
    metrics = [m for m in NULL_METRICS if m[0] in draws.columns and draws[m[0]].notna().any()]
    undefined = [m[1] for m in NULL_METRICS if m not in metrics]
    proxies = list(dict.fromkeys(null["proxy"]))
    cols = min(4, max(1, len(metrics)))
    rows = max(1, int(np.ceil(len(metrics) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 3.3 * rows + 1.3), squeeze=False, layout="constrained")
    rng = np.random.default_rng(0)  # jitter only
    handles: dict[str, object] = {}
    for ax, (m, label, fmt) in zip(axes.flat, metrics):
        d = draws[m].to_numpy(float)
        d = d[np.isfinite(d)]
        if len(np.unique(d)) >= 5:  # a violin over a few distinct values (regret, best arch) reads as noise
            parts = ax.violinplot(d, positions=[0], widths=0.7, showextrema=False)
            for body in parts["bodies"]:
                body.set(facecolor="0.8", edgecolor="0.6", alpha=0.8)
        handles[f"random draws ({len(d)})"] = ax.scatter(rng.uniform(-0.12, 0.12, len(d)), d, s=12, color="0.35",
                                                         zorder=3)
        rows_m = null[null["metric"] == m]
        if len(rows_m) and np.isfinite(rows_m["band_lo"].iloc[0]):
            handles["random's 5-95% band"] = ax.hlines([rows_m["band_lo"].iloc[0], rows_m["band_hi"].iloc[0]], -0.4,
                                                       0.4, colors="0.2", linestyles=":", lw=1.2, zorder=2)
        shown = list(d)
        notes = []
        for j, p in enumerate(proxies):
            r = rows_m[rows_m["proxy"] == p]
            if not len(r) or not np.isfinite(r["value"].iloc[0]):
                continue
            v = float(r["value"].iloc[0])
            x = 0.6 + 0.2 * j
            handles[p] = ax.scatter([x], [v], marker="D", s=55, color=f"C{3 + j}", edgecolors="k", zorder=4)
            shown.append(v)
            pct, good = r["percentile"].iloc[0], r["draws_as_good"].iloc[0] * r["draws"].iloc[0]
            notes.append(f"{p}: {format(v, fmt)}, {pct:.0f}th pct" if len(proxies) > 1 else
                         f"{format(v, fmt)}: {pct:.0f}th percentile,\n{good:.0f} of {r['draws'].iloc[0]} draws as good")
        c = float(ceiling.get(m, np.nan)) if ceiling is not None else np.nan
        if np.isfinite(c):
            handles["noise ceiling (whole vs itself)"] = ax.axhline(c, color="C0", ls="--", lw=1.3, zorder=1)
            shown.append(c)
        if shown:
            low, high = min(shown), max(shown)
            pad = 0.08 * (high - low) if high > low else 0.02 * max(abs(high), 1e-2)
            ax.set_ylim(low - pad, high + pad)
        ax.set_xlim(-0.5, 0.8 + 0.2 * max(len(proxies) - 1, 0))
        ax.set_xticks([])
        ax.set_title(f"{label}\n" + "\n".join(notes), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    n = int(null["candidates"].iloc[0]) if len(null) else 0
    missing = f"\nnot drawn, undefined for {n} candidates: {', '.join(undefined)}" if undefined else ""
    fig.suptitle(f"{title + chr(10) if title else ''}{', '.join(proxies)} among random proxies of the same size "
                 f"(percentile: the share of draws it beats, ties half){missing}", fontsize=11)
    return _save(fig, path, handles, columns=4)


def _family(proxy: pd.Series) -> pd.Series:
    """A proxy's family: its name without ``-pc<N>`` (``herding-pc10`` .. ``herding-pc200`` are ``herding``)."""
    return proxy.str.replace(r"-pc\d+", "", regex=True)


def family_lines(rows: pd.DataFrame) -> pd.DataFrame:
    """One metric's sweep rows as a table: one row per size the sweep has, one column per proxy family, NaN where a
    family was not run at that size, so that a plotted line shows a gap there rather than a trend nobody measured."""
    return (rows.assign(family=_family(rows["proxy"])).pivot_table(index="per_class", columns="family",
                                                                   values="value", aggfunc="first", dropna=False)
            .reindex(sorted(rows["per_class"].unique())))


def random_band(rows: pd.DataFrame, spread: pd.DataFrame | None, metric: str) -> pd.DataFrame:
    """Random's median and 5-95% band of ``metric`` per size (index ``per_class``; columns ``draw_median``,
    ``band_lo``, ``band_hi``): from ``spread`` (:func:`nasprune.analysis.random_spread`) when given, so that a size
    where random ran alone is drawn too, else from the size-sweep ``rows``, which hold only sizes with a method."""
    columns = ["draw_median", "band_lo", "band_hi"]
    if spread is None:
        return rows.groupby("per_class")[columns].first().sort_index()
    own = spread[spread["metric"] == metric].rename(columns={"median": "draw_median"})
    return own.set_index("per_class")[columns].sort_index()


def plot_size_sweep(sweep: pd.DataFrame, path: str | os.PathLike, metrics: Sequence[tuple[str, str]], *,
                    ceiling: Mapping | None = None, title: str = "", spread: pd.DataFrame | None = None) -> Path:
    """One panel per ``(metric, label)``: each proxy family's value against the proxy size (images per class, log
    axis; see :func:`family_lines`), random's median and 5-95% band over its draws as a grey line and band, and the
    noise ceiling (the whole set against itself across seeds) as a dashed line with its 95% interval dotted.

    ``sweep`` is :func:`nasprune.analysis.size_sweep`; ``ceiling`` :func:`nasprune.analysis.noise_ceiling`;
    ``spread`` :func:`nasprune.analysis.random_spread`, which also covers the sizes where random ran alone (see
    :func:`random_band`).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4.4), squeeze=False, layout="constrained")
    handles: dict[str, object] = {}
    families = list(dict.fromkeys(_family(sweep["proxy"])))
    colours = [f"C{i}" for i in (1, 2, 3, 4, 5, 6, 8, 9)] + ["k"]  # C0 is the ceiling's, C7 (grey) random's
    for ax, (metric, label) in zip(axes.flat, metrics):
        rows = sweep[sweep["metric"] == metric]
        band = random_band(rows, spread, metric)
        if len(band):
            handles["random: 5-95% of draws"] = ax.fill_between(band.index, band["band_lo"], band["band_hi"],
                                                                color="0.85", zorder=1)
            handles["random: median draw"] = ax.errorbar(  # the bar shows the band where it is one size wide
                band.index, band["draw_median"], yerr=[band["draw_median"] - band["band_lo"],
                                                       band["band_hi"] - band["draw_median"]],
                color="0.4", lw=1.5, capsize=8, elinewidth=6, alpha=0.7, zorder=2)[0]
        lines = family_lines(rows)
        for j, family in enumerate(families):
            if family in lines:  # NaN at a size the family did not run: the line breaks there instead of bridging it
                handles[family] = ax.plot(lines.index, lines[family], marker="o", ms=5, lw=1.2,
                                          color=colours[j % len(colours)], ls="-" if j < len(colours) else "--",
                                          zorder=3)[0]
        c = float(ceiling.get(metric, np.nan)) if ceiling is not None else np.nan
        if np.isfinite(c):
            handles["noise ceiling (whole vs itself), 95% CI dotted"] = ax.axhline(c, color="C0", ls="--", lw=1.2,
                                                                                  zorder=2)
            lo, hi = ceiling.get(f"{metric}_lo", np.nan), ceiling.get(f"{metric}_hi", np.nan)
            if np.isfinite(lo) and np.isfinite(hi):
                ax.axhline(lo, color="C0", ls=":", lw=1.0, zorder=1)
                ax.axhline(hi, color="C0", ls=":", lw=1.0, zorder=1)
        ax.set_xscale("log")
        sizes = sorted({*rows["per_class"].unique(), *band.index})
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.set_xlabel("images per class")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title + chr(10) if title else ''}each method against random proxies of its size", fontsize=11)
    return _save(fig, path, handles, columns=5)


# plot_budget's random draws, one per budget: greys and colours outside matplotlib's C0-C9, which the other sets use
_BUDGET_COLOURS = ("0.6", "0.2", "orchid", "goldenrod", "teal", "sienna")


def plot_budget(points: pd.DataFrame, path: str | os.PathLike, metrics: Sequence[tuple[str, str]], *,
                ceiling: Mapping | None = None, title: str = "", x: tuple[str, str] = ("steps", "SGD steps"),
                x_percent: bool = False, x_goal: tuple[float, str] | None = None) -> Path:
    """One panel per ``(metric, label)``: proxies' value against the column ``x[0]`` (axis label ``x[1]``; a
    fraction shown as a percentage with ``x_percent``), SGD steps or cost, say.

    ``points`` has one row per training set: ``label``, ``budget`` (the name of a random draw's budget, NaN for
    any other set), ``pair`` (a random draw's index, NaN for any other set), the ``x`` column and one column per
    metric. Draws are dots coloured by budget, their median per budget a bar of the same colour; a thin grey line
    joins a draw at the first budget to the same draw at each other budget (the paired comparisons). Other sets
    are coloured markers, one per label. ``ceiling`` is :func:`nasprune.analysis.noise_ceiling`, a dashed line;
    ``x_goal`` (value, label) a dotted vertical line, such as a cost goal."""
    plt = _pyplot()
    from matplotlib.ticker import PercentFormatter

    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.6), squeeze=False, sharex=True,
                             layout="constrained")
    handles: dict[str, object] = {}
    column, x_label = x
    draws, sets = points[points["pair"].notna()], points[points["pair"].isna()]
    first = draws["budget"].iloc[0] if len(draws) else None
    for ax, (metric, label) in zip(axes.flat, metrics):
        for _, pair in draws.groupby("pair"):
            base = pair[pair["budget"] == first]
            for _, other in pair[pair["budget"] != first].iterrows() if len(base) else ():
                handles["a grey line joins a draw to itself at another budget"] = ax.plot(
                    [base[column].iloc[0], other[column]], [base[metric].iloc[0], other[metric]], color="0.75",
                    lw=0.7, zorder=1)[0]
        for j, (budget, group) in enumerate(draws.groupby("budget", sort=False)):
            colour = _BUDGET_COLOURS[j % len(_BUDGET_COLOURS)]
            handles[f"random draws, {budget}: each and median"] = ax.scatter(
                group[column], group[metric], s=14, color=colour, alpha=0.8, zorder=2)
            ax.scatter(group[column].median(), group[metric].median(), marker="_", s=500, lw=3, color=colour,
                       zorder=3)
        for j, (name, row) in enumerate(sets.groupby("label", sort=False)):
            handles[name] = ax.scatter(row[column], row[metric], s=46, color=f"C{j + 1}", zorder=4,
                                       marker="osD^v<>"[j % 7], edgecolor="k", lw=0.5)
        c = float(ceiling.get(metric, np.nan)) if ceiling is not None else np.nan
        if np.isfinite(c):
            handles["noise ceiling (whole vs itself)"] = ax.axhline(c, color="C0", ls="--", lw=1.2, zorder=1)
        if x_goal is not None:
            handles[x_goal[1]] = ax.axvline(x_goal[0], color="C3", ls=":", lw=1.4, zorder=1)
        ax.set_xlim(0, max(points[column].max(), x_goal[0] if x_goal else 0) * 1.15)
        if x_percent:
            ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel(x_label)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title + chr(10) if title else ''}ranking quality against {column}", fontsize=11)
    return _save(fig, path, handles, columns=2)
