"""A schedule's report: the chosen architecture, what the search cost, a table per rung, and a plot of the candidates
through the rungs (``schedule.md``, ``schedule.csv``, ``schedule.png``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from nasprune.artifacts import write_text
from nasprune.search import ScheduleResult

from ._markdown import markdown_table

__all__ = ["SCHEDULE_COLUMNS", "schedule_table", "write_schedule_report"]

#: The columns of :func:`schedule_table`.
SCHEDULE_COLUMNS = ["rung", "source", "epochs", "signal", "candidate", "value", "rank", "kept"]


def schedule_table(result: ScheduleResult) -> pd.DataFrame:
    """One row per rung and candidate it measured: the rung, its source, budget and signal, the candidate's value
    (higher ranks higher; NaN: diverged), its rank there (1 = best) and whether it was kept."""
    rows = []
    for record in result.rungs:
        order = {c: i + 1 for i, c in enumerate(record.values.sort_values(ascending=False, na_position="last").index)}
        rows += [{"rung": record.index, "source": record.rung.source, "epochs": record.rung.epochs,
                  "signal": _signal(record.rung), "candidate": c, "value": float(record.values[c]), "rank": order[c],
                  "kept": c in record.kept} for c in record.candidates]
    return pd.DataFrame(rows, columns=SCHEDULE_COLUMNS)


def _signal(rung) -> str:
    """What ranks at a rung: its zero-cost score, or its training signal."""
    return rung.source.split(":", 1)[1] if rung.zero_cost else rung.signal


def write_schedule_report(result: ScheduleResult, directory: str | os.PathLike, *, whole_steps: int | None = None,
                          candidates: int | None = None) -> dict[str, Path]:
    """Write ``schedule.csv``, ``schedule.md`` and ``schedule.png`` into ``directory``. ``whole_steps`` (one
    candidate's whole-set SGD steps) and ``candidates`` (the pool's size) turn the steps spent into a share of the
    whole-set search."""
    directory = Path(directory)
    table = schedule_table(result)
    paths = {name: directory / name for name in ("schedule.csv", "schedule.md", "schedule.png")}
    write_text(paths["schedule.csv"], table.to_csv(index=False))
    n = candidates or len(result.rungs[0].candidates)
    own = result.whole_steps.get(result.chosen, 0.0)  # the chosen net's whole-set training, which any search ends with
    share = "" if not whole_steps else (f" ({100 * result.steps / (n * whole_steps):.1f}% of the whole-set search; "
                                        f"{100 * (result.steps - own) / (n * whole_steps):.1f}% without the chosen "
                                        "net's own whole-set training)")
    lines = [f"# Schedule: {result.schedule.name}", "",
             f"**Chosen: `{result.chosen}`.** {n} candidates, {len(result.rungs)} rungs; spent {result.steps:,.0f} SGD "
             f"steps{share}, {result.seconds / 60:.1f} min of jobs (of which {result.scoring_seconds:.1f} s of "
             "zero-cost scoring).", ""]
    summary = [[r.index, r.rung.source, "" if r.rung.epochs is None else r.rung.epochs, _signal(r.rung),
                len(r.candidates), len(r.kept), f"{r.steps:,.0f}", f"{r.seconds / 60:.1f}"] for r in result.rungs]
    lines += markdown_table(["rung", "source", "epochs (blank: the set's own)", "signal", "candidates", "kept",
                             "SGD steps", "minutes"],
                            summary) + [""]
    for record in result.rungs:
        part = table[table["rung"] == record.index].sort_values("rank")
        tse = record.rung.signal == "tse" and not record.rung.zero_cost
        lowered = " (negated: lower TSE ranks higher)" if tse else ""
        lines += [f"## Rung {record.index}: {record.rung.source}, by {_signal(record.rung)}{lowered}", "",
                  *markdown_table(["rank", "candidate", "value", "kept"],
                                  [[r.rank, f"`{r.candidate}`", "diverged" if np.isnan(r.value) else f"{r.value:.4g}",
                                    "yes" if r.kept else ""] for r in part.itertuples()]), ""]
    write_text(paths["schedule.md"], "\n".join(lines))
    _plot(result, table, paths["schedule.png"])
    return paths


def _tick(record) -> str:
    """A rung's label: its source, budget, and how many it kept of how many."""
    epochs = record.rung.epochs
    budget = "" if epochs is None else f"\n{epochs} epoch{'s' * (epochs > 1)}"
    return f"{record.rung.source}{budget}\n{len(record.candidates)} -> {len(record.kept)}"


def _plot(result: ScheduleResult, table: pd.DataFrame, path: Path) -> None:
    """Each candidate's rank at every rung it reached, a line per candidate, the chosen one in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(result.rungs), 4.8), layout="constrained")
    for candidate, rows in table.groupby("candidate"):
        chosen = candidate == result.chosen
        ax.plot(rows["rung"], rows["rank"], marker="o", ms=4 if not chosen else 7, lw=0.8 if not chosen else 2.2,
                color="C3" if chosen else "0.6", zorder=3 if chosen else 2,
                label=f"chosen: {candidate}" if chosen else None)
    ax.set_xticks(range(len(result.rungs)), [_tick(r) for r in result.rungs], fontsize=8)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.invert_yaxis()
    ax.set_ylabel("rank at the rung (1 = best)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{result.schedule.name}: the candidates through the rungs", fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)
