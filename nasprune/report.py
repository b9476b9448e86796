"""Reports of an experiment: the per-job CSV, the Table-1 style table (CSV and Markdown) and two plots
(each candidate's rank on a proxy against its rank on the whole set, and Table 1 as dots with intervals),
all titled with the experiment's name; and :func:`progress`, the job counts ``nasprune status`` shows.

``table1.csv`` is always computed from ``jobs.csv`` as written (see :func:`table1_from_csv`), so anyone
can recompute it from ``jobs.csv`` alone and get the same numbers.

The write-ups under ``results/`` (written by the scripts in ``scripts/``) are built from the same pieces:
paired comparisons of two training sets (:func:`paired_differences` and its two Markdown layouts), a
proxy's selection facts (:func:`proxies_markdown`), Markdown tables and intervals (:func:`markdown_table`,
:func:`ci_text`), and the README itself with its provenance (:func:`write_readme`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from nasprune import __version__
from nasprune.artifacts import write_text
from nasprune.experiment import CONFIG_FILE
from nasprune.metrics import paired_difference, table1

if TYPE_CHECKING:
    from nasprune.proxy import ProxySet

JOBS_CSV_COLUMNS = ["training_set", "candidate", "seed", "val_acc", "test_acc", "train_loss", "seconds", "diverged"]


def table1_from_csv(jobs_csv: str | os.PathLike, whole: str = "whole", *, n_boot: int = 1000, seed: int = 0,
                    **kwargs) -> pd.DataFrame:
    """Recompute the Table-1 frame from a ``jobs.csv`` file alone (same arguments, same numbers)."""
    return table1(pd.read_csv(jobs_csv), whole=whole, n_boot=n_boot, seed=seed, **kwargs)


def experiment_name(experiment_dir: str | os.PathLike) -> str:
    """The ``name`` in ``DIR/experiment.json`` (the config's name), else the directory's name."""
    path = Path(experiment_dir) / CONFIG_FILE
    try:
        name = json.loads(path.read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    return name if isinstance(name, str) and name else Path(experiment_dir).name


def search_has_run(experiment_dir: str | os.PathLike, storage: str | None = None) -> bool:
    """Whether a search can have written results: an RDB URL is given (here or in experiment.json), or
    the journal file ``DIR/optuna.journal`` exists. Reads only: opening a journal storage would create
    the file."""
    from nasprune.jobs import JOURNAL_FILE

    directory = Path(experiment_dir)
    if storage is None:
        try:
            storage = json.loads((directory / CONFIG_FILE).read_text()).get("storage")
        except (OSError, ValueError, AttributeError):
            storage = None
    return storage is not None or (directory / JOURNAL_FILE).is_file()


def write_report(experiment_dir: str | os.PathLike, *, storage: str | None = None, jobs: pd.DataFrame | None = None,
                 whole: str = "whole", n_boot: int = 1000, seed: int = 0, name: str | None = None) -> dict[str, Path]:
    """Write jobs.csv, table1.csv, table1.md, proxy_vs_whole.png and table1.png into the experiment dir.

    ``jobs`` defaults to :func:`nasprune.runner.load_jobs` of the experiment (finished jobs only); jobs
    that failed for good are listed in table1.md. ``name`` (the title) defaults to the experiment's
    name. Nothing is written, and no storage is created, when no job has finished. Returns the paths
    written, by name.
    """
    directory = Path(experiment_dir)
    status = None
    if jobs is None:
        if not search_has_run(directory, storage):
            raise ValueError(f"no search has run in {directory}; run `nasprune search --experiment {directory}` "
                             "first")
        from nasprune.jobs import job_status, load_jobs

        jobs = load_jobs(directory, storage)
        status = job_status(directory, storage)
    if jobs.empty:
        raise ValueError(f"no finished jobs in {directory}; run `nasprune search --experiment {directory}` first")
    title = name or experiment_name(directory)
    extra = [c for c in jobs.columns if c not in JOBS_CSV_COLUMNS]
    paths = {f: directory / f for f in ("jobs.csv", "table1.csv", "table1.md", "proxy_vs_whole.png", "table1.png")}
    write_text(paths["jobs.csv"], jobs[JOBS_CSV_COLUMNS + extra].to_csv(index=False))
    table = table1_from_csv(paths["jobs.csv"], whole=whole, n_boot=n_boot, seed=seed)
    write_text(paths["table1.csv"], table.to_csv(index=False))
    reread = pd.read_csv(paths["jobs.csv"])
    write_text(paths["table1.md"], markdown(table, reread, status=status, n_boot=n_boot, name=title))
    plot_proxy_vs_whole(reread, paths["proxy_vs_whole.png"], whole=whole, title=title)
    plot_table1(table, paths["table1.png"], whole=whole, title=title)
    return paths


def progress(status: pd.DataFrame, jobs: pd.DataFrame, planned: dict[str, int] | None = None,
             steps: Mapping[str, int | None] | None = None) -> pd.DataFrame:
    """Jobs per training set by state, with the work left, for ``nasprune status``.

    ``status`` is :func:`nasprune.runner.job_status`, ``jobs`` :func:`nasprune.runner.load_jobs`, and
    ``planned`` the number of jobs of each training set in the experiment (those of a set added since
    the last search have no study yet, so ``status`` lacks them: they count as waiting). Columns:
    ``done``, ``running``, ``failed`` (out of retries), ``waiting`` (queued or not yet queued),
    ``mean_job_seconds`` (mean wall time of the set's finished jobs; NaN when none has finished),
    ``job_seconds`` (the time each unfinished job is expected to take: that mean; else, where ``steps``
    gives the SGD steps of one job of each set, its steps times the seconds per step of the finished jobs
    whose steps are known, since a job's time goes with its steps; else the mean of all finished jobs),
    ``estimate`` (which of the three: "measured", "steps", "mean") and ``left_seconds`` (running and waiting
    jobs times ``job_seconds``).
    """
    order = list(dict.fromkeys([*(planned or {}), *status["training_set"]]))
    state = status["state"].replace({"complete": "done", "pending": "waiting"})
    counts = pd.crosstab(status["training_set"], state).reindex(index=order, columns=["done", "running", "failed",
                                                                                       "waiting"], fill_value=0)
    if planned:
        missing = pd.Series(planned).reindex(order).fillna(0) - counts.sum(axis=1)
        counts["waiting"] += missing.clip(lower=0).astype(int)
    seconds = jobs["wall_seconds"].fillna(jobs["seconds"]) if "wall_seconds" in jobs else jobs["seconds"]
    mean = seconds.groupby(jobs["training_set"]).mean().reindex(order).astype(float)
    estimate = pd.Series(np.where(mean.notna(), "measured", "mean"), index=order)
    per_job = mean
    done_steps = jobs["training_set"].map(dict(steps or {})).astype(float)
    if done_steps.notna().any():
        per_step = seconds[done_steps.notna()].sum() / done_steps.sum()
        per_job = per_job.fillna(pd.Series(steps, dtype=float).reindex(order) * per_step)
        estimate[mean.isna() & per_job.notna()] = "steps"
    per_job = per_job.fillna(seconds.mean() if len(seconds) else np.nan)
    return counts.assign(mean_job_seconds=mean, job_seconds=per_job, estimate=estimate,
                         left_seconds=(counts["running"] + counts["waiting"]) * per_job)


def _top_ks(table: pd.DataFrame) -> tuple[int, int]:
    """The ``top`` of ``spearman_top<top>`` and the ``k`` of ``top<k>_overlap`` in a Table-1 frame."""
    top = next(int(m[1]) for c in table.columns if (m := re.fullmatch(r"spearman_top(\d+)", c)))
    k = next(int(m[1]) for c in table.columns if (m := re.fullmatch(r"top(\d+)_overlap", c)))
    return top, k


def ci_text(row: pd.Series, metric: str, fmt: str) -> str:
    """``row[metric]`` with its interval ``row[metric_lo]``, ``row[metric_hi]`` as "v [lo, hi]" in format
    ``fmt`` (e.g. ".2f"); the value alone without an interval, "n/a" without a value."""
    value, lo, hi = row[metric], row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    if pd.isna(value):
        return "n/a"
    text = format(value, fmt)
    return text if lo is None or pd.isna(lo) else f"{text} [{format(lo, fmt)}, {format(hi, fmt)}]"


def markdown(table: pd.DataFrame, jobs: pd.DataFrame, *, status: pd.DataFrame | None = None, n_boot: int = 1000,
             name: str = "") -> str:
    """Table 1 as Markdown: the paper's columns first, then the extra metrics, with 95% intervals.

    The top-k columns are named by their k; with too few candidates they read "n/a" and a note says why.
    """
    top, k = _top_ks(table)
    spearman_top, overlap = f"spearman_top{top}", f"top{k}_overlap"
    header = ["training set", "best-arch test acc (%)", f"Spearman (top {top})", "time (min)", "storage (images)",
              "Spearman (all)", "Kendall (all)", f"top-{k} overlap", "regret (points)", "proxy (min)", "chosen"]
    rows = [[str(r["training_set"]), ci_text(r, "best_arch_test_acc", ".1f"), ci_text(r, spearman_top, ".2f"),
             format(r["search_minutes"], ".1f"), format(int(r["images"]), ",") if pd.notna(r["images"]) else "n/a",
             ci_text(r, "spearman_all", ".2f"), ci_text(r, "kendall_all", ".2f"), ci_text(r, overlap, ".2f"),
             ci_text(r, "regret", ".2f"), format(r["proxy_minutes"], ".1f") if pd.notna(r["proxy_minutes"]) else "n/a",
             f"`{r['chosen']}`"] for _, r in table.iterrows()]
    lines = [f"# Table 1{': ' + name if name else ''}", "", *markdown_table(header, rows)]
    seeds = sorted(jobs["seed"].unique().tolist())
    n = int(table["candidates"].max())
    lines += ["", f"{n} candidates, seeds {seeds}; accuracies are means over seeds. "
              f"Brackets: 95% percentile bootstrap intervals over candidates ({n_boot} resamples). "
              "Best-arch: whole-set test accuracy of the candidate ranked first on the training set. Spearman "
              f"(top {top}): proxy vs whole-set validation accuracy over the proxy's top {top}. Top-{k} overlap: "
              f"the share of the proxy's top {k} in the whole set's top {k}. Regret: best whole-set "
              "test accuracy minus that of the proxy's choice. Time: sum of training seconds of the jobs; "
              "proxy: building the proxy (scoring run and selection), when recorded."]
    short = [f"Spearman (top {top}) needs at least {top} candidates"] if (table["candidates"] < top).any() else []
    short += [f"top-{k} overlap needs more than {k} (with {k} or fewer it is always 1)"] \
        if (table["candidates"] <= k).any() else []
    if short:
        lines += ["", f"n/a: {' and '.join(short)}; this experiment has {int(table['candidates'].min())}."]
    lines += ["", f"nasprune {__version__}, written {_dt.datetime.now().isoformat(timespec='seconds')}."]
    if status is not None:
        failed = status[status["state"] == "failed"]
        unfinished = status[~status["state"].isin(["complete", "failed"])]
        if len(failed):
            lines += ["", f"## Failed jobs ({len(failed)})", ""]
            lines += [f"- {r.training_set} `{r.candidate}` seed {r.seed}: {r.errors} attempts, last error: {r.error}"
                      for r in failed.itertuples()]
        if len(unfinished):
            lines += ["", f"{len(unfinished)} jobs are not finished yet; the table covers finished ones only."]
    return "\n".join(lines) + "\n"


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

    from nasprune.metrics import candidate_means

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

    top, _ = _top_ks(table)
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


# --- write-ups of finished experiments (the README.md files under results/) ---------------------------------------


def markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> list[str]:
    """A Markdown table, one line per row (cells as ``str``)."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


#: The columns of :func:`paired_differences`.
PAIRED_COLUMNS = ["proxy", "versus", "metric", "estimate", "lo", "hi", "candidates"]


def paired_differences(jobs: pd.DataFrame, pairs: Iterable[tuple[str, str]], metrics: Sequence[str], *,
                       whole: str = "whole", n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """For each (proxy, versus) pair whose two training sets both have finished jobs, and each metric: the
    metric of ``proxy`` minus that of ``versus`` with a 95% interval from resampling the same candidates
    for both (:func:`nasprune.metrics.paired_difference`). Columns: :data:`PAIRED_COLUMNS`, in the order
    of ``pairs`` then ``metrics``."""
    done = set(jobs["training_set"])
    rows = [{"proxy": a, "versus": b, "metric": m,
             **paired_difference(jobs, a, b, m, whole=whole, n_boot=n_boot, seed=seed)}
            for a, b in pairs if a in done and b in done for m in metrics]
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def paired_text(row) -> str:
    """One paired difference (a row of :func:`paired_differences`) as "+estimate [+lo, +hi]"."""
    return f"{row.estimate:+.3f} [{row.lo:+.3f}, {row.hi:+.3f}]"


def paired_markdown(pairs: pd.DataFrame, keys: Sequence[str] = ("proxy", "versus", "metric")) -> list[str]:
    """Paired differences as a long Markdown table: the ``keys`` columns, the difference and its interval,
    and the number of candidates compared."""
    rows = [[*(getattr(r, k) for k in keys), paired_text(r), r.candidates] for r in pairs.itertuples()]
    return markdown_table([*keys, "difference", "candidates"], rows)


def paired_wide_markdown(pairs: pd.DataFrame, versus: Sequence[str], *,
                         above: str = "CI above 0 against all") -> list[str]:
    """Paired differences against several sets (e.g. random draws) side by side: one row per proxy and
    metric, one column per set of ``versus``, and a last column ``above``: "yes" when the interval is above
    0 against every one of them."""
    rows = []
    for (proxy, metric), g in pairs[pairs["versus"].isin(list(versus))].groupby(["proxy", "metric"], sort=False):
        cells = {r.versus: paired_text(r) for r in g.itertuples()}
        all_above = bool((g["lo"] > 0).all()) and len(g) == len(versus)
        rows.append([proxy, metric, *(cells.get(v, "") for v in versus), "yes" if all_above else "no"])
    return markdown_table(["proxy", "metric", *(f"vs {v}" for v in versus), above], rows)


def proxies_markdown(proxies: Mapping[str, "ProxySet"]) -> list[str]:
    """Each proxy's selection facts as a Markdown table: its influence target and l2 (where it used the
    influence vectors), the Eq. 4 objective beside norm(T) (T: the sum of all S_i), the certified lower bound,
    the pruning network's accuracy on the kept images and the minutes it took to build."""

    def num(stats: dict, key: str, fmt: str = ".4g") -> str:
        return "" if stats.get(key) is None else format(stats[key], fmt)

    rows = []
    for name, proxy in proxies.items():
        st, inf = proxy.stats, proxy.config.get("influence") or {}
        setting = (f"{inf.get('target')}, {inf.get('l2'):g}" if proxy.method == "influence"
                   else f"l2 {inf.get('l2'):g}" if inf else "")
        minutes = proxy.build_minutes()
        rows.append([name, setting, "" if proxy.objective is None else f"{proxy.objective:.4g}", num(st, "t_norm"),
                     num(st, "lower_bound"), num(st, "pruning_net_acc_on_kept", ".1f"),
                     "" if minutes is None else f"{minutes:.1f}"])
    return markdown_table(["proxy", "target, l2", "Eq. 4 objective", "norm(T)", "lower bound",
                           "pruning-net acc on kept (%)", "building it (min)"], rows)


def train_settings(config) -> dict:
    """A :class:`~nasprune.train.TrainConfig` in a write-up: epochs, batch size and learning rate, plus every
    other setting that differs from its default (the seed aside: it is the job's)."""
    from nasprune.train import TrainConfig

    default = TrainConfig()
    shown = {"epochs", "batch_size", "lr"}
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.name in shown or (f.name != "seed" and getattr(config, f.name) != getattr(default, f.name))}


def write_readme(path: str | os.PathLike, title: str, body: Sequence[str], prov: dict | None = None) -> Path:
    """Write a results README atomically: ``# title``, the ``body`` lines and, with ``prov``, the provenance
    section (:func:`nasprune.provenance.markdown`: code version, machine, seeds, wall time)."""
    lines = [f"# {title}", "", *body]
    if prov is not None:
        from nasprune.provenance import markdown as provenance_markdown  # imports torch: only when asked

        lines += provenance_markdown(prov)
    return write_text(path, "\n".join(lines))


def replace_block(path: str | os.PathLike, name: str, lines: Sequence[str], *, write: bool = True) -> bool:
    """Replace the generated block ``name`` of a Markdown file (the lines between ``<!-- begin NAME -->`` and
    ``<!-- end NAME -->``) with ``lines``, atomically; True when the block differed (``write=False``: only
    check). The markers stay, so the block can be regenerated; a file without them is refused, not guessed at."""
    path = Path(path)
    text = path.read_text()
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"{path}: needs exactly one '{begin}' line followed by one '{end}' line")
    head, rest = text.split(begin, 1)
    new = head + "\n".join([begin, *lines, end]) + rest.split(end, 1)[1]
    if write and new != text:
        write_text(path, new)
    return new != text


def _ordinal(x: float) -> str:
    """A percentile as a word: 1st, 2nd, 3rd, 11th, 82nd, 100th."""
    n = int(round(x))
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _against_random(sweep: pd.DataFrame, proxy: str, k: int) -> str:
    """One development-pool proxy on the primary metrics and regret, each beside random's median (and 5-95% band
    for Kendall) at its size, from its :func:`nasprune.benchmark.size_sweep` rows."""
    r = sweep[sweep["proxy"] == proxy].set_index("metric")
    kendall, ndcg = r.loc["kendall_all"], r.loc[f"ndcg_top{k}"]
    return (f"{proxy}: Kendall {kendall['value']:.3f} ({_ordinal(kendall['percentile'])} percentile; random's median "
            f"{kendall['draw_median']:.3f} [5-95%: {kendall['band_lo']:.3f}, {kendall['band_hi']:.3f}]), NDCG@{k} "
            f"{ndcg['value']:.3f} ({_ordinal(ndcg['percentile'])}; median {ndcg['draw_median']:.3f}), regret "
            f"{r.loc['regret', 'value']:.2f} (median {r.loc['regret', 'draw_median']:.2f})")


def recommendation_markdown(recommendation: pd.DataFrame, sweep: pd.DataFrame,
                            confirmations: Mapping[str, pd.DataFrame | None], *, k: int) -> list[str]:
    """The project README's recommendation table: per size, what to use (:func:`nasprune.benchmark.recommend`),
    how the development pool's default (or, where it is random, the closest proxy and ours, influence) ranks
    against random there (``sweep``, the development pool's size sweep with NDCG@``k``), and each held-out
    pool's verdict with its numbers (``confirmations``: header to :func:`nasprune.benchmark.confirm` table)."""
    candidates = int(sweep["candidates"].max())
    header = ["images per class", "use",
              f"development pool ({candidates} candidates, {int(sweep['draws'].max())} random draws per size)"]
    for pool, table in confirmations.items():
        header.append(pool if table is None or not len(table) else f"{pool} ({int(table['candidates'].max())} "
                      "candidates)")
    primary = ["kendall_all", f"ndcg_top{k}"]
    rows = []
    for rec in recommendation.to_dict("records"):
        at = sweep[sweep["per_class"] == rec["per_class"]]
        if rec["candidate"] != "random":
            use = rec["use"] if rec["use"] != "random" else (
                f"random ({rec['candidate']} {'pending confirmation' if rec['pending'] else 'not confirmed'})")
            development = _against_random(sweep, rec["candidate"], k)
        else:
            use = "random"
            pct = at[at["metric"].isin(primary)].groupby("proxy", sort=False)["percentile"].mean()
            closest = pct.idxmax() if len(pct) else None
            development = "no method qualifies"
            if closest:
                development += f"; closest: {_against_random(sweep, closest, k)}"
            ours = at[(at["method"] == "influence") & (at["metric"] == "kendall_all")].head(1)
            if len(ours) and ours["proxy"].iloc[0] != closest:
                o = ours.iloc[0]
                development += f"; ours, {o['proxy']}: Kendall {o['value']:.3f} ({_ordinal(o['percentile'])})"
        rows.append([rec["per_class"], use, development,
                     *(_verdict_cell(rec[pool], confirmations[pool], rec["candidate"]) for pool in confirmations)])
    return markdown_table(header, rows)


def _verdict_cell(verdict: str, table: pd.DataFrame | None, proxy: str) -> str:
    """A held-out pool's verdict on ``proxy`` with its numbers from the pool's confirmation table."""
    found = None if table is None else table[table["proxy"] == proxy]
    if not verdict:
        return "nothing to confirm"
    if found is None or not len(found):
        return verdict
    r = found.iloc[0]
    ndcg = next(c for c in table.columns if c.startswith("ndcg_top") and not c.endswith("_percentile"))
    return (f"{verdict}: Kendall {r['kendall_all']:.3f} ({_ordinal(r['kendall_all_percentile'])}), "
            f"NDCG@{ndcg[len('ndcg_top'):]} {r[ndcg]:.3f} ({_ordinal(r[ndcg + '_percentile'])}), regret "
            f"{r['regret']:.2f}, {int(r['draws'])} draws")


# --- a proxy among random draws of its size (nasprune compare) ----------------------------------------------------

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

    ``draws`` is :func:`nasprune.metrics.draw_metrics` of the draws (one row per draw), ``null``
    :func:`nasprune.metrics.random_null` (one row per proxy and metric) and ``ceiling``
    :func:`nasprune.metrics.noise_ceiling`. Intervals are left to the printed table: a proxy's bootstrap
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


# --- the proxy benchmark (nasprune.benchmark) ---------------------------------------------------------------------

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
    ``band_lo``, ``band_hi``): from ``spread`` (:func:`nasprune.benchmark.random_spread`) when given, so that a size
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

    ``sweep`` is :func:`nasprune.benchmark.size_sweep`; ``ceiling`` :func:`nasprune.metrics.noise_ceiling`;
    ``spread`` :func:`nasprune.benchmark.random_spread`, which also covers the sizes where random ran alone (see
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
    are coloured markers, one per label. ``ceiling`` is :func:`nasprune.metrics.noise_ceiling`, a dashed line;
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


def size_sweep_markdown(sweep: pd.DataFrame, metrics: Sequence[tuple[str, str, str]],
                        heading: str = "{per_class} images per class ({candidates} candidates)") -> list[str]:
    """Per size, a table with one row per method: each metric's value [95% CI], its percentile among the draws
    and how many draws are as good, with random's median [5%, 95%] as the first row. ``heading`` titles each
    size's table (fields ``per_class`` and ``candidates``)."""
    lines: list[str] = []
    for per_class, group in sweep.groupby("per_class", sort=True):
        draws = int(group["draws"].max())
        header = ["proxy", *(f"{label}: value [95% CI], pct, draws as good" for _, label, _ in metrics)]
        first = group.groupby("metric")[["draw_median", "band_lo", "band_hi"]].first()
        first.columns = ["draw_median", "draw_median_lo", "draw_median_hi"]  # as ci_text reads an interval
        rows = [[f"random ({draws} draws): median [5%, 95%]",
                 *(ci_text(first.loc[m], "draw_median", f) if m in first.index else "n/a" for m, _, f in metrics)]]
        for proxy, p in group.groupby("proxy", sort=False):
            cells = []
            for m, _, f in metrics:
                r = p[p["metric"] == m]
                if not len(r) or pd.isna(r["value"].iloc[0]):
                    cells.append("n/a")
                    continue
                r = r.iloc[0]
                cells.append(f"{ci_text(pd.Series({'v': r['value'], 'v_lo': r['lo'], 'v_hi': r['hi']}), 'v', f)}, "
                             f"{r['percentile']:.0f}, {r['draws_as_good'] * r['draws']:.0f}/{r['draws']}")
            rows.append([proxy, *cells])
        candidates = int(group["candidates"].iloc[0])
        lines += [f"### {heading.format(per_class=per_class, candidates=candidates)}", "",
                  *markdown_table(header, rows), ""]
    return lines
