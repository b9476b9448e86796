"""The ``nasprune`` command: a thin layer over the Python API.

Each subcommand has one ``_add_<name>(subparsers)`` function that declares its arguments and sets
``func``, the function that runs it.
"""

from __future__ import annotations

import argparse
import sys

from nasprune import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nasprune",
        description="Build proxy sets by dataset pruning and rank NAS candidates on them.",
    )
    parser.add_argument("--version", action="version", version=f"nasprune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_prune, _add_search, _add_report, _add_run):
        add(sub)
    return parser


# --- prune ---------------------------------------------------------------------------------------------------


def _add_prune(sub) -> None:
    p = sub.add_parser("prune", help="build a proxy set (scoring run + selection)",
                       description="Train the pruning network once (or reuse --scores) and select a proxy set.")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--root", default=None, help="dataset folder (default $NASPRUNE_DATA or ~/.cache/nasprune/data)")
    p.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    p.add_argument("--val-size", type=int, default=None)
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val split")
    p.add_argument("--train-size", type=int, default=None, help="keep a stratified subset of the training split")
    p.add_argument("--method", default="influence", help="influence or a baseline: " + ", ".join(_methods()))
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="seed of the selection")
    p.add_argument("--out", required=True, help="proxy file to write (JSON)")
    p.add_argument("--scores", default=None,
                   help="scoring-run file: reused if it exists, else written after the scoring run")
    p.add_argument("--scoring-spec", default=None, help="pruning network, e.g. w64-d3-relu-instancenorm-avgpooling")
    p.add_argument("--scoring-epochs", type=int, default=None)
    p.add_argument("--target", default=None, help="influence target: paper, scaled, classwise")
    p.add_argument("--l2", type=float, default=None, help="L2 of the last-layer refit")
    p.add_argument("--solver", default=None, choices=["swap", "anneal"])
    p.add_argument("--epsilon", type=float, default=None,
                   help="influence only: Eq. 3, prune as much as possible with ||sum pruned S|| <= EPSILON "
                        "(target paper; --per-class is then ignored)")
    p.add_argument("--time-limit", type=float, default=None, help="selection seconds (influence)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_run_prune)


def _methods() -> list[str]:
    from nasprune.prune import METHODS

    return list(METHODS)


def _run_prune(args) -> int:
    from dataclasses import replace
    from pathlib import Path

    from nasprune.data import load_dataset
    from nasprune.prune import InfluenceConfig, build_proxy
    from nasprune.scoring import ScoringConfig, ScoringRun, run_scoring

    if args.method not in _methods():
        raise ValueError(f"unknown method {args.method!r}; choose one of {', '.join(_methods())}")
    dataset = load_dataset(args.dataset, root=args.root, download=args.download, val_size=args.val_size,
                           seed=args.split_seed, train_size=args.train_size)
    if args.scores and Path(args.scores).exists():
        run = ScoringRun.load(args.scores, dataset)
        print(f"reusing scoring run {args.scores} ({run.config['spec']}, val acc {run.val_acc:.1f}%)")
    else:
        overrides = {k: v for k, v in {"spec": args.scoring_spec, "epochs": args.scoring_epochs}.items() if v}
        config = ScoringConfig(**overrides, device=args.device)
        print(f"scoring run: training {config.spec} for {config.epochs} epochs on {len(dataset.train_y)} images")
        run = run_scoring(dataset, config, progress=True)
        if args.scores:
            run.save(args.scores)
    influence = InfluenceConfig()
    changes = {"target": args.target, "l2": args.l2, "solver": args.solver, "time_limit": args.time_limit,
               "epsilon": args.epsilon}
    influence = replace(influence, **{k: v for k, v in changes.items() if v is not None})
    proxy = build_proxy(dataset, run, args.method, args.per_class, seed=args.seed, influence=influence)
    proxy.save(args.out)
    s = proxy.stats
    extra = f", objective {proxy.objective:.4g} (||T|| {s['t_norm']:.4g})" if proxy.objective is not None else ""
    print(f"{args.method}: kept {len(proxy)} of {len(dataset.train_y)} images "
          f"({min(proxy.per_class.values())}-{max(proxy.per_class.values())} per class){extra}; "
          f"pruning net acc on kept {s['pruning_net_acc_on_kept']:.1f}%; "
          f"selection {s['selection_seconds']:.1f}s -> {args.out}")
    return 0


# --- search --------------------------------------------------------------------------------------------------


def _add_search(sub) -> None:
    p = sub.add_parser(
        "search", help="train every candidate on every training set of an experiment (resumable)",
        description="Run the jobs of the experiment in DIR (DIR/experiment.json) that have not finished. "
                    "Rerun it to resume a killed run; run it on another machine with the same --storage URL "
                    "to join.")
    p.add_argument("--experiment", required=True, metavar="DIR", help="directory holding experiment.json")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes (default 1; 0 runs the jobs in this process)")
    p.add_argument("--storage", metavar="URL", help="Optuna RDB URL (default: the experiment's, else "
                   "the journal file DIR/optuna.journal)")
    p.add_argument("--threads", type=int, metavar="T", help="torch threads per worker (default cpus / N)")
    p.add_argument("--retry-failed", action="store_true", help="give jobs that used up their retries one more try")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_search)


def _search(args) -> int:
    from nasprune.runner import run_search

    try:
        s = run_search(args.experiment, workers=args.workers, storage=args.storage, threads=args.threads,
                       retry_failed=args.retry_failed, progress=not args.no_progress)
    except KeyboardInterrupt:
        print("nasprune search: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print(f"{s['complete']} of {s['total']} jobs complete, {s['failed']} failed, {s['unfinished']} unfinished")
    return 0 if not s["failed"] and not any(s["worker_exitcodes"]) else 1


# --- report --------------------------------------------------------------------------------------------------


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report", help="write jobs.csv, table1.csv/.md and plots for an experiment",
        description="Read the finished jobs of the experiment in DIR from its storage and write jobs.csv, "
                    "table1.csv, table1.md, proxy_vs_whole.png and table1.png into DIR.")
    p.add_argument("--experiment", required=True, metavar="DIR", help="directory holding experiment.json")
    p.add_argument("--storage", metavar="URL", help="Optuna RDB URL (default: the experiment's)")
    p.add_argument("--whole", default="whole", metavar="NAME", help="the training set the proxies are "
                   "compared with (default: whole)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.set_defaults(func=_report)


def _report(args) -> int:
    from nasprune.report import write_report

    paths = write_report(args.experiment, storage=args.storage, whole=args.whole, n_boot=args.bootstrap,
                         seed=args.seed)
    for path in paths.values():
        print(path)
    return 0


# --- run -----------------------------------------------------------------------------------------------------


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="the whole pipeline from one config: scoring, proxies, search, report",
                       description="Run every stage of CONFIG whose output is missing (a killed run resumes). "
                                   "CONFIG is a YAML file or a shipped config: quick, paper, fmnist-ref.")
    p.add_argument("config", help="YAML file or shipped config name")
    p.add_argument("--out", default=None, help="run directory (default runs/<name>)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: the config's)")
    p.add_argument("--storage", default=None, help="Optuna RDB URL shared by several machines")
    p.set_defaults(func=_run_run)


def _run_run(args) -> int:
    from nasprune.pipeline import PipelineConfig, run_pipeline

    config = PipelineConfig.load(args.config)
    out = args.out or f"runs/{config.name}"
    paths = run_pipeline(config, out, workers=args.workers, storage=args.storage)
    print(f"done: {paths['table1.md']}" if "table1.md" in paths else f"done: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"nasprune {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
