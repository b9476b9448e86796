"""Markdown for the write-ups under ``results/``: tables, values with their intervals, paired comparisons, a proxy's
selection facts, every method against random size by size, and the README itself with its provenance."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from nasprune.artifacts import write_text

from ._metrics import paired_difference

if TYPE_CHECKING:
    from nasprune.proxies import ProxySet

__all__ = ["PAIRED_COLUMNS", "ci_text", "markdown_table", "paired_differences", "paired_markdown", "paired_text",
           "paired_wide_markdown", "proxies_markdown", "replace_block", "size_sweep_markdown", "train_settings",
           "write_readme"]


def ci_text(row: pd.Series, metric: str, fmt: str) -> str:
    """``row[metric]`` with its interval ``row[metric_lo]``, ``row[metric_hi]`` as "v [lo, hi]" in format
    ``fmt`` (e.g. ".2f"); the value alone without an interval, "n/a" without a value."""
    value, lo, hi = row[metric], row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    if pd.isna(value):
        return "n/a"
    text = format(value, fmt)
    return text if lo is None or pd.isna(lo) else f"{text} [{format(lo, fmt)}, {format(hi, fmt)}]"


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
    for both (:func:`nasprune.analysis.paired_difference`). Columns: :data:`PAIRED_COLUMNS`, in the order
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
    """A :class:`~nasprune.training.TrainConfig` in a write-up: epochs, batch size and learning rate, plus every
    other setting that differs from its default (the seed aside: it is the job's)."""
    from nasprune.training import TrainConfig

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
