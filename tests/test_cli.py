"""The `nasprune` command: a parser that loads no torch, help and defaults everywhere, refusals with exit
code 2, and commands that need no (or a finished) search. `nasprune status` is tested in
tests/search/test_status.py."""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from nasprune import cli
from nasprune.cli import main
from nasprune.proxies import ProxySet
from nasprune.search import JOURNAL_FILE, load_jobs, prepare

CANDIDATES = ["w8-d1-relu-none-avgpooling", "w8-d1-relu-instancenorm-maxpooling"]
REPORT_FILES = ("jobs.csv", "table1.csv", "table1.md", "proxy_vs_whole.png", "table1.png")


# --- the parser -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_parser_and_usage_errors_load_no_torch():
    code = ("import sys, nasprune.cli as c\n"
            "c.build_parser().format_help()\n"
            "codes = [c.main([cmd, '--help']) for cmd in ('prune', 'search', 'status', 'report', 'run')]\n"
            "codes.append(c.main(['search', '--experiment', 'x', '--wrokers', '2']))\n"
            "heavy = [m for m in ('torch', 'pandas', 'optuna', 'numpy', 'nasprune.data') if m in sys.modules]\n"
            "print(codes, heavy, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "[0, 0, 0, 0, 0, 2] []", proc.stderr
    assert "unrecognized arguments: --wrokers 2" in proc.stderr


def _options(parser: argparse.ArgumentParser):
    """(command, action) for every argument of the parser and of each subcommand."""
    yield "nasprune", parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub


def test_every_option_has_help_and_its_default():
    checked = 0
    for command, parser in _options(cli.build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help and action.help.strip(), f"{command} {action.dest}: no help"
            if action.option_strings and not isinstance(action, argparse._VersionAction):
                shown = formatter._expand_help(action)
                assert "(default" in shown or action.required, f"{command} {action.option_strings}: {shown!r}"
            checked += 1
    assert checked > 30
    text = cli.build_parser()._subparsers._group_actions[0].choices["prune"].format_help()
    assert "images kept per class (default: 100)" in " ".join(text.split())


def test_help_names_the_library_defaults_and_choices():
    from nasprune.data import DATASETS
    from nasprune.proxies import InfluenceConfig, ObjectiveConfig
    from nasprune.proxies import ScoringConfig
    from nasprune.proxies.selection import TARGETS

    assert cli.TARGET_NAMES == tuple(TARGETS) and cli.DATASET_NAMES == tuple(DATASETS)
    prune = " ".join(cli.build_parser()._subparsers._group_actions[0].choices["prune"].format_help().split())
    s, i, o = ScoringConfig(), InfluenceConfig(), ObjectiveConfig()
    for fact in (f"ScoringConfig's, {s.spec})", f"ScoringConfig's train.epochs, {s.train.epochs})",
                 f"ObjectiveConfig's, {o.target})", f"InfluenceConfig's, {i.l2:.0e}".replace("e-0", "e-") + ")",
                 f"ObjectiveConfig's, {o.solver})", f"ObjectiveConfig's, {o.time_limit:g})"):
        assert fact in prune, fact


@pytest.mark.parametrize("argv, message", [
    (["prune", "--per-class", "0", "--out", "p.json"], "argument --per-class: must be an integer >= 1, got '0'"),
    (["prune", "--per-class", "ten", "--out", "p.json"], "argument --per-class: must be an integer >= 1, got 'ten'"),
    (["search", "--experiment", "x", "--workers", "-1"], "argument --workers: must be an integer >= 0, got '-1'"),
    (["report", "--experiment", "x", "--bootstrap", "0"], "argument --bootstrap: must be an integer >= 1, got '0'"),
])
def test_bad_numbers_are_refused_by_the_parser(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_quiet_optuna_unless_verbose(searched):
    try:
        for argv, level in ((["status"], optuna.logging.WARNING), (["-v", "status"], optuna.logging.INFO),
                            (["status", "--verbose"], optuna.logging.INFO),
                            (["report", "--bootstrap", "20"], optuna.logging.WARNING)):
            assert main([*argv, "--experiment", str(searched)]) == 0
            assert optuna.logging.get_verbosity() == level, argv
    finally:
        optuna.logging.set_verbosity(optuna.logging.INFO)


# --- experiments that are missing or have not run -----------------------------------------------------------------


@pytest.mark.parametrize("command", ["search", "status", "report"])
def test_missing_experiment_names_the_commands_that_make_one(command, tmp_path, capsys):
    for directory, extra in ((tmp_path / "missing", " (the directory does not exist)"), (tmp_path, "")):
        assert main([command, "--experiment", str(directory)]) == 2
        err = capsys.readouterr().err
        assert f"no experiment.json in {directory}{extra}; `nasprune {command}` needs one" in err
        assert f"`nasprune run CONFIG --out {directory}`" in err and "as in the README" in err
        assert "Experiment(" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["status", "report"])
def test_nothing_is_written_before_a_search(command, tmp_path, make_small_experiment, capsys):
    directory = make_small_experiment(tmp_path / "exp")
    before = sorted(p.name for p in directory.iterdir())
    assert main([command, "--experiment", str(directory)]) == 2
    assert f"no search has run in {directory}; start one with `nasprune search --experiment {directory}`" \
        in capsys.readouterr().err
    assert sorted(p.name for p in directory.iterdir()) == before and not (directory / JOURNAL_FILE).exists()


def test_search_refuses_an_unknown_first_set_before_writing(tmp_path, make_small_experiment, capsys):
    directory = make_small_experiment(tmp_path / "exp")
    assert main(["search", "--experiment", str(directory), "--workers", "0", "--first", "whole", "randm"]) == 2
    assert "no training set 'randm'; the experiment has ['random', 'whole']" in capsys.readouterr().err
    assert not (directory / JOURNAL_FILE).exists()


def test_report_after_a_search_with_no_finished_job_writes_nothing(tmp_path, make_small_experiment, capsys):
    directory = make_small_experiment(tmp_path / "exp")
    prepare(directory)  # studies and waiting jobs, none run
    assert main(["report", "--experiment", str(directory)]) == 2
    assert f"no finished jobs in {directory}" in capsys.readouterr().err
    assert not any((directory / f).exists() for f in REPORT_FILES)


# --- prune and run ---------------------------------------------------------------------------------------------


def test_prune_random_never_touches_a_scoring_run(tmp_path, monkeypatch, capsys):
    import nasprune.proxies
    from nasprune.proxies import _scoring

    def refuse(*args, **kwargs):
        raise AssertionError("random selection must not train or load a scoring run")

    for module, name in ((_scoring, "run_scoring"), (_scoring, "load_or_run"), (nasprune.proxies, "run_scoring"),
                         (nasprune.proxies, "load_or_run")):
        monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(_scoring.ScoringRun, "load", classmethod(refuse))
    garbage = tmp_path / "scores.pt"
    garbage.write_bytes(b"not a scoring run")
    out = tmp_path / "random.json"
    assert main(["prune", "--dataset", "synthetic", "--method", "random", "--per-class", "7", "--scores",
                 str(garbage), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "random needs no scoring run" in text and "scoring run: training" not in text
    proxy = ProxySet.load(out)
    assert len(proxy) == 28 and set(proxy.per_class.values()) == {7}
    assert main(["prune", "--dataset", "synthetic", "--method", "magic", "--out", str(tmp_path / "m.json")]) == 2
    assert "unknown method 'magic'; choose one of influence, random" in capsys.readouterr().err


@pytest.mark.slow
def test_run_ends_with_the_search_summary(tmp_path, capsys):
    config = {"name": "run-summary", "dataset": {"name": "synthetic"},
              "scoring": {"spec": "w8-d1-relu-batchnorm-avgpooling", "bottleneck": 8, "score_epoch": 1,
                          "train": {"epochs": 1}},
              "proxies": {"per_class": 10, "sets": [{"name": "random", "method": "random"}]},
              "search": {"candidates": CANDIDATES, "seeds": [0], "workers": 0,
                         "proxy_train": {"epochs": 1}, "whole_train": {"epochs": 1}}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--first", "randm"]) == 2
    assert "search.first[0]: no training set 'randm'; choose 'whole' or a proxy's name: random" \
        in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--first", "random"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == "4 of 4 jobs complete, 0 failed, 0 unfinished"
    assert out[-1] == f"done: {tmp_path / 'out' / 'table1.md'}"
    assert (tmp_path / "out" / "table1.md").read_text().startswith("# Table 1: run-summary\n")
    assert json.loads((tmp_path / "out" / "experiment.json").read_text())["name"] == "run-summary"
    jobs = load_jobs(tmp_path / "out").sort_values("started")  # --first random: the proxy's jobs before the whole's
    assert list(jobs.training_set) == ["random", "random", "whole", "whole"]


# --- inputs checked before the expensive work; one line for every error; exit codes that tell the truth -----------


def test_prune_checks_the_quota_and_the_output_before_any_training(tmp_path, monkeypatch, read_only_dir, capsys):
    """An impossible quota or an unwritable --out is refused in one line before the scoring run starts (which used to
    train for minutes first); nothing is written to the scoring-run cache."""
    monkeypatch.setenv("NASPRUNE_DATA", str(tmp_path / "data"))
    argv = ["prune", "--dataset", "synthetic", "--method", "influence", "--scoring-spec", "w8-d1-relu-none-avgpooling"]
    assert main([*argv, "--per-class", "100000", "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "asks for 100000 examples of class 0, which has only 250" in err
    locked = read_only_dir()
    assert main([*argv, "--per-class", "5", "--out", str(locked / "p.json")]) == 2
    err = capsys.readouterr().err
    assert err == f"nasprune prune: error: cannot write {locked / 'p.json'}: " \
                  f"{'Read-only file system' if os.geteuid() == 0 else 'Permission denied'}\n"
    assert not (tmp_path / "data" / "scoring").exists() and not (tmp_path / "p.json").exists()


@pytest.mark.slow
def test_prune_keeps_its_scoring_run_in_the_data_cache_and_reuses_it(tmp_path, monkeypatch, capsys):
    """Without --scores the scoring run is kept in $NASPRUNE_DATA/scoring/, named by its data and settings, so the
    next proxy of the same data and settings trains nothing; other settings get a run of their own."""
    monkeypatch.setenv("NASPRUNE_DATA", str(tmp_path / "data"))
    argv = ["prune", "--dataset", "synthetic", "--method", "herding", "--per-class", "5", "--scoring-spec",
            "w8-d1-relu-none-avgpooling", "--scoring-epochs", "2"]
    assert main([*argv, "--out", str(tmp_path / "a.json")]) == 0
    first = capsys.readouterr().out
    kept = list((tmp_path / "data" / "scoring").glob("synthetic-*.pt"))
    assert len(kept) == 1 and f"kept in {kept[0]}" in first
    assert main([*argv, "--out", str(tmp_path / "b.json")]) == 0
    assert f"reusing scoring run {kept[0]}" in capsys.readouterr().out
    assert ProxySet.load(tmp_path / "a.json").indices.tolist() == ProxySet.load(tmp_path / "b.json").indices.tolist()
    assert main([*argv[:-1], "3", "--out", str(tmp_path / "c.json")]) == 0  # three epochs: another run
    assert len(list((tmp_path / "data" / "scoring").glob("synthetic-*.pt"))) == 2


@pytest.mark.slow
def test_ctrl_c_during_a_scoring_run_is_one_line_and_exit_130_and_the_run_resumes(tmp_path, child_env):
    env = {**child_env, "NASPRUNE_DATA": str(tmp_path / "data")}
    cmd = [sys.executable, "-m", "nasprune.cli", "prune", "--dataset", "synthetic", "--method", "herding",
           "--per-class", "5", "--scoring-spec", "w16-d2-relu-none-avgpooling", "--scoring-epochs", "40",
           "--out", str(tmp_path / "p.json")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "data").rglob("*.pt.ckpt")):
        time.sleep(0.2)
    checkpoint = list((tmp_path / "data").rglob("*.pt.ckpt"))
    assert checkpoint, "the scoring run should have saved a checkpoint"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "nasprune prune: interrupted; run the same command again to resume"
    assert "Traceback" not in err and checkpoint[0].exists()


def test_a_key_given_twice_in_experiment_json_is_refused_by_name(tmp_path, make_small_experiment, capsys):
    """JSON keeps the last copy of a repeated key; an experiment.json that repeats a training set's name is refused
    instead of run on half of what it says."""
    directory = make_small_experiment(tmp_path / "exp")
    text = (directory / "experiment.json").read_text()
    doubled = text.replace('"training_sets": {', '"training_sets": {\n    "whole": {"proxy": null},', 1)
    (directory / "experiment.json").write_text(doubled)
    assert main(["search", "--experiment", str(directory), "--workers", "0", "--no-progress"]) == 2
    assert capsys.readouterr().err == (f"nasprune search: error: {directory / 'experiment.json'}: the key 'whole' "
                                       "appears twice in one object (JSON would keep only the last); keep one\n")
    assert not (directory / JOURNAL_FILE).exists()


@pytest.mark.parametrize("command", ["search", "report", "run"])
def test_a_read_only_folder_is_one_line_naming_the_path_and_exit_2(command, tmp_path, searched, read_only_dir,
                                                                   capsys):
    if command == "run":
        config = tmp_path / "cfg.yaml"
        config.write_text(yaml.safe_dump({"name": "ro", "dataset": {"name": "synthetic"},
                                          "proxies": {"per_class": 5, "methods": ["random"]},
                                          "search": {"candidates": CANDIDATES[:1], "workers": 0}}))
        folder = read_only_dir()
        argv, target = ["run", str(config), "--out", str(folder / "out")], folder / "out"
    else:
        folder = read_only_dir(lambda d: shutil.copytree(searched, d / "exp"))
        argv, target = [command, "--experiment", str(folder / "exp")], folder / "exp"
        argv += ["--workers", "0", "--no-progress"] if command == "search" else []
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nasprune {command}: error: cannot write {target}") and err.count("\n") == 1
    assert err.rstrip().endswith("Read-only file system" if os.geteuid() == 0 else "Permission denied")


@pytest.mark.slow
def test_status_into_a_closed_pipe_exits_quietly(searched, child_env):
    """`nasprune status DIR | head -1`: the reader has gone when status writes; no traceback, the exit status of a
    process SIGPIPE ended."""
    proc = subprocess.Popen([sys.executable, "-m", "nasprune.cli", "status", "--experiment", str(searched)],
                            env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # long before it writes: the import alone takes a second
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGPIPE and err == b""


def test_a_search_whose_jobs_all_finished_succeeds_despite_a_lost_worker(tmp_path, monkeypatch, capsys):
    """When every job finished (the other workers took over a killed worker's), the search succeeds and the lost
    worker is a warning; with jobs left it fails and says to run again."""
    import nasprune.search

    summary = {"total": 12, "complete": 12, "failed": 0, "unfinished": 0, "worker_exitcodes": [-9, 0]}
    monkeypatch.setattr(nasprune.search, "run_search", lambda *args, **kwargs: summary)
    (tmp_path / "experiment.json").write_text("{}")
    assert main(["search", "--experiment", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "12 of 12 jobs complete, 0 failed, 0 unfinished\n"
    summary.update(complete=10, unfinished=2)
    assert main(["search", "--experiment", str(tmp_path)]) == 1


@pytest.mark.slow
def test_a_sigkilled_worker_whose_jobs_the_other_finishes_is_a_warning_not_a_failure(tmp_path, make_small_experiment,
                                                                                   child_env):
    directory = make_small_experiment(tmp_path / "exp")
    exp = json.loads((directory / "experiment.json").read_text())
    exp["training_sets"]["random"]["train"]["epochs"] = exp["training_sets"]["whole"]["train"]["epochs"] = 15
    exp["seeds"] = [0, 1, 2]
    (directory / "experiment.json").write_text(json.dumps(exp))
    proc = subprocess.Popen([sys.executable, "-m", "nasprune.cli", "search", "--experiment", str(directory),
                             "--workers", "2", "--no-progress"], env=child_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    workers = []
    while time.time() < deadline and len(workers) < 2:  # the spawned workers, not multiprocessing's resource tracker
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        workers = [int(p) for p in children if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        time.sleep(0.1)
    while time.time() < deadline and not ((directory / JOURNAL_FILE).exists()
                                          and re.search(r'"state": ?1\b', (directory / JOURNAL_FILE).read_text())):
        time.sleep(0.1)  # a job has completed (TrialState.COMPLETE is 1): both workers are running jobs
    os.kill(max(workers), signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert out.splitlines()[-1] == "18 of 18 jobs complete, 0 failed, 0 unfinished"
    assert "the other workers finished every job" in err and "run the search again" not in err
