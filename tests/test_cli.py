"""The `nasprune` command: a parser that loads no torch, help and defaults everywhere, refusals with exit
code 2, `status`, and commands that need no (or a finished) search."""

import argparse
import dataclasses
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from nasprune import cli
from nasprune.cli import main
from nasprune.proxy import ProxySet
from nasprune.train import TrainConfig
from nasprune.runner import JOURNAL_FILE, Experiment, job_status, load_jobs, prepare, run_search

CANDIDATES = ["w8-d1-relu-none-avgpooling", "w8-d1-relu-instancenorm-maxpooling", "w8-d1-sigmoid-batchnorm-maxpooling"]
REPORT_FILES = ("jobs.csv", "table1.csv", "table1.md", "proxy_vs_whole.png", "table1.png")


def make_experiment(directory: Path, dataset, name: str = "cli-test") -> Path:
    """A random 200-image proxy and the whole synthetic split, 3 candidates, one seed, one epoch."""
    directory.mkdir(parents=True, exist_ok=True)
    ProxySet.from_selection(dataset, np.arange(0, 1000, 5), "random").save(directory / "random.json")
    Experiment(name=name, dataset={"name": "synthetic"}, candidates=CANDIDATES,
               training_sets={"random": {"proxy": "random.json", "train": {"epochs": 1}},
                              "whole": {"proxy": None, "train": {"epochs": 1}}}).save(directory)
    return directory


@pytest.fixture(scope="module")
def searched(tmp_path_factory, synthetic) -> Path:
    """An experiment whose 6 jobs have all finished."""
    directory = make_experiment(tmp_path_factory.mktemp("searched") / "exp", synthetic)
    run_search(directory, workers=0, progress=False)
    return directory


# --- the parser -------------------------------------------------------------------------------------------------


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
    from nasprune.prune import InfluenceConfig, ObjectiveConfig
    from nasprune.scoring import ScoringConfig
    from nasprune.selection import TARGETS

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
def test_nothing_is_written_before_a_search(command, tmp_path, synthetic, capsys):
    directory = make_experiment(tmp_path / "exp", synthetic)
    before = sorted(p.name for p in directory.iterdir())
    assert main([command, "--experiment", str(directory)]) == 2
    assert f"no search has run in {directory}; start one with `nasprune search --experiment {directory}`" \
        in capsys.readouterr().err
    assert sorted(p.name for p in directory.iterdir()) == before and not (directory / JOURNAL_FILE).exists()


def test_search_refuses_an_unknown_first_set_before_writing(tmp_path, synthetic, capsys):
    directory = make_experiment(tmp_path / "exp", synthetic)
    assert main(["search", "--experiment", str(directory), "--workers", "0", "--first", "whole", "randm"]) == 2
    assert "no training set 'randm'; the experiment has ['random', 'whole']" in capsys.readouterr().err
    assert not (directory / JOURNAL_FILE).exists()


def test_report_after_a_search_with_no_finished_job_writes_nothing(tmp_path, synthetic, capsys):
    directory = make_experiment(tmp_path / "exp", synthetic)
    prepare(directory)  # studies and waiting jobs, none run
    assert main(["report", "--experiment", str(directory)]) == 2
    assert f"no finished jobs in {directory}" in capsys.readouterr().err
    assert not any((directory / f).exists() for f in REPORT_FILES)


# --- status --------------------------------------------------------------------------------------------------


def test_status_of_a_finished_search(searched, capsys):
    assert main(["status", "--experiment", str(searched)]) == 0
    out = capsys.readouterr().out
    assert "cli-test (" in out and "6 of 6 jobs done, 0 running, 0 failed, 0 waiting" in out
    assert re.split(r"\s{2,}", out.splitlines()[1]) == ["training set", "done", "running", "failed", "waiting",
                                                        "mean job", "work left"]
    rows = {cells[0]: cells for cells in (re.split(r"\s{2,}", line) for line in out.splitlines()[2:4])}
    assert rows["random"][1:5] == ["3", "0", "0", "0"] and rows["whole"][1:5] == ["3", "0", "0", "0"]
    assert rows["whole"][6] == "0 s"
    assert "time left: none, every job has finished or failed" in out


def test_status_counts_new_training_sets_and_estimates_time_left(tmp_path, searched, capsys):
    import shutil

    directory = tmp_path / "exp"
    shutil.copytree(searched, directory)
    exp = Experiment.load(directory)
    sets = {**exp.training_sets, "random2": {"proxy": "random.json", "train": {"epochs": 2}}}
    dataclasses.replace(exp, training_sets=sets).save(directory)  # a set added: it has no study yet
    assert main(["status", "--experiment", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "6 of 9 jobs done, 0 running, 0 failed, 3 waiting" in out
    row = next(re.split(r"\s{2,}", line) for line in out.splitlines() if line.startswith("random2"))
    assert row[1:6] == ["0", "0", "0", "3", "-"]
    # independent check of the estimate: the wall seconds stored in the finished trials, and the SGD steps
    # counted by hand (200 images in batches of the default size, short last batch kept; 1 epoch, random2: 2)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(directory / JOURNAL_FILE)))
    walls = {s.study_name.split(":")[1]: [t.user_attrs["wall_seconds"] for t in storage.get_all_trials(s._study_id)
                                          if t.state == optuna.trial.TrialState.COMPLETE]
             for s in storage.get_all_studies()}
    assert sorted(map(len, walls.values())) == [3, 3]
    steps = math.ceil(200 / TrainConfig().batch_size)
    per_step = sum(walls["random"]) / (3 * steps)  # the whole set's steps are not known without its data
    table = cli_progress(directory)
    assert table.loc["random2", "estimate"] == "steps"
    assert table.loc["random2", "left_seconds"] == pytest.approx(3 * 2 * steps * per_step)
    assert table.loc["whole", "left_seconds"] == 0
    assert "time left: no worker is running; " in out and "of work for one worker (sets with no finished job: " \
        "their SGD steps times the seconds per step of the finished proxy jobs)" in out
    assert f"`nasprune search --experiment {directory}` continues" in out


def test_status_counts_a_process_running_several_jobs_as_one_worker(tmp_path, searched, capsys):
    import shutil

    directory = tmp_path / "exp"
    shutil.copytree(searched, directory)
    exp = Experiment.load(directory)
    sets = {**exp.training_sets, "random2": {"proxy": "random.json", "train": {"epochs": 2}}}
    dataclasses.replace(exp, training_sets=sets).save(directory)
    _, store = prepare(directory)  # queues the new set's 3 jobs
    assert store.claim() is not None and store.claim() is not None  # one process, two running jobs (a fused group)
    assert main(["status", "--experiment", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "6 of 9 jobs done, 2 running, 0 failed, 1 waiting" in out
    assert "over 1 running worker" in out, out
    assert set(job_status(directory).dropna(subset=["worker"])["state"]) == {"running"}


def cli_progress(directory: Path) -> pd.DataFrame:
    return cli._progress(directory, None, job_status(directory))


def test_time_left_divides_by_running_workers(searched):
    from nasprune.report import progress

    status, jobs = job_status(searched), load_jobs(searched)
    status.loc[[0, 1], "state"] = ["running", "waiting"]  # random: one running, one waiting
    status.loc[3, "state"] = "running"  # whole: one running
    status.loc[4, "state"] = "failed"
    table = progress(status, jobs)
    assert table.loc["random", ["done", "running", "failed", "waiting"]].tolist() == [1, 1, 0, 1]
    assert table.loc["whole", ["done", "running", "failed", "waiting"]].tolist() == [1, 1, 1, 0]
    means = jobs.groupby("training_set")["wall_seconds"].mean()
    assert table.loc["random", "left_seconds"] == pytest.approx(2 * means["random"])
    text = cli._time_left(table, 2, searched)  # two worker processes
    expected = cli._duration((2 * means["random"] + means["whole"]) / 2)
    assert text.startswith(f"about {expected}: 3 jobs x the mean job time of their training set, over 2 running "
                           "workers"), text


# --- prune and run ---------------------------------------------------------------------------------------------


def test_prune_random_never_touches_a_scoring_run(tmp_path, monkeypatch, capsys):
    import nasprune.scoring

    def refuse(*args, **kwargs):
        raise AssertionError("random selection must not train or load a scoring run")

    monkeypatch.setattr(nasprune.scoring, "run_scoring", refuse)
    monkeypatch.setattr(nasprune.scoring.ScoringRun, "load", classmethod(refuse))
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


def test_run_ends_with_the_search_summary(tmp_path, capsys):
    config = {"name": "run-summary", "dataset": {"name": "synthetic"},
              "scoring": {"spec": "w8-d1-relu-batchnorm-avgpooling", "bottleneck": 8, "score_epoch": 1,
                          "train": {"epochs": 1}},
              "proxies": {"per_class": 10, "sets": [{"name": "random", "method": "random"}]},
              "search": {"candidates": CANDIDATES[:2], "seeds": [0], "workers": 0,
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
