"""The ``nasprune`` command: a thin layer over the Python API.

Each subcommand has one ``_add_<name>(subparsers, common)`` function that declares its arguments and
sets ``func``, the function that runs it; ``common`` holds the options every command takes (-v).
Building the parser imports nothing heavy (no torch, pandas or optuna), so ``nasprune --help`` and a
mistyped flag answer at once; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

from nasprune import __version__
from nasprune.configs import shipped

#: ``nasprune.proxies.selection.TARGETS``, spelled out so that the parser needs no torch (tests/test_cli.py checks it).
#: Methods are not: the selection registry (``nasprune.proxies.selection.METHODS``) is open, so ``prune`` checks the
#: name when it runs, before loading any data.
TARGET_NAMES = ("paper", "scaled", "classwise")
#: ``nasprune.data.DATASETS``, likewise.
DATASET_NAMES = ("fashion-mnist", "mnist", "cifar10", "cifar100", "synthetic")


class _Formatter(argparse.HelpFormatter):
    """Appends each option's default to its help: "(default: X)", or "(default: off)" for a flag.
    An option whose default is None says what that means in its own help text."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or not action.option_strings or action.default in (None, argparse.SUPPRESS):
            return text
        if action.nargs == 0 and action.default is False:  # store_true
            return f"{text} (default: off)"
        return f"{text} (default: %(default)s)"


def _at_least(low: int):
    """An argparse type: an int >= ``low``; anything else is refused with exit code 2, naming the option."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show Optuna's and nasprune's info logs (default: off)")
    parser = argparse.ArgumentParser(
        prog="nasprune", formatter_class=_Formatter,
        description="Build proxy sets by dataset pruning and rank NAS candidates on them.")
    parser.add_argument("--version", action="version", version=f"nasprune {__version__}",
                        help="print the version and exit")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show Optuna's and nasprune's info logs (default: off)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_prune, _add_search, _add_status, _add_report, _add_compare, _add_run):
        add(sub, common)
    return parser


def _subparser(sub, common, name: str, **kwargs) -> argparse.ArgumentParser:
    return sub.add_parser(name, parents=[common], formatter_class=_Formatter, **kwargs)


# --- prune ---------------------------------------------------------------------------------------------------


def _experiment_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, metavar="DIR", help="directory holding experiment.json (required)")


def _storage_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", metavar="URL", help="Optuna RDB URL (default: the experiment's, else "
                   "the journal file DIR/optuna.journal)")


def _add_prune(sub, common) -> None:
    p = _subparser(sub, common, "prune", help="build a proxy set (scoring run + selection)",
                   description="Train the pruning network once (or reuse --scores) and select a proxy set. "
                               "The scoring run takes about 7.5 minutes on a 2-core CPU for Fashion-MNIST; "
                               "--method random needs none.")
    p.add_argument("--dataset", default="fashion-mnist", choices=DATASET_NAMES, help="dataset to prune")
    p.add_argument("--root", default=None,
                   help="dataset folder (default: $NASPRUNE_DATA, else ~/.cache/nasprune/data)")
    p.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    p.add_argument("--val-size", type=_at_least(1), default=None,
                   help="validation images carved from the training set (default: 10000 for the MNIST family, "
                        "5000 for CIFAR)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val split")
    p.add_argument("--train-size", type=_at_least(1), default=None,
                   help="keep a stratified subset of the training split (default: all of it)")
    p.add_argument("--method", default="influence", metavar="METHOD",
                   help="a selection method of nasprune.proxies.selection: influence (ours), random, herding, kcenter, "
                        "forgetting, grand, el2n, ... (an unknown name is answered with the full list)")
    p.add_argument("--per-class", type=_at_least(1), default=100, metavar="K", help="images kept per class")
    p.add_argument("--seed", type=int, default=0, help="seed of the selection")
    p.add_argument("--out", required=True, metavar="FILE", help="proxy file to write (JSON; required)")
    p.add_argument("--scores", default=None, metavar="FILE",
                   help="scoring-run file: reused if it exists, else written after the scoring run (default: kept in "
                        "the data cache, $NASPRUNE_DATA/scoring/, named by the data and the settings)")
    p.add_argument("--scoring-spec", default=None, metavar="SPEC",
                   help="pruning network (default: ScoringConfig's, w64-d3-relu-instancenorm-avgpooling)")
    p.add_argument("--scoring-epochs", type=_at_least(1), default=None, metavar="E",
                   help="epochs of the scoring run (default: ScoringConfig's train.epochs, 6)")
    p.add_argument("--target", default=None, choices=TARGET_NAMES,
                   help="influence target (default: ObjectiveConfig's, scaled)")
    p.add_argument("--l2", type=_positive_float, default=None,
                   help="L2 of the last-layer refit (default: InfluenceConfig's, 1e-5)")
    p.add_argument("--solver", default=None, choices=["swap", "anneal"],
                   help="influence selection solver (default: ObjectiveConfig's, swap)")
    p.add_argument("--epsilon", type=float, default=None,
                   help="influence only: Eq. 3, prune as much as possible with ||sum pruned S|| <= EPSILON "
                        "(target paper; --per-class is then ignored) (default: unset, per-class quotas)")
    p.add_argument("--time-limit", type=_positive_float, default=None, metavar="SECONDS",
                   help="selection seconds, influence only (default: ObjectiveConfig's, 60)")
    p.add_argument("--device", default="auto", help="torch device of the scoring run: auto, cpu, cuda, ...")
    p.set_defaults(func=_run_prune)


def _run_prune(args) -> int:
    from dataclasses import replace

    from nasprune.artifacts import check_writable
    from nasprune.data import load_dataset
    from nasprune.proxies import (InfluenceConfig, ObjectiveConfig, build_proxy, check_selection,
                                  needs_scoring_run)
    from nasprune.proxies.selection import get_method
    from nasprune.search import exit_on_interrupt

    get_method(args.method)  # an unknown method is refused before the data is loaded
    influence = InfluenceConfig() if args.l2 is None else InfluenceConfig(l2=args.l2)
    changes = {"target": args.target, "solver": args.solver, "time_limit": args.time_limit, "epsilon": args.epsilon}
    objective = replace(ObjectiveConfig(), **{k: v for k, v in changes.items() if v is not None})
    check_writable(args.out)
    dataset = load_dataset(args.dataset, root=args.root, download=args.download, val_size=args.val_size,
                           seed=args.split_seed, train_size=args.train_size)
    check_selection(dataset, args.method, 1 if args.epsilon is not None else args.per_class)  # before any training
    run = None
    if not needs_scoring_run(args.method):
        if args.scores:
            print(f"{args.method} needs no scoring run; --scores {args.scores} is not used")
    else:
        with exit_on_interrupt("nasprune prune"):
            run = _scoring_run(args, dataset)
    proxy = build_proxy(dataset, run, args.method, args.per_class, seed=args.seed, influence=influence,
                        objective=objective)
    proxy.save(args.out)
    s = proxy.stats
    extra = f", objective {proxy.objective:.4g} (||T|| {s['t_norm']:.4g})" if proxy.objective is not None else ""
    if s.get("pruning_net_acc_on_kept") is not None:
        extra += f"; pruning net acc on kept {s['pruning_net_acc_on_kept']:.1f}%"
    print(f"{args.method}: kept {len(proxy)} of {len(dataset.train_y)} images "
          f"({min(proxy.per_class.values())}-{max(proxy.per_class.values())} per class){extra}; "
          f"selection {s['selection_seconds']:.1f}s -> {args.out}")
    return 0


def _scoring_run(args, dataset):
    """The scoring run ``prune`` selects from: ``--scores`` when it exists, else one trained and kept there, or in the
    data cache (:func:`nasprune.proxies.cache_path`) without ``--scores``, so that no run is thrown away and a
    killed one resumes from its checkpoint."""
    from dataclasses import replace

    from nasprune.artifacts import check_writable
    from nasprune.proxies import ScoringConfig, cache_path, load_or_run

    spec = {} if args.scoring_spec is None else {"spec": args.scoring_spec}
    epochs = {} if args.scoring_epochs is None else {"epochs": args.scoring_epochs}
    config = ScoringConfig(**spec, train=replace(ScoringConfig().train, **epochs, device=args.device))
    path = Path(args.scores) if args.scores else cache_path(dataset, config)
    reuse = path.exists()
    if reuse and args.scores and not (spec or epochs):
        config = None  # a file named by the user is taken as it is
    if not reuse:
        check_writable(path)
        print(f"scoring run: training {config.spec} for {config.train.epochs} epochs on {len(dataset.train_y)} "
              f"images, kept in {path} (checkpointed every epoch: a killed run resumes)")
    run, _ = load_or_run(path, dataset, config, progress=True)
    if reuse:
        print(f"reusing scoring run {path} ({run.config['spec']}, val acc {run.val_acc:.1f}%)")
    return run


# --- search --------------------------------------------------------------------------------------------------


def _add_search(sub, common) -> None:
    p = _subparser(
        sub, common, "search", help="train every candidate on every training set of an experiment (resumable)",
        description="Run the jobs of the experiment in DIR (DIR/experiment.json) that have not finished. "
                    "Rerun it to resume a killed run; run it on another machine with the same --storage URL "
                    "to join.")
    _experiment_argument(p)
    p.add_argument("--workers", type=_at_least(0), default=1, metavar="N",
                   help="worker processes; 0 runs the jobs in this process")
    _storage_argument(p)
    p.add_argument("--threads", type=_at_least(1), metavar="T", help="torch threads per worker (default: cpus / N)")
    p.add_argument("--retry-failed", action="store_true", help="give jobs that used up their retries one more try")
    p.add_argument("--fuse", type=_at_least(1), default=1, metavar="K",
                   help="train up to K jobs of one candidate (one training config and training-set size: "
                        "other proxies, seeds) as one fused network; fusion measured slower on CPU "
                        "(scripts/bench_fused.py); try --fuse 16 on a GPU")
    p.add_argument("--first", nargs="+", default=[], metavar="SET",
                   help="run these training sets' jobs (every seed) before any other's, e.g. --first whole "
                        "(default: none, jobs run seed by seed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_search)


def _search(args) -> int:
    from nasprune.search import exit_on_interrupt, run_search

    directory = _experiment_dir(args.experiment, "search")
    with exit_on_interrupt("nasprune search"):
        s = run_search(directory, workers=args.workers, storage=args.storage, threads=args.threads,
                       retry_failed=args.retry_failed, progress=not args.no_progress, fuse=args.fuse,
                       first=args.first)
    print(summary_line(s))
    return exit_status(s)


def summary_line(s: dict) -> str:
    """The line ``search`` and ``run`` end with, from a summary dict (total, complete, failed, unfinished)."""
    return f"{s['complete']} of {s['total']} jobs complete, {s['failed']} failed, {s['unfinished']} unfinished"


def exit_status(s: dict | None) -> int:
    """0 when every job of a search's summary finished (a worker lost on the way, whose jobs the others took over, is
    only a warning line), else 1: run the search again to resume (unfinished) or see ``nasprune status`` (failed).
    None (no search ran) is 0."""
    return 0 if s is None or (not s["failed"] and not s["unfinished"]) else 1


def _experiment_dir(path: str, command: str) -> Path:
    """``path`` if it holds an experiment.json; else an error that names the commands that make one."""
    from nasprune.search import EXPERIMENT_FILE

    directory = Path(path)
    if not (directory / EXPERIMENT_FILE).is_file():
        missing = "" if directory.is_dir() else " (the directory does not exist)"
        raise FileNotFoundError(
            f"no {EXPERIMENT_FILE} in {directory}{missing}; `nasprune {command}` needs one: create it with "
            f"`nasprune run CONFIG --out {directory}`, or write {directory}/{EXPERIMENT_FILE} as in the README")
    return directory


def _searched(directory: Path, storage: str | None, command: str) -> bool:
    """Whether a search has run in ``directory`` (checked without creating a journal); says so if not."""
    from nasprune.analysis import search_has_run

    if search_has_run(directory, storage):
        return True
    print(f"nasprune {command}: no search has run in {directory}; start one with "
          f"`nasprune search --experiment {directory}`", file=sys.stderr)
    return False


# --- status --------------------------------------------------------------------------------------------------


def _add_status(sub, common) -> None:
    p = _subparser(
        sub, common, "status", help="jobs per training set (done, running, failed, waiting) and the time left",
        description="Count the jobs of the experiment in DIR by state, per training set, and estimate the "
                    "time left: each unfinished job (waiting or running) is taken to last as long as the "
                    "mean wall time of the finished jobs of its training set; when its set has none yet, its "
                    "SGD steps times the seconds per step of the finished jobs, whatever set they trained on "
                    "(else the mean of all finished jobs). Their sum is divided by the number of worker processes "
                    "running jobs now (a fused group is one worker; with none running: the work left for one). "
                    "Safe to run while a search runs, on any machine with the same --storage.")
    _experiment_argument(p)
    _storage_argument(p)
    p.set_defaults(func=_status)


def _status(args) -> int:
    directory = _experiment_dir(args.experiment, "status")
    if not _searched(directory, args.storage, "status"):
        return 2
    from nasprune.analysis import experiment_name
    from nasprune.search import format_duration, search_status, time_left

    table, workers = search_status(directory, args.storage)
    total = table[["done", "running", "failed", "waiting"]].sum()
    print(f"{experiment_name(directory)} ({directory}): {int(total['done'])} of {int(total.sum())} jobs done, "
          f"{int(total['running'])} running, {int(total['failed'])} failed, {int(total['waiting'])} waiting")
    header = ["training set", "done", "running", "failed", "waiting", "mean job", "work left"]
    rows = [[ts, *(str(int(r[c])) for c in ("done", "running", "failed", "waiting")),
             "-" if r["mean_job_seconds"] != r["mean_job_seconds"] else f"{r['mean_job_seconds']:.1f} s",
             format_duration(r["left_seconds"])] for ts, r in table.iterrows()]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join([row[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(row[1:], widths[1:]))]))
    print(f"time left: {time_left(table, workers, directory)}")
    if _ran_a_schedule(directory):
        from nasprune.workflows import LiveSource, PipelineConfig

        config = PipelineConfig.load(directory / "pipeline.yaml")
        print("schedule:\n" + "\n".join(f"  {line}" for line in LiveSource(config, directory,
                                                                              storage=args.storage).rung_states()))
    return 0


# --- report --------------------------------------------------------------------------------------------------


def _add_report(sub, common) -> None:
    p = _subparser(
        sub, common, "report", help="write jobs.csv, table1.csv/.md and plots for an experiment",
        description="Read the finished jobs of the experiment in DIR from its storage, write jobs.csv, "
                    "table1.csv, table1.md, proxy_vs_whole.png and table1.png into DIR, and print Table 1's "
                    "summary, one line per training set. Writes nothing when no job has finished.")
    _experiment_argument(p)
    _storage_argument(p)
    p.add_argument("--whole", default="whole", metavar="NAME",
                   help="the training set the proxies are compared with")
    p.add_argument("--bootstrap", type=_at_least(1), default=1000, metavar="B", help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.set_defaults(func=_report)


def _report(args) -> int:
    directory = _experiment_dir(args.experiment, "report")
    if not _searched(directory, args.storage, "report"):
        return 2
    if _ran_a_schedule(directory):
        print(f"nasprune report: {directory} ran a schedule (search.schedule), which has no Table 1: its report is "
              f"{directory / 'schedule.md'}; `nasprune run CONFIG --out {directory}` rewrites it", file=sys.stderr)
        return 2
    import pandas as pd

    from nasprune.analysis import table1_summary, write_report

    paths = write_report(directory, storage=args.storage, whole=args.whole, n_boot=args.bootstrap, seed=args.seed)
    print("\n".join(table1_summary(pd.read_csv(paths["table1.csv"]))))
    print(f"\nwritten: {', '.join(str(p) for p in paths.values())}")
    return 0


def _ran_a_schedule(directory: Path) -> bool:
    """Whether ``nasprune run`` ran a schedule in ``directory`` (its recorded config has ``search.schedule``)."""
    import yaml

    recorded = directory / "pipeline.yaml"
    if not recorded.exists():
        return False
    with contextlib.suppress(yaml.YAMLError, AttributeError):
        return bool(yaml.safe_load(recorded.read_text()).get("search", {}).get("schedule"))
    return False


# --- compare -------------------------------------------------------------------------------------------------


def _add_compare(sub, common) -> None:
    p = _subparser(
        sub, common, "compare", help="how a proxy ranks the candidates compared with N random proxies of its size",
        description="Add N random proxies with the proxy's per-class counts (seeds 0..N-1, DIR/proxies/"
                    "random-d<i>.json) to the experiment in DIR as training sets trained like the proxy, run "
                    "the jobs not done yet (finished ones are kept), then print each metric of the proxy with its "
                    "bootstrap interval, its percentile among the draws, how many draws are as good, and the noise "
                    "ceiling (the whole set against itself across seeds), and write DIR/compare.png. Costs N times "
                    "the proxy's own search.")
    _experiment_argument(p)
    p.add_argument("--random-draws", type=_at_least(1), default=20, metavar="N",
                   help="random proxies to compare with (20 or more for a 5-95%% band)")
    p.add_argument("--proxy", default=None, metavar="NAME",
                   help="the proxy's training set (default: the experiment's only proxy that is not a random draw)")
    p.add_argument("--whole", default="whole", metavar="NAME", help="the whole training set's name")
    p.add_argument("--workers", type=_at_least(0), default=1, metavar="N",
                   help="worker processes of the search; 0 runs the jobs in this process")
    _storage_argument(p)
    p.add_argument("--fuse", type=_at_least(1), default=1, metavar="K",
                   help="train up to K jobs of one candidate as one fused network, as `nasprune search --fuse`")
    p.add_argument("--no-search", action="store_true",
                   help="train nothing: the draws are added to the experiment, and only finished jobs are read "
                        "(draws not finished on every candidate are left out)")
    p.add_argument("--bootstrap", type=_at_least(1), default=1000, metavar="B", help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (the draws' seeds are 0..N-1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_compare)


def _compare(args) -> int:
    directory = _experiment_dir(args.experiment, "compare")
    if args.no_search and not _searched(directory, args.storage, "compare"):
        return 2
    from nasprune.search import exit_on_interrupt
    from nasprune.workflows import compare_with_random

    with exit_on_interrupt("nasprune compare"):
        result = compare_with_random(directory, args.proxy, args.random_draws, whole=args.whole,
                                     search=not args.no_search, workers=args.workers, storage=args.storage,
                                     fuse=args.fuse, progress=not args.no_progress, n_boot=args.bootstrap,
                                     seed=args.seed)
    print(result.text())
    return exit_status(result.search)


# --- run -----------------------------------------------------------------------------------------------------


def _add_run(sub, common) -> None:
    p = _subparser(sub, common, "run", help="the whole pipeline from one config: scoring, proxies, search, report",
                   description="Run every stage of CONFIG whose output is missing (a killed run resumes). "
                               "CONFIG is a YAML file or a shipped config: "
                               + ", ".join(shipped())
                               + ".")
    p.add_argument("config", help="YAML file or shipped config name")
    p.add_argument("--out", default=None, metavar="DIR", help="run directory (default: runs/<the config's name>)")
    p.add_argument("--workers", type=_at_least(0), default=None, metavar="N",
                   help="worker processes (default: the config's search.workers)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna RDB URL shared by several machines (default: the config's, else the journal "
                        "file DIR/optuna.journal)")
    p.add_argument("--fuse", type=_at_least(1), default=None, metavar="K",
                   help="train up to K jobs of one candidate (one training config and training-set size: "
                        "other proxies, seeds) as one fused network; fusion measured slower on CPU "
                        "(scripts/bench_fused.py); try --fuse 16 on a GPU (default: the config's search.fuse, 1)")
    p.add_argument("--first", nargs="+", default=None, metavar="SET",
                   help="run these training sets' jobs (every seed) before any other's: 'whole' or a proxies.sets "
                        "name, which brings all its draws (default: the config's search.first)")
    p.set_defaults(func=_run_run)


def _run_run(args) -> int:
    from nasprune.search import exit_on_interrupt
    from nasprune.workflows import PipelineConfig, run_pipeline

    config = PipelineConfig.load(args.config)
    if args.first is not None:  # a schedule, not part of the experiment: the finished jobs stay valid
        config = replace(config, search=replace(config.search, first=tuple(args.first)))
    out = Path(args.out or f"runs/{config.name}")
    with exit_on_interrupt("nasprune run"):
        result = run_pipeline(config, out, workers=args.workers, storage=args.storage, fuse=args.fuse)
    s = result.summary
    print(summary_line(s))
    if result.schedule is not None:
        print(f"chosen: {result.schedule.chosen}")
    done = result.report.get("table1.md") or result.report.get("schedule.md") or out
    print(f"done: {done}")
    return exit_status(s)


# --- main ----------------------------------------------------------------------------------------------------


def _quiet(verbose: bool) -> None:
    """Warnings only, unless -v: Optuna logs a line per study created, which buries the progress bar."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(name)s: %(message)s")
    logging.getLogger("nasprune").setLevel(level)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error argparse has printed (exit code 2)
        return e.code if isinstance(e.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 0
    if args.command != "prune":
        _quiet(args.verbose)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit: a reader gone by now is a BrokenPipeError caught below
        return code
    except BrokenPipeError:  # the reader went away (`nasprune status | head -1`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 128 + signal.SIGPIPE
    except (ValueError, OSError) as e:  # our errors are ValueErrors; OSError: a file the system refuses
        print(f"nasprune {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2


def _one_line(error: Exception) -> str:
    """An error as one line: an OSError about a file as "cannot write PATH: the system's reason"."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        verb = "cannot write" if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC) else "cannot use"
        return f"{verb} {error.filename}: {error.strerror}"
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
