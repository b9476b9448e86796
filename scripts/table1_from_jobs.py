"""Recompute table1.csv and table1.md from a jobs.csv alone (no storage, no training).

    python scripts/table1_from_jobs.py results/fmnist-ref/jobs.csv            # prints the table
    python scripts/table1_from_jobs.py results/fmnist-ref/jobs.csv --write    # rewrites table1.csv/.md beside it
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from nasprune.analysis import experiment_name, table1_from_csv, table1_markdown


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jobs_csv")
    ap.add_argument("--whole", default="whole", help="name of the whole-training-set rows")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="write table1.csv and table1.md beside jobs.csv")
    args = ap.parse_args()
    path = Path(args.jobs_csv)
    if not path.is_file():
        raise SystemExit(f"no jobs file at {path}")
    table = table1_from_csv(path, whole=args.whole, n_boot=args.bootstrap, seed=args.seed)
    if args.write:
        table.to_csv(path.parent / "table1.csv", index=False)
        (path.parent / "table1.md").write_text(table1_markdown(table, pd.read_csv(path), n_boot=args.bootstrap,
                                                        name=experiment_name(path.parent)))
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
