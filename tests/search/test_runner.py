"""The runner: experiments, storage, workers, retries, resumption after SIGKILL and SIGTERM, threads, progress,
and PostgreSQL. The job life cycle on its own is tested in tests/search/test_store.py."""

import dataclasses
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

from nasprune.analysis import ranking_by_epoch, table1
from nasprune.data import load_dataset
from nasprune.errors import ExperimentError, ProxyError, StorageError
from nasprune.proxies import ProxySet
from nasprune.search import (JOURNAL_FILE, Experiment, TrainingSet, Terminated, default_threads, exit_on_interrupt,
                             job_status, load_history, load_jobs, prepare, run_search)
from nasprune.search import _liveness, _runner
from nasprune.search._studies import job_key
from nasprune.training import TrainConfig, evaluate, to_float, train_candidate
from search_spaces import build_convnet


# --- experiments ------------------------------------------------------------------------------------------------


def test_experiment_round_trip_and_refusals(tmp_path, synthetic, make_experiment, candidates):
    exp = make_experiment(tmp_path, synthetic)
    assert Experiment.load(tmp_path) == exp
    assert json.loads((tmp_path / "experiment.json").read_text())["format"] == "nasprune.experiment/1"
    exp.save(tmp_path)  # the same config again is fine
    other = Experiment.from_dict({**exp.to_dict(), "seeds": [0, 1, 2]})
    with pytest.raises(ExperimentError, match=r"holds another experiment \(setting stored -> new: seeds \[0, 1\] -> "
                                              r"\[0, 1, 2\]\); pass overwrite=True"):
        other.save(tmp_path)
    other.save(tmp_path, overwrite=True)
    assert Experiment.load(tmp_path).seeds == [0, 1, 2]
    with pytest.raises(ExperimentError, match=r"candidates\[1\]: unknown candidate id 'w8-d1-relu-none-bogus'"):
        Experiment(name="x", dataset={"name": "synthetic"}, candidates=[candidates[0], "w8-d1-relu-none-bogus"],
                   training_sets={"whole": {"proxy": None}})
    with pytest.raises(ExperimentError, match="train.seed: is set by the experiment's seeds"):
        Experiment(name="x", dataset={"name": "synthetic"}, candidates=candidates,
                   training_sets={"whole": {"proxy": None, "train": {"seed": 3}}})
    with pytest.raises(ExperimentError, match=r"train.epoch: unknown key \(did you mean 'epochs'\?\)"):
        Experiment(name="x", dataset={"name": "synthetic"}, candidates=candidates,
                   training_sets={"whole": {"proxy": None, "train": {"epoch": 3}}})
    with pytest.raises(ExperimentError, match="worker: unknown key"):
        Experiment.from_dict({**exp.to_dict(), "worker": 2})


# --- bad inputs leave the studies alone ---------------------------------------------------------------------------


def test_unknown_candidate_in_config_file_is_refused_before_storage(tmp_path, synthetic, make_experiment):
    make_experiment(tmp_path, synthetic)
    doc = json.loads((tmp_path / "experiment.json").read_text())
    doc["candidates"].append("w8-d9-relu-none-nopool")
    (tmp_path / "experiment.json").write_text(json.dumps(doc))
    with pytest.raises(ExperimentError, match=r"candidates\[3\]: unknown candidate id 'w8-d9-relu-none-nopool'"):
        run_search(tmp_path, workers=0, progress=False)
    assert not (tmp_path / JOURNAL_FILE).exists()


@pytest.mark.slow
def test_proxy_from_other_data_is_refused_and_studies_untouched(tmp_path, synthetic, make_experiment):
    make_experiment(tmp_path, synthetic)
    prepare(tmp_path)  # studies and waiting jobs exist
    journal = (tmp_path / JOURNAL_FILE).read_bytes()
    other = load_dataset("synthetic", seed=1)  # another validation split, so another fingerprint
    ProxySet.from_selection(other, np.arange(200), "random").save(tmp_path / "random.json")
    with pytest.raises(ProxyError, match="random.json: this proxy was built on other data .* split differs in seed"):
        run_search(tmp_path, workers=2, progress=False)
    assert (tmp_path / JOURNAL_FILE).read_bytes() == journal


def test_unreachable_storage_is_a_clear_error(tmp_path, synthetic, make_experiment):
    make_experiment(tmp_path, synthetic)
    with pytest.raises(StorageError, match=r"cannot reach storage postgresql\+psycopg2://u:\*\*\*@127.0.0.1:1/x: "
                                           r"\(psycopg2.OperationalError\)"):
        run_search(tmp_path, workers=0, storage="postgresql+psycopg2://u:p@127.0.0.1:1/x", progress=False)
    assert not (tmp_path / JOURNAL_FILE).exists()


def test_changed_training_config_is_refused_against_stored_study(tmp_path, synthetic, make_experiment):
    exp = make_experiment(tmp_path, synthetic)
    prepare(tmp_path)
    journal = (tmp_path / JOURNAL_FILE).read_bytes()
    changed = exp.to_dict()
    changed["training_sets"]["whole"]["train"]["epochs"] = 5
    Experiment.from_dict(changed).save(tmp_path, overwrite=True)
    with pytest.raises(ExperimentError, match=r"study 't:whole' was run with another configuration \(setting "
                                              r"stored -> now\): train.epochs 1 -> 5; restore"):
        run_search(tmp_path, workers=0, progress=False)
    assert (tmp_path / JOURNAL_FILE).read_bytes() == journal


# --- failures and retries ---------------------------------------------------------------------


def test_failing_job_is_recorded_and_retried(tmp_path, synthetic, monkeypatch, make_experiment, trials,
                                             fake_result, candidates):
    make_experiment(tmp_path, synthetic, seeds=[0], max_retries=2)
    calls = []

    def flaky(loaded, training_set, candidate, seed):
        calls.append((training_set, candidate))
        if candidate == candidates[0] and training_set == "whole":
            raise RuntimeError("boom: always")
        if candidate == candidates[1] and calls.count((training_set, candidate)) == 1:
            raise RuntimeError("boom: once")
        return fake_result(50.0)

    monkeypatch.setattr(_runner, "train_job", flaky)
    summary = run_search(tmp_path, workers=0, progress=False)
    assert summary == {"total": 6, "complete": 5, "failed": 1, "unfinished": 0, "worker_exitcodes": []}
    assert calls.count(("whole", candidates[0])) == 3  # 1 + max_retries
    status = job_status(tmp_path).set_index(["training_set", "candidate"])
    failed = status.loc[("whole", candidates[0])]
    assert failed["state"] == "failed" and failed["errors"] == 3 and failed["error"] == "RuntimeError: boom: always"
    jobs = load_jobs(tmp_path)
    assert len(jobs) == 5 and set(jobs.loc[jobs["candidate"] == candidates[1], "attempt"]) == {2}
    errors = [t.user_attrs["error"] for t in trials(tmp_path)["t:whole"] if t.state == TrialState.FAIL]
    assert len(errors) == 4 and "Traceback" in errors[0]  # 3 always + 1 once
    run_search(tmp_path, workers=0, progress=False)  # nothing left to do
    assert calls.count(("whole", candidates[0])) == 3
    run_search(tmp_path, workers=0, progress=False, retry_failed=True)  # one more try
    assert calls.count(("whole", candidates[0])) == 4


# --- SIGKILL and resume -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_then_resume_keeps_finished_jobs_and_matches_uninterrupted_run(tmp_path, synthetic, child_env,
                                                                               make_experiment, trials,
                                                                               completes_per_job):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    for d in (killed, reference):
        make_experiment(d, synthetic, epochs=3)
    run_search(reference, workers=0, threads=1, progress=False)

    env = child_env
    proc = subprocess.Popen([sys.executable, "-m", "nasprune.cli", "search", "--experiment", str(killed),
                             "--workers", "1", "--threads", "1", "--no-progress"],
                            start_new_session=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if (killed / JOURNAL_FILE).exists():
                states = [t.state for ts in trials(killed).values() for t in ts]
                if states.count(TrialState.COMPLETE) >= 3 and TrialState.RUNNING in states:
                    break  # some jobs done, one half-way
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = {(s, t.number): t.value for s, ts in trials(killed).items() for t in ts if t.state == TrialState.COMPLETE}
    total = len(Experiment.load(killed).jobs())
    assert 3 <= len(before) < total, "the kill should land partway through the run"
    was_running = [t for ts in trials(killed).values() for t in ts if t.state == TrialState.RUNNING]

    said = []
    run_search(killed, workers=0, threads=1, progress=False, log=said.append)
    assert said == [f"resumed: {len(before)} finished jobs kept, {len(was_running)} interrupted re-queued"]
    after = trials(killed)
    assert all(after[s][n].value == v and after[s][n].state == TrialState.COMPLETE for (s, n), v in before.items())
    counts = completes_per_job(killed)
    assert len(counts) == total and set(counts.values()) == {1}  # all finished, none twice
    interrupted = [t for ts in after.values() for t in ts if "interrupted" in t.user_attrs]
    assert len(interrupted) == len(was_running) >= 1 and all(t.state == TrialState.FAIL for t in interrupted)

    a, b = (load_jobs(d).sort_values(["training_set", "candidate", "seed"]).reset_index(drop=True)
            for d in (killed, reference))
    pd.testing.assert_frame_equal(a[["training_set", "candidate", "seed", "val_acc", "test_acc", "train_loss"]],
                                  b[["training_set", "candidate", "seed", "val_acc", "test_acc", "train_loss"]])
    cols = ["training_set", "best_arch_test_acc", "spearman_top10", "spearman_all", "kendall_all", "regret",
            "spearman_top10_lo", "spearman_top10_hi"]
    pd.testing.assert_frame_equal(table1(a, n_boot=50)[cols], table1(b, n_boot=50)[cols])


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_command_stops_its_workers_and_a_rerun_runs_each_unfinished_job_once(tmp_path, synthetic, child_env,
                                                                                         monkeypatch, signum,
                                                                                         make_experiment, trials,
                                                                                         completes_per_job,
                                                                                         fake_result, descendants):
    """SIGTERM to `nasprune search` (as `kill PID` or a scheduler sends it): it stops its workers, which
    mark their jobs interrupted. SIGKILL cannot be handled, but its workers still get SIGTERM from the
    kernel (PR_SET_PDEATHSIG) and do the same. Either way nothing is left running."""
    make_experiment(tmp_path, synthetic, epochs=40)  # jobs of a few seconds
    env = child_env
    proc = subprocess.Popen([sys.executable, "-m", "nasprune.cli", "search", "--experiment", str(tmp_path),
                             "--workers", "2", "--threads", "1", "--no-progress"],
                            start_new_session=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    running, pids = [], set()
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(running) < 2:  # both workers training
            if (tmp_path / JOURNAL_FILE).exists():
                running = [(s, t.number) for s, ts in trials(tmp_path).items() for t in ts
                           if t.state == TrialState.RUNNING]
            time.sleep(0.05)
        pids = descendants(proc.pid)
        os.kill(proc.pid, signum)  # the parent only
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert len(running) == 2 and len(pids) >= 2 and "resumed:" not in out
    assert proc.returncode == (128 + signal.SIGTERM if signum == signal.SIGTERM else -signal.SIGKILL)  # 143: stopped
    if signum == signal.SIGTERM:  # one line on how to resume, no traceback (exit_on_interrupt)
        assert "nasprune search: interrupted; run the same command again to resume" in err
        assert "Traceback" not in err
    deadline = time.time() + 10
    while time.time() < deadline and any(_liveness.proc_start(p) is not None for p in pids):
        time.sleep(0.1)
    assert [p for p in pids if _liveness.proc_start(p) is not None] == []  # no orphans (zombies count as gone)

    stopped = trials(tmp_path)
    assert not [t for ts in stopped.values() for t in ts if t.state == TrialState.RUNNING]
    interrupted = [t for ts in stopped.values() for t in ts if "interrupted" in t.user_attrs]
    assert sorted((s, t.number) for s, ts in stopped.items() for t in ts if "interrupted" in t.user_attrs) == \
        sorted(running)  # the same trials: (study, number) names one
    assert all(t.state == TrialState.FAIL and t.user_attrs["interrupted"] == "Terminated: stopped by SIGTERM"
               for t in interrupted)  # recorded by the workers themselves, not recovered from dead ones
    kept = {(s, t.user_attrs["job"]): t.value for s, ts in stopped.items() for t in ts
            if t.state == TrialState.COMPLETE}

    calls, said = [], []
    monkeypatch.setattr(_runner, "train_job", lambda loaded, ts, c, s: calls.append((f"t:{ts}", job_key(c, s)))
                        or fake_result(50.0))
    summary = run_search(tmp_path, workers=0, progress=False, log=said.append)
    assert said == [f"resumed: {len(kept)} finished jobs kept, {len(interrupted)} interrupted re-queued"]
    total = len(Experiment.load(tmp_path).jobs())
    assert summary["complete"] == total and sorted(calls) == sorted(set(calls))
    assert len(calls) + len(kept) == total and not set(calls) & set(kept)  # each unfinished job once, no finished one
    after = trials(tmp_path)
    assert all(t.value == kept[(s, t.user_attrs["job"])] for s, ts in after.items() for t in ts
               if (s, t.user_attrs["job"]) in kept and t.state == TrialState.COMPLETE)
    assert set(completes_per_job(tmp_path).values()) == {1}


@pytest.mark.parametrize("raised, status", [(Terminated(signal.SIGTERM), 143), (KeyboardInterrupt(), 130),
                                            (ValueError("bad"), None)])
def test_exit_on_interrupt_turns_a_stop_into_a_resume_line_and_the_signals_exit_status(capsys, raised, status):
    """Entry points (the CLI, scripts/) end a Ctrl-C or SIGTERM with 128 + the signal's number and one line;
    any other error passes through untouched."""
    with pytest.raises(SystemExit if status else ValueError) as info:
        with exit_on_interrupt("scripts/x.py"):
            raise raised
    err = capsys.readouterr().err
    if status:
        assert info.value.code == status and info.value.__context__ is not None and info.value.__suppress_context__
        assert err == "scripts/x.py: interrupted; run the same command again to resume\n"
    else:
        assert info.value is raised and err == ""


# --- threads, progress, evaluation --------------------------------------------------------------------------------


def test_default_threads_never_oversubscribe_the_cores(caplog):
    assert [default_threads(w, cpus=8) for w in (0, 1, 2, 3, 8)] == [8, 8, 4, 2, 1]
    with caplog.at_level("WARNING"):
        assert default_threads(3, cpus=2) == 1
    assert "3 workers on 2 cpus: each gets 1 thread" in caplog.text
    assert [r.name for r in caplog.records] == ["nasprune.search"]  # the search's logger


def test_in_process_jobs_use_at_most_the_cpus_and_restore_the_threads(tmp_path, synthetic, monkeypatch,
                                                                      make_experiment, fake_result):
    make_experiment(tmp_path, synthetic, seeds=[0])
    seen = []
    monkeypatch.setattr(_runner, "train_job", lambda *a: seen.append(torch.get_num_threads()) or fake_result(50.0))
    monkeypatch.setattr(_runner, "_cpus", lambda: 2)
    before = torch.get_num_threads()
    torch.set_num_threads(5)
    try:
        run_search(tmp_path, workers=0, progress=False)
        assert seen == [2] * 6 and torch.get_num_threads() == 5
    finally:
        torch.set_num_threads(before)


def test_progress_after_a_resume_rates_only_this_runs_jobs(tmp_path, synthetic, make_experiment):
    make_experiment(tmp_path, synthetic)  # 12 jobs
    _, store = prepare(tmp_path)
    for _ in range(8):  # finished before this run
        store.complete(store.claim(), {"val_acc": 50.0}, 50.0)
    done = mp.get_context("spawn").Value("q", 0)
    progress = _runner._Progress(store, done, kept=8, full_every=float("inf"), enabled=True)
    try:
        time.sleep(0.3)
        store.complete(store.claim(), {"val_acc": 50.0}, 50.0)
        done.value += 1
        progress.refresh()
        meter = progress.bar.format_dict
        rate = meter["rate"] or (meter["n"] - meter["initial"]) / meter["elapsed"]
    finally:
        progress.close()
    assert meter["n"] == 9 and meter["initial"] == 8 and meter["total"] == 12
    assert 3 / rate >= 0.6  # 3 jobs left at this run's pace (one per 0.3 s), not 9 jobs' worth of credit


@pytest.mark.slow
def test_proxies_can_skip_the_test_split(tmp_path, synthetic, make_experiment, candidates):
    """``eval_test: false`` leaves test_acc empty and changes nothing else; evaluation in any batch size
    gives the accuracy of one forward pass over all images."""
    exp = make_experiment(tmp_path / "with", synthetic, seeds=[0], epochs=2)
    doc = exp.to_dict()
    doc["training_sets"]["random"]["train"]["eval_test"] = False
    Experiment.from_dict(doc).save(tmp_path / "without")
    shutil.copy(tmp_path / "with" / "random.json", tmp_path / "without")
    for d in ("with", "without"):
        run_search(tmp_path / d, workers=0, threads=1, progress=False)
    a, b = (load_jobs(tmp_path / d).set_index(["training_set", "candidate"]) for d in ("with", "without"))
    assert b.loc["random", "test_acc"].isna().all() and a["test_acc"].notna().all()
    assert b.loc["whole", "test_acc"].notna().all()
    pd.testing.assert_series_equal(a["val_acc"], b["val_acc"])

    torch.manual_seed(0)
    model = build_convnet(candidates[2], synthetic.in_channels, synthetic.image_size, synthetic.num_classes)
    model.eval()
    x = to_float(synthetic.val_x, synthetic.mean, synthetic.std, torch.device("cpu"))
    with torch.no_grad():
        whole = 100.0 * (model(x).argmax(1) == synthetic.val_y).double().mean().item()
    assert [evaluate(model, x, synthetic.val_y, b) for b in (1, 7, 128, 10_000)] == pytest.approx([whole] * 4)
    with pytest.raises(ValueError, match="eval_batch_size must be >= 1, got 0"):
        TrainConfig(eval_batch_size=0)


# --- PostgreSQL ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_on_postgres_do_every_job_once(tmp_path, synthetic, pg_url, make_experiment, completes_per_job,
                                                   drop_studies):
    url = pg_url
    exp = make_experiment(tmp_path, synthetic, name=f"pg-{uuid.uuid4().hex[:8]}", epochs=2)
    try:
        summary = run_search(tmp_path, workers=2, storage=url, threads=1, progress=False, first=["whole"])
        assert summary["complete"] == summary["total"] == len(exp.jobs()) and summary["worker_exitcodes"] == [0, 0]
        counts = completes_per_job(tmp_path, url)
        assert len(counts) == len(exp.jobs()) and set(counts.values()) == {1}
        jobs = load_jobs(tmp_path, url)
        assert len(jobs) == len(exp.jobs()) and not jobs.duplicated(["training_set", "candidate", "seed"]).any()
        # the spawned workers got `first`: every whole-set job (both seeds) was claimed before any proxy job
        import optuna

        started = {ts: [t.datetime_start for t in optuna.load_study(study_name=exp.study_name(ts), storage=url).trials]
                   for ts in exp.training_sets}
        assert max(started["whole"]) <= min(started["random"])
    finally:
        drop_studies(exp, url)


@pytest.mark.slow
def test_two_commands_at_once_queue_and_train_each_job_once(tmp_path, synthetic, child_env, storage_url, make_experiment,
                                                            trials, completes_per_job, drop_studies):
    """Two `nasprune search` commands started together (two hosts on PostgreSQL, two shells on a journal)
    both queue and claim: no job is queued twice, none trained twice, and no FAIL trial is left behind."""
    url = storage_url
    exp = make_experiment(tmp_path, synthetic, name=f"two-{uuid.uuid4().hex[:8]}", epochs=1)
    env = child_env
    cmd = [sys.executable, "-m", "nasprune.cli", "search", "--experiment", str(tmp_path), "--workers", "1",
           "--threads", "1", "--no-progress"] + (["--storage", url] if url else [])
    try:
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=180)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        everything = [t for ts in trials(tmp_path, url).values() for t in ts]
        assert len(everything) == len(exp.jobs())  # one trial per job: nothing queued twice
        assert {t.state for t in everything} == {TrialState.COMPLETE}
        assert not [t for t in everything if "duplicate" in t.user_attrs]
        assert set(completes_per_job(tmp_path, url).values()) == {1}
    finally:
        drop_studies(exp, url)


def test_workers_take_jobs_seed_by_seed(tmp_path, synthetic, monkeypatch, make_experiment, fake_result):
    """A partial run holds a whole seed of every training set before any job of the next seed runs."""
    exp = make_experiment(tmp_path, synthetic, seeds=[3, 0])
    calls = []

    def fake_train_job(loaded, ts, candidate, seed):
        calls.append((ts, candidate, seed))
        return fake_result(50.0)

    monkeypatch.setattr(_runner, "train_job", fake_train_job)
    run_search(tmp_path, workers=0, progress=False)
    assert calls == exp.jobs()
    assert [s for *_, s in calls] == [3] * 6 + [0] * 6


def test_first_training_sets_run_every_seed_before_the_others(tmp_path, synthetic, monkeypatch, make_experiment,
                                                              fake_result):
    """``first`` is a schedule: the named sets' jobs, every seed, before any other's; seed by seed within."""
    exp = make_experiment(tmp_path, synthetic, seeds=[3, 0])
    assert [(ts, s) for ts, _, s in exp.jobs()[::3]] == [("random", 3), ("whole", 3), ("random", 0), ("whole", 0)]
    with pytest.raises(ExperimentError, match="no training set 'wholе'"):
        run_search(tmp_path, workers=0, progress=False, first=["wholе"])  # a Cyrillic 'е': a typo
    assert not (tmp_path / JOURNAL_FILE).exists()  # refused before the storage was opened
    with pytest.raises(ExperimentError, match="must be a list of training-set names"):
        run_search(tmp_path, workers=0, progress=False, first="whole")
    calls = []

    def fake_train_job(loaded, ts, candidate, seed):
        calls.append((ts, candidate, seed))
        return fake_result(50.0)

    monkeypatch.setattr(_runner, "train_job", fake_train_job)
    run_search(tmp_path, workers=0, progress=False, first=["whole"])
    assert calls == exp.jobs(["whole"])
    assert [(ts, s) for ts, _, s in calls[::3]] == [("whole", 3), ("whole", 0), ("random", 3), ("random", 0)]


def test_adding_a_training_set_keeps_finished_jobs_and_runs_only_the_new_ones(tmp_path, synthetic, monkeypatch,
                                                                              make_experiment, fake_result):
    exp = make_experiment(tmp_path, synthetic, seeds=[0])
    calls = []
    monkeypatch.setattr(_runner, "train_job", lambda loaded, ts, c, s: calls.append(ts) or fake_result(50.0))
    run_search(tmp_path, workers=0, progress=False)
    before = load_jobs(tmp_path)
    ProxySet.from_selection(synthetic, np.arange(100), "random").save(tmp_path / "first100.json")
    extended = exp.to_dict()
    extended["training_sets"]["first100"] = {"proxy": "first100.json", "train": {"epochs": 1}}
    Experiment.from_dict(extended).save(tmp_path)  # an added set is not a changed config
    run_search(tmp_path, workers=0, progress=False)
    assert calls == ["random"] * 3 + ["whole"] * 3 + ["first100"] * 3
    after = load_jobs(tmp_path)
    pd.testing.assert_frame_equal(after[after.training_set != "first100"].reset_index(drop=True), before)
    changed = Experiment.load(tmp_path).to_dict()
    changed["training_sets"]["random"]["train"]["epochs"] = 2  # a stored set changed: still refused
    del changed["training_sets"]["first100"]
    with pytest.raises(ExperimentError, match=r"holds another experiment \(setting stored -> new: training_sets.random"
                                              r".train.epochs 1 -> 2, training_sets.first100 \{...\} -> \(absent\)\)"):
        Experiment.from_dict(changed).save(tmp_path)


@pytest.mark.slow
def test_a_search_records_validation_accuracy_per_epoch(tmp_path, synthetic, make_experiment, candidates):
    exp = make_experiment(tmp_path, synthetic, seeds=(0, 1), epochs=3)
    sets = {ts: dataclasses.replace(entry, train=dataclasses.replace(entry.train, eval_every=1))
            for ts, entry in exp.training_sets.items() if entry.proxy is None}
    dataclasses.replace(exp, training_sets=sets).save(tmp_path, overwrite=True)
    run_search(tmp_path, workers=0, progress=False)
    history, jobs = load_history(tmp_path), load_jobs(tmp_path)
    assert len(history) == len(candidates) * 2 * 3 and set(history["epoch"]) == {1, 2, 3}
    last = history[history["epoch"] == 3].merge(jobs, on=["training_set", "candidate", "seed"])
    assert (last["val_acc_x"] == last["val_acc_y"]).all()  # the last epoch's accuracy is the job's
    assert ranking_by_epoch(history)["kendall_vs_last"].iloc[-1] == 1


def test_training_sets_with_their_own_seeds(tmp_path):
    """A set's own ``seeds`` replace the experiment's for its jobs only; the file round-trips, an old file
    without the field reads as "the experiment's seeds", and bad seeds are refused by key."""
    exp = Experiment(name="s", dataset={"name": "synthetic"}, candidates=["w8-d1-relu-none-avgpooling"],
                     training_sets={"whole": TrainingSet(None), "p": TrainingSet("p.json", seeds=[7])}, seeds=[0, 1])
    assert exp.jobs() == [("whole", "w8-d1-relu-none-avgpooling", 0), ("whole", "w8-d1-relu-none-avgpooling", 1),
                          ("p", "w8-d1-relu-none-avgpooling", 7)]
    exp.save(tmp_path)
    assert Experiment.load(tmp_path) == exp
    doc = json.loads((tmp_path / "experiment.json").read_text())
    del doc["training_sets"]["whole"]["seeds"]
    assert Experiment.from_dict(doc).seeds_of("whole") == [0, 1]
    doc["training_sets"]["p"]["seeds"] = [3, 3]
    with pytest.raises(ExperimentError, match=r"training_sets\.p\.seeds: must be distinct"):
        Experiment.from_dict(doc)


def test_every_job_records_its_training_speed_estimate(tmp_path, synthetic, make_experiment):
    """A job's ``tse`` is read back beside its validation accuracy, and is the TSE of the same training run alone."""
    make_experiment(tmp_path, synthetic, seeds=[0], epochs=2)
    run_search(tmp_path, workers=0, progress=False, log=None)
    jobs = load_jobs(tmp_path).set_index(["training_set", "candidate"])
    job = jobs.loc[("random", "w8-d1-relu-none-avgpooling")]
    x, y = ProxySet.load(tmp_path / "random.json", synthetic).tensors(synthetic)
    alone = train_candidate("w8-d1-relu-none-avgpooling", synthetic, x, y, TrainConfig(epochs=2, seed=0))
    assert job["tse"] == pytest.approx(alone.tse, rel=1e-6) and jobs["tse"].notna().all()


def test_a_training_set_can_train_some_of_the_candidates(tmp_path, synthetic, make_experiment, candidates):
    """A schedule's later rung trains only the candidates the previous one kept: its jobs, its status, its table."""
    exp = make_experiment(tmp_path, synthetic, seeds=[0])
    sets = {**exp.training_sets, "few": dataclasses.replace(exp.training_sets["random"], candidates=candidates[:2])}
    dataclasses.replace(exp, training_sets=sets).save(tmp_path)
    assert [j for j in Experiment.load(tmp_path).jobs() if j[0] == "few"] == [("few", c, 0) for c in candidates[:2]]
    summary = run_search(tmp_path, workers=0, progress=False, log=None)
    assert summary["total"] == summary["complete"] == 3 + 3 + 2
    assert sorted(load_jobs(tmp_path).query("training_set == 'few'")["candidate"]) == candidates[:2]
    with pytest.raises(ExperimentError, match=r"training_sets.bad.candidates: must be distinct candidates of the "
                                              r"experiment, got \['w8-d9-relu-none-none'\]"):
        Experiment(name="x", dataset={"name": "synthetic"}, candidates=candidates,
                   training_sets={"bad": {"proxy": None, "candidates": ["w8-d9-relu-none-none"]}})
