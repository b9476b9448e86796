"""Reports of an experiment: the per-job CSV, the Table-1 style table (CSV and Markdown) and two plots.

``table1.csv`` is always computed from ``jobs.csv`` as written (see :func:`table1_from_csv`), so anyone
can recompute it from ``jobs.csv`` alone and get the same numbers.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import numpy as np
import pandas as pd

from nasprune import __version__
from nasprune.metrics import table1

JOBS_CSV_COLUMNS = ["training_set", "candidate", "seed", "val_acc", "test_acc", "train_loss", "seconds", "diverged"]


def table1_from_csv(jobs_csv: str | os.PathLike, whole: str = "whole", *, n_boot: int = 1000, seed: int = 0,
                    **kwargs) -> pd.DataFrame:
    """Recompute the Table-1 frame from a ``jobs.csv`` file alone (same arguments, same numbers)."""
    return table1(pd.read_csv(jobs_csv), whole=whole, n_boot=n_boot, seed=seed, **kwargs)


def write_report(experiment_dir: str | os.PathLike, *, storage: str | None = None, jobs: pd.DataFrame | None = None,
                 whole: str = "whole", n_boot: int = 1000, seed: int = 0) -> dict[str, Path]:
    """Write jobs.csv, table1.csv, table1.md, proxy_vs_whole.png and table1.png into the experiment dir.

    ``jobs`` defaults to :func:`nasprune.runner.load_jobs` of the experiment (finished jobs only); jobs
    that failed for good are listed in table1.md. Returns the paths written, by name.
    """
    directory = Path(experiment_dir)
    status = None
    if jobs is None:
        from nasprune.runner import job_status, load_jobs

        jobs = load_jobs(directory, storage)
        status = job_status(directory, storage)
    if jobs.empty:
        raise ValueError(f"no finished jobs in {directory}; run `nasprune search --experiment {directory}` first")
    extra = [c for c in jobs.columns if c not in JOBS_CSV_COLUMNS]
    paths = {name: directory / name for name in ("jobs.csv", "table1.csv", "table1.md", "proxy_vs_whole.png",
                                                  "table1.png")}
    jobs[JOBS_CSV_COLUMNS + extra].to_csv(paths["jobs.csv"], index=False)
    table = table1_from_csv(paths["jobs.csv"], whole=whole, n_boot=n_boot, seed=seed)
    table.to_csv(paths["table1.csv"], index=False)
    reread = pd.read_csv(paths["jobs.csv"])
    paths["table1.md"].write_text(markdown(table, reread, status=status, n_boot=n_boot, name=directory.name))
    plot_proxy_vs_whole(reread, paths["proxy_vs_whole.png"], whole=whole)
    plot_table1(table, paths["table1.png"])
    return paths


def _ci(row: pd.Series, metric: str, fmt: str) -> str:
    value, lo, hi = row[metric], row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    if pd.isna(value):
        return "n/a"
    text = format(value, fmt)
    return text if lo is None or pd.isna(lo) else f"{text} [{format(lo, fmt)}, {format(hi, fmt)}]"


def markdown(table: pd.DataFrame, jobs: pd.DataFrame, *, status: pd.DataFrame | None = None, n_boot: int = 1000,
             name: str = "") -> str:
    """Table 1 as Markdown: the paper's columns first, then the extra metrics, with 95% intervals."""
    header = ["training set", "best-arch test acc (%)", "Spearman (top 10)", "time (min)", "storage (images)",
              "Spearman (all)", "Kendall (all)", "top-10 overlap", "regret (points)", "proxy (min)", "chosen"]
    lines = [f"# Table 1{': ' + name if name else ''}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in table.iterrows():
        cells = [str(r["training_set"]), _ci(r, "best_arch_test_acc", ".1f"), _ci(r, "spearman_top10", ".2f"),
                 format(r["search_minutes"], ".1f"), format(int(r["images"]), ",") if pd.notna(r["images"]) else "n/a",
                 _ci(r, "spearman_all", ".2f"), _ci(r, "kendall_all", ".2f"), _ci(r, "top10_overlap", ".2f"),
                 _ci(r, "regret", ".2f"), format(r["proxy_minutes"], ".1f") if pd.notna(r["proxy_minutes"]) else "n/a",
                 f"`{r['chosen']}`"]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted(jobs["seed"].unique().tolist())
    lines += ["", f"{int(table['candidates'].max())} candidates, seeds {seeds}; accuracies are means over seeds. "
              f"Brackets: 95% percentile bootstrap intervals over candidates ({n_boot} resamples). "
              "Best-arch: whole-set test accuracy of the candidate ranked first on the training set. Spearman "
              "(top 10): proxy vs whole-set validation accuracy over the proxy's top 10. Regret: best whole-set "
              "test accuracy minus that of the proxy's choice. Time: sum of training seconds of the jobs; "
              "proxy: building the proxy (scoring run and selection), when recorded.",
              "", f"nasprune {__version__}, written {_dt.datetime.now().isoformat(timespec='seconds')}."]
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


def plot_proxy_vs_whole(jobs: pd.DataFrame, path: str | os.PathLike, whole: str = "whole") -> Path:
    """One panel per proxy training set: its val accuracy (y) against the whole set's (x), per candidate."""
    plt = _pyplot()
    from nasprune.metrics import candidate_means

    proxies = [t for t in dict.fromkeys(jobs["training_set"]) if t != whole]
    w = candidate_means(jobs, whole)["val_acc"]
    cols = max(1, min(3, len(proxies)))
    rows = max(1, int(np.ceil(len(proxies) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.8 * rows), squeeze=False)
    for ax, ts in zip(axes.flat, proxies):
        p = candidate_means(jobs, ts)["val_acc"]
        both = pd.concat([w.rename("whole"), p.rename("proxy")], axis=1, join="inner").dropna()
        top = both.sort_values("proxy", ascending=False, kind="stable").head(10)
        ax.scatter(both["whole"], both["proxy"], s=14, color="0.6", label="candidates")
        ax.scatter(top["whole"], top["proxy"], s=18, color="C3", label="proxy's top 10")
        method = jobs.loc[jobs["training_set"] == ts, "method"].dropna()
        ax.set_title(f"{ts}" + (f" ({method.iloc[0]})" if len(method) and method.iloc[0] != ts else ""))
        ax.set_xlabel(f"{whole} val acc (%)")
        ax.set_ylabel("proxy val acc (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(proxies):]:
        ax.axis("off")
    if proxies:
        axes.flat[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_table1(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Bars per training set: best-arch test accuracy, top-10 Spearman and regret, with 95% intervals."""
    plt = _pyplot()
    metrics = [("best_arch_test_acc", "best-arch test acc (%)"), ("spearman_top10", "Spearman (top 10)"),
               ("regret", "regret (points)")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6))
    x = np.arange(len(table))
    for ax, (m, label) in zip(axes, metrics):
        v = table[m].to_numpy(float)
        err = np.vstack([v - table[f"{m}_lo"].to_numpy(float), table[f"{m}_hi"].to_numpy(float) - v])
        ax.bar(x, np.nan_to_num(v), yerr=np.nan_to_num(np.clip(err, 0, None)), color="C0", capsize=3)
        ax.set_xticks(x, table["training_set"], rotation=30, ha="right")
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
