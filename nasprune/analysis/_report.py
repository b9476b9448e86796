"""An experiment's report: the per-job CSV, the Table-1 style table (CSV and Markdown) and two plots (each
candidate's rank on a proxy against its rank on the whole set, and Table 1 as dots with intervals), all titled with
the experiment's name.

``table1.csv`` is always computed from ``jobs.csv`` as written (see :func:`table1_from_csv`), so anyone can
recompute it from ``jobs.csv`` alone and get the same numbers. What every column means: ``_metrics.py``'s
docstring, and the README's "Read the results".
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

import pandas as pd

from nasprune import __version__
from nasprune.artifacts import write_text
from nasprune.search import EXPERIMENT_FILE, JOB_COLUMNS, JOURNAL_FILE, JobStore, job_status, load_jobs

from ._markdown import ci_text, markdown_table
from ._metrics import table1, top_ks
from ._plots import plot_proxy_vs_whole, plot_table1

__all__ = ["experiment_name", "search_has_run", "table1_from_csv", "table1_markdown", "table1_summary", "write_report"]


def table1_from_csv(jobs_csv: str | os.PathLike, whole: str = "whole", *, n_boot: int = 1000, seed: int = 0,
                    **kwargs) -> pd.DataFrame:
    """Recompute the Table-1 frame from a ``jobs.csv`` file alone (same arguments, same numbers)."""
    return table1(pd.read_csv(jobs_csv), whole=whole, n_boot=n_boot, seed=seed, **kwargs)


def experiment_name(experiment_dir: str | os.PathLike) -> str:
    """The ``name`` in ``DIR/experiment.json`` (the config's name), else the directory's name."""
    path = Path(experiment_dir) / EXPERIMENT_FILE
    try:
        name = json.loads(path.read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    return name if isinstance(name, str) and name else Path(experiment_dir).name


def search_has_run(experiment_dir: str | os.PathLike, storage: str | None = None) -> bool:
    """Whether a search can have written results: an RDB URL is given (here or in experiment.json), or
    the journal file ``DIR/optuna.journal`` exists. Reads only: opening a journal storage would create
    the file."""
    directory = Path(experiment_dir)
    if storage is None:
        try:
            storage = json.loads((directory / EXPERIMENT_FILE).read_text()).get("storage")
        except (OSError, ValueError, AttributeError):
            storage = None
    return storage is not None or (directory / JOURNAL_FILE).is_file()


def write_report(experiment_dir: str | os.PathLike, *, storage: str | None = None, jobs: pd.DataFrame | None = None,
                 whole: str = "whole", n_boot: int = 1000, seed: int = 0, name: str | None = None) -> dict[str, Path]:
    """Write jobs.csv, table1.csv, table1.md, proxy_vs_whole.png and table1.png into the experiment dir.

    ``jobs`` defaults to :func:`nasprune.search.load_jobs` of the experiment (finished jobs only; the storage is
    opened once); jobs that failed for good are listed in table1.md. ``name`` (the title) defaults to the experiment's
    name. Nothing is written, and no storage is created, when no job has finished. Returns the paths
    written, by name.
    """
    directory = Path(experiment_dir)
    status = None
    if jobs is None:
        if not search_has_run(directory, storage):
            raise ValueError(f"no search has run in {directory}; run `nasprune search --experiment {directory}` "
                             "first")
        store = JobStore.open(directory, url=storage)
        jobs, status = load_jobs(store), job_status(store)
    if jobs.empty:
        raise ValueError(f"no finished jobs in {directory}; run `nasprune search --experiment {directory}` first")
    title = name or experiment_name(directory)
    columns = [c for c in JOB_COLUMNS if c in jobs.columns] + [c for c in jobs.columns if c not in JOB_COLUMNS]
    paths = {f: directory / f for f in ("jobs.csv", "table1.csv", "table1.md", "proxy_vs_whole.png", "table1.png")}
    write_text(paths["jobs.csv"], jobs[columns].to_csv(index=False))
    table = table1_from_csv(paths["jobs.csv"], whole=whole, n_boot=n_boot, seed=seed)
    write_text(paths["table1.csv"], table.to_csv(index=False))
    reread = pd.read_csv(paths["jobs.csv"])
    write_text(paths["table1.md"], table1_markdown(table, reread, status=status, n_boot=n_boot, name=title))
    plot_proxy_vs_whole(reread, paths["proxy_vs_whole.png"], whole=whole, title=title)
    plot_table1(table, paths["table1.png"], whole=whole, title=title)
    return paths


def table1_markdown(table: pd.DataFrame, jobs: pd.DataFrame, *, status: pd.DataFrame | None = None, n_boot: int = 1000,
             name: str = "") -> str:
    """Table 1 as Markdown: the paper's columns first, then the extra metrics, with 95% intervals.

    The top-k columns are named by their k; with too few candidates they read "n/a" and a note says why.
    """
    top, k = top_ks(table)
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


def table1_summary(table: pd.DataFrame) -> list[str]:
    """Table 1 in a terminal, one aligned line per training set: its size, the whole-set test accuracy of the
    candidate it ranks first, the regret, Kendall over all candidates and its search's minutes (what ``nasprune
    report`` prints before the files it wrote)."""
    header = ["training set", "images", "best-arch test acc", "regret", "Kendall", "search (min)", "chosen"]

    def num(value, fmt: str) -> str:
        return "n/a" if pd.isna(value) else format(value, fmt)

    rows = [[str(r["training_set"]), num(r["images"], ",.0f"), num(r["best_arch_test_acc"], ".2f"),
             num(r["regret"], ".2f"), num(r["kendall_all"], ".3f"), num(r["search_minutes"], ".1f"), str(r["chosen"])]
            for _, r in table.iterrows()]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return ["  ".join([row[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(row[1:-1], widths[1:-1])), row[-1]])
            .rstrip() for row in [header, *rows]]
