"""The proxy benchmark's recommendation table (``results/README.md``, block ``recommendation``): per size, what to use
(:func:`rules.recommend`), how the development pool's default ranks against random there, and each held-out pool's
verdict, written from the pools' CSVs so that no number in it is copied by hand.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from nasprune.analysis import markdown_table, top_quartile_k

from .rules import CONFIRMATION_COLUMNS, recommend

__all__ = ["recommendation_markdown", "table_lines"]


def _ordinal(x: float) -> str:
    """A percentile as a word: 1st, 2nd, 3rd, 11th, 82nd, 100th."""
    n = int(round(x))
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _against_random(sweep: pd.DataFrame, proxy: str, k: int) -> str:
    """One development-pool proxy on the primary metrics and regret, each beside random's median (and 5-95% band
    for Kendall) at its size, from its :func:`nasprune.analysis.size_sweep` rows."""
    r = sweep[sweep["proxy"] == proxy].set_index("metric")
    kendall, ndcg = r.loc["kendall_all"], r.loc[f"ndcg_top{k}"]
    return (f"{proxy}: Kendall {kendall['value']:.3f} ({_ordinal(kendall['percentile'])} percentile; random's median "
            f"{kendall['draw_median']:.3f} [5-95%: {kendall['band_lo']:.3f}, {kendall['band_hi']:.3f}]), NDCG@{k} "
            f"{ndcg['value']:.3f} ({_ordinal(ndcg['percentile'])}; median {ndcg['draw_median']:.3f}), regret "
            f"{r.loc['regret', 'value']:.2f} (median {r.loc['regret', 'draw_median']:.2f})")


def recommendation_markdown(recommendation: pd.DataFrame, sweep: pd.DataFrame,
                            confirmations: Mapping[str, pd.DataFrame | None], *, k: int) -> list[str]:
    """The recommendation table: per size, what to use (:func:`rules.recommend`),
    how the development pool's default (or, where it is random, the closest proxy and ours, influence) ranks
    against random there (``sweep``, the development pool's size sweep with NDCG@``k``), and each held-out
    pool's verdict with its numbers (``confirmations``: header to :func:`rules.confirm` table)."""
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


def read_csv(path: Path, columns) -> pd.DataFrame:
    """A results CSV with the ``columns`` this script reads, or a one-line error naming what is wrong."""
    if not path.is_file():
        sys.exit(f"{path}: no such file (written by scripts/proxy_benchmark.py)")
    table = pd.read_csv(path)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        sys.exit(f"{path}: missing column(s) {', '.join(missing)}; rerun scripts/proxy_benchmark.py --analyse on it")
    return table


def table_lines(development: Path, held_out: list[Path], readme: Path) -> list[str]:
    defaults = read_csv(development / "defaults.csv", ["per_class", "default", "method"])
    sweep = read_csv(development / "sweep.csv", ["per_class", "proxy", "method", "metric", "value", "percentile",
                                                 "draw_median", "band_lo", "band_hi", "draws", "candidates"])
    confirmations = {}
    for folder in held_out:
        if not folder.is_dir():
            sys.exit(f"{folder}: no such folder (a held-out pool of scripts/proxy_benchmark.py)")
        name = f"`{os.path.relpath(folder, readme.parent)}/`"
        csv = folder / "confirmation.csv"
        confirmations[name] = read_csv(csv, CONFIRMATION_COLUMNS) if csv.is_file() else None
    table = recommendation_markdown(recommend(defaults, confirmations), sweep, confirmations,
                                    k=top_quartile_k(int(sweep["candidates"].max())))
    sources = ", ".join(f"`{os.path.relpath(p, readme.parent)}`" for p in
                        [development / "defaults.csv", development / "sweep.csv",
                         *(f / "confirmation.csv" for f in held_out)])
    return [f"<!-- written by scripts/recommendation.py from {sources}; do not edit by hand -->", "", *table]
