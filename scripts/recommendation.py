"""Write the proxy benchmark's recommendation table into results/README.md from its results, so that no number in
it is copied by hand: the development pool's defaults.csv and sweep.csv and each held-out pool's
confirmation.csv (all written by scripts/proxy_benchmark.py). A held-out folder without confirmation.csv has
not run yet. PLAN.md's rule (results/proxy-benchmark/PLAN.md, 'Confirmation'): a method is recommended at a
size only where every held-out pool confirms it with a final verdict; random elsewhere.

    python scripts/recommendation.py            # rewrite results/README.md's 'recommendation' block
    python scripts/recommendation.py --check    # exit 1 if that block is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nasprune.analysis import replace_block
from studies.proxy_benchmark.recommendation import table_lines

ROOT = Path(__file__).resolve().parents[1]
BLOCK = "recommendation"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--development", type=Path, default=ROOT / "results" / "proxy-benchmark")
    ap.add_argument("--held-out", type=Path, nargs="+",
                    default=[ROOT / "results" / "proxy-benchmark-comp", ROOT / "results" / "proxy-benchmark-ref"])
    ap.add_argument("--readme", type=Path, default=ROOT / "results" / "README.md")
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
