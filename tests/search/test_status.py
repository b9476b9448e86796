"""How far a search is (nasprune/search/_status.py, `nasprune status`): jobs per training set by state, and the
time left from the finished jobs' wall times or, for a set with none finished, its SGD steps."""

import dataclasses
import math
import re
import shutil

import numpy as np
import optuna
import pandas as pd
import pytest

from nasprune.cli import main
from nasprune.search import (JOURNAL_FILE, Experiment, format_duration, job_status, load_jobs, prepare, progress,
                             run_search, search_status, time_left)
from nasprune.training import TrainConfig


def test_progress_counts_states_and_work_left():
    status = pd.DataFrame({"training_set": ["a"] * 4 + ["b"] * 2,
                           "state": ["complete", "complete", "running", "pending", "failed", "waiting"]})
    jobs = pd.DataFrame({"training_set": ["a", "a", "x"], "seconds": [1.0, 2.0, 5.0],
                         "wall_seconds": [10.0, 20.0, np.nan]})
    t = progress(status, jobs, {"a": 4, "b": 2, "c": 3})
    assert t.index.tolist() == ["a", "b", "c"]
    assert t[["done", "running", "failed", "waiting"]].values.tolist() == [[2, 1, 0, 1], [0, 0, 1, 1], [0, 0, 0, 3]]
    assert t.loc["a", "mean_job_seconds"] == 15.0 and np.isnan(t.loc["b", "mean_job_seconds"])
    mean_all = (10 + 20 + 5) / 3  # a wall_seconds left empty falls back to seconds
    assert t.loc["a", "left_seconds"] == 2 * 15.0 and t.loc["c", "left_seconds"] == pytest.approx(3 * mean_all)
    assert t["estimate"].tolist() == ["measured", "mean", "mean"]
    # with each set's SGD steps per job, a set with no finished job costs its steps at the per-step rate of the
    # finished jobs whose steps are known (a's two jobs: 30 s for 2 x 10 steps); c's steps are unknown
    t = progress(status, jobs, {"a": 4, "b": 2, "c": 3}, {"a": 10, "b": 40, "c": None})
    assert t["estimate"].tolist() == ["measured", "steps", "mean"]
    assert t.loc["b", "job_seconds"] == pytest.approx(40 * 30 / 20) and t.loc["b", "left_seconds"] == 60.0
    assert t.loc["a", "left_seconds"] == 2 * 15.0 and t.loc["c", "left_seconds"] == pytest.approx(3 * mean_all)


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
    walls = {s.study_name.split(":")[1]: [t.user_attrs["wall_seconds"]
                                          for t in storage.get_all_trials(storage.get_study_id_from_name(s.study_name))
                                          if t.state == optuna.trial.TrialState.COMPLETE]
             for s in storage.get_all_studies()}
    assert sorted(map(len, walls.values())) == [3, 3]
    steps = math.ceil(200 / TrainConfig().batch_size)
    whole_images = storage.get_study_user_attrs(storage.get_study_id_from_name(f"{exp.name}:whole"))["info"]["images"]
    whole_steps = math.ceil(whole_images / TrainConfig().batch_size)  # the size its jobs recorded, 1 epoch
    per_step = (sum(walls["random"]) + sum(walls["whole"])) / (3 * steps + 3 * whole_steps)  # every finished job's
    table, workers = search_status(directory)
    assert workers == 0
    assert table.loc["random2", "estimate"] == "steps"
    assert table.loc["random2", "left_seconds"] == pytest.approx(3 * 2 * steps * per_step)
    assert table.loc["whole", "left_seconds"] == 0
    assert "time left: no worker is running; " in out and "of work for one worker (sets with no finished job: " \
        "their SGD steps times the seconds per step of the finished jobs)" in out
    assert f"`nasprune search --experiment {directory}` continues" in out


def test_status_counts_a_process_running_several_jobs_as_one_worker(tmp_path, searched, capsys):
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


def test_time_left_divides_by_running_workers(searched):
    status, jobs = job_status(searched), load_jobs(searched)
    status.loc[[0, 1], "state"] = ["running", "waiting"]  # random: one running, one waiting
    status.loc[3, "state"] = "running"  # whole: one running
    status.loc[4, "state"] = "failed"
    table = progress(status, jobs)
    assert table.loc["random", ["done", "running", "failed", "waiting"]].tolist() == [1, 1, 0, 1]
    assert table.loc["whole", ["done", "running", "failed", "waiting"]].tolist() == [1, 1, 1, 0]
    means = jobs.groupby("training_set")["wall_seconds"].mean()
    assert table.loc["random", "left_seconds"] == pytest.approx(2 * means["random"])
    text = time_left(table, 2, searched)  # two worker processes
    expected = format_duration((2 * means["random"] + means["whole"]) / 2)
    assert text.startswith(f"about {expected}: 3 jobs x the mean job time of their training set, over 2 running "
                           "workers"), text


def test_durations_read_in_the_unit_that_fits():
    assert [format_duration(s) for s in (None, float("nan"), 0, 42.4, 89, 90, 1020, 5399, 5400, 11520)] == [
        "?", "?", "0 s", "42 s", "89 s", "2 min", "17 min", "90 min", "1.5 h", "3.2 h"]


def test_status_with_a_storage_but_no_study_is_an_error_line(tmp_path, make_small_experiment, capsys):
    """A storage that holds no study of the experiment (here an empty journal) is no search: `nasprune status`
    says so in one line and exits 2, writing nothing."""
    directory = make_small_experiment(tmp_path / "exp")
    (directory / JOURNAL_FILE).touch()
    with pytest.raises(ValueError, match=f"no search has run in {re.escape(str(directory))}; start one with "):
        search_status(directory)
    before = sorted(p.name for p in directory.iterdir())
    assert main(["status", "--experiment", str(directory)]) == 2
    assert capsys.readouterr().err == (f"nasprune status: error: no search has run in {directory}; start one with "
                                       f"`nasprune search --experiment {directory}`\n")
    assert sorted(p.name for p in directory.iterdir()) == before and (directory / JOURNAL_FILE).stat().st_size == 0


def test_status_replays_the_journal_once(searched, journal_replays, capsys):
    """``nasprune status`` reads the job states and the finished jobs from one storage (it opened the journal twice
    before: a journal of 3,132 jobs took a replay per open)."""
    assert main(["status", "--experiment", str(searched)]) == 0
    assert journal_replays["n"] == 1 and "6 of 6 jobs done" in capsys.readouterr().out


def test_a_proxy_with_no_finished_job_is_estimated_from_the_whole_sets_seconds_per_step(tmp_path,
                                                                                        make_small_experiment):
    """Only the whole set's jobs have finished (a search run with --first whole, say): a proxy's jobs are their SGD
    steps at the seconds per step of the whole set's jobs (its size as they recorded it), not the mean whole-set job,
    which trains many times their steps."""
    directory = make_small_experiment(tmp_path / "exp")
    exp = Experiment.load(directory)
    whole_only = dataclasses.replace(exp, training_sets={"whole": exp.training_sets["whole"]})
    whole_only.save(directory, overwrite=True)
    run_search(directory, workers=0, progress=False, log=None)
    exp.save(directory)  # the proxy added back: it has no finished job
    jobs = load_jobs(directory)
    whole_steps = jobs["images"].map(lambda n: math.ceil(n / TrainConfig().batch_size)) * jobs["epochs"]
    per_step = jobs["wall_seconds"].sum() / whole_steps.sum()
    table, _ = search_status(directory)
    proxy_steps = math.ceil(200 / TrainConfig().batch_size)  # random.json: 200 images, 1 epoch
    assert table.loc["random", "estimate"] == "steps" and table.loc["random", "waiting"] == 3
    assert table.loc["random", "job_seconds"] == pytest.approx(proxy_steps * per_step)
    assert table.loc["random", "job_seconds"] < jobs["wall_seconds"].mean() / 2
