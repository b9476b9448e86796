"""Write the project README's recommendation table from the proxy benchmark's results, so that no number in
it is copied by hand: the development pool's defaults.csv and sweep.csv and each held-out pool's
confirmation.csv (all written by scripts/proxy_benchmark.py). A held-out folder without confirmation.csv has
not run yet. PLAN.md's rule (results/proxy-benchmark/PLAN.md, 'Confirmation'): a method is recommended at a
size only where every held-out pool confirms it with a final verdict; random elsewhere.

    python scripts/recommendation.py            # rewrite README.md's 'recommendation' block
    python scripts/recommendation.py --check    # exit 1 if that block is out of date
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from nasprune.benchmark import CONFIRMATION_COLUMNS, recommend, top_quartile_k
from nasprune.report import recommendation_markdown, replace_block

ROOT = Path(__file__).resolve().parents[1]
BLOCK = "recommendation"


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--development", type=Path, default=ROOT / "results" / "proxy-benchmark")
    ap.add_argument("--held-out", type=Path, nargs="+",
                    default=[ROOT / "results" / "proxy-benchmark-comp", ROOT / "results" / "proxy-benchmark-ref"])
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--check", action="store_true", help="exit 1 if the README's table is out of date; write nothing")
    args = ap.parse_args()
    if not args.readme.is_file():
        ap.error(f"--readme {args.readme}: no such file")
    lines = table_lines(args.development, args.held_out, args.readme)
    try:
        changed = replace_block(args.readme, BLOCK, lines, write=not args.check)
    except ValueError as e:
        sys.exit(str(e))
    if args.check and changed:
        sys.exit(f"{args.readme}: the '{BLOCK}' table is out of date; run python scripts/recommendation.py")
    print(f"{args.readme}: the '{BLOCK}' table " + ("rewritten" if changed else "is up to date"))


if __name__ == "__main__":
    main()
