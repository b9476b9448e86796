"""The proxy benchmark (results/proxy-benchmark/PLAN.md): proxies of five sizes and seven methods against 20
random draws per size, read against a settled whole-set ground truth and its noise ceiling.

Runs (or resumes) the pipeline of ``results/proxy-benchmark/config.yaml``, then writes from the finished jobs
alone (a partial run gives a partial, consistent write-up: sets not finished on every candidate are left out):

    jobs.csv, history.csv    one row per finished job; per epoch of the whole set's jobs
    sweep.csv                per size, proxy and metric: value, bootstrap CI, percentile among the draws
    defaults.csv             the pre-registered rule applied size by size (a development pool)
    confirmation.csv         the development pool's defaults confirmed or not (a held-out pool, --confirm)
    sweep.png                each metric against size, random's 5-95% band and the noise ceiling
    README.md                the tables, the ground truth's settling and ceiling, the cost, provenance

    python scripts/proxy_benchmark.py                 # run what is missing, then analyse
    python scripts/proxy_benchmark.py --analyse       # analyse what has finished so far
    python scripts/proxy_benchmark.py --config results/proxy-benchmark-comp/config.yaml \
        --confirm results/proxy-benchmark/defaults.csv  # a held-out pool
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from nasprune.analysis import write_readme
from nasprune.provenance import provenance
from nasprune.workflows import PipelineConfig
from studies.common import run_unless_analysing, study_parser
from studies.proxy_benchmark.writeup import analyse

DIR = Path("results/proxy-benchmark")


def main() -> None:
    ap = study_parser(__doc__, DIR / "config.yaml")
    ap.add_argument("--confirm", default=None, metavar="DEFAULTS_CSV",
                    help="a held-out pool: confirm the development pool's defaults (its defaults.csv) instead of "
                         "choosing defaults on this pool")
    args = ap.parse_args()
    if args.confirm and not Path(args.confirm).is_file():
        ap.error(f"--confirm {args.confirm}: no such file (the development pool's defaults.csv)")
    start = time.perf_counter()
    config = PipelineConfig.load(args.config)
    directory = Path(args.config).parent
    run_unless_analysing(config, directory, args, "scripts/proxy_benchmark.py")
    body, sweep = analyse(config, directory, args.n_boot, Path(args.confirm) if args.confirm else None)
    jobs = pd.read_csv(directory / "jobs.csv")
    # wall_seconds is this invocation's (only the analysis with --analyse); the jobs' summed wall time stays
    prov = provenance(time.perf_counter() - start, seeds=list(config.search.seeds),
                      proxy_seeds=list(config.search.proxy_seeds or config.search.seeds), analyse_only=args.analyse,
                      **({"confirmed_against": args.confirm} if args.confirm else {}),
                      jobs_wall_seconds=round(float(jobs["wall_seconds"].sum()), 1) if len(jobs) else 0.0)
    write_readme(directory / "README.md", f"Proxy benchmark: {config.name}", body, prov)
    print(f"{len(jobs)} jobs finished; {directory / 'README.md'} written"
          + (f"; {sweep['proxy'].nunique()} proxies compared" if len(sweep) else ""))


if __name__ == "__main__":
    main()
