"""The runner: experiments, storage, workers, retries, resumption after SIGKILL, and PostgreSQL."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from optuna.trial import TrialState

from nasprune import _jobstore, runner
from nasprune.data import load_dataset
from nasprune.metrics import table1
from nasprune.proxy import ProxyError, ProxySet
from nasprune.runner import (Experiment, ExperimentError, StorageError, job_status, load_jobs, open_storage, prepare,
                             run_search)
from nasprune.train import TrainResult

CANDIDATES = ["w8-d1-relu-none-avgpooling", "w8-d1-sigmoid-batchnorm-maxpooling", "w8-d2-leakyrelu-groupnorm-none"]


def make_experiment(directory: Path, dataset, *, name="t", candidates=CANDIDATES, seeds=(0, 1), epochs=1,
                    **kwargs) -> Experiment:
    """A random 200-image proxy and the whole synthetic split, saved in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    kept = np.random.default_rng(0).choice(len(dataset.train_y), 200, replace=False)
    ProxySet.from_selection(dataset, kept, "random").save(directory / "random.json")
    exp = Experiment(name=name, dataset={"name": "synthetic"}, candidates=list(candidates),
                     training_sets={"random": {"proxy": "random.json", "train": {"epochs": epochs}},
                                    "whole": {"proxy": None, "train": {"epochs": epochs}}},
                     seeds=list(seeds), **kwargs)
    exp.save(directory)
    return exp


def trials(directory: Path, url=None) -> dict[str, list]:
    """The experiment's trials by study name."""
    store, exp = open_storage(directory, url), Experiment.load(directory)
    names = {exp.study_name(ts) for ts in exp.training_sets}
    return {s.study_name: store.get_all_trials(s._study_id) for s in store.get_all_studies() if s.study_name in names}


def completes_per_job(directory: Path, url=None) -> dict[tuple[str, str], int]:
    counts = {}
    for study, ts in trials(directory, url).items():
        for t in ts:
            key = (study, t.user_attrs["job"])
            counts[key] = counts.get(key, 0) + (t.state == TrialState.COMPLETE)
    return counts


def fake_result(val: float) -> TrainResult:
    return TrainResult(train_loss=1.0, val_acc=val, test_acc=val - 1, epochs=1, seconds=0.01, images_per_sec=1.0,
                       diverged=False)


# --- experiments ------------------------------------------------------------------------------------------------


def test_experiment_round_trip_and_refusals(tmp_path, synthetic):
    exp = make_experiment(tmp_path, synthetic)
    assert Experiment.load(tmp_path) == exp
    assert json.loads((tmp_path / "experiment.json").read_text())["format"] == "nasprune.experiment/1"
    exp.save(tmp_path)  # the same config again is fine
    other = Experiment.from_dict({**exp.to_dict(), "seeds": [0, 1, 2]})
    with pytest.raises(ExperimentError, match=r"holds another experiment(.|\n)*-    1\n\+    1,\n\+    2"):
        other.save(tmp_path)
    other.save(tmp_path, overwrite=True)
    assert Experiment.load(tmp_path).seeds == [0, 1, 2]
    with pytest.raises(ExperimentError, match=r"unknown candidate id 'w8-d1-relu-none-bogus' \(candidates\[1\]\)"):
        Experiment(name="x", dataset={"name": "synthetic"}, candidates=[CANDIDATES[0], "w8-d1-relu-none-bogus"],
                   training_sets={"whole": {"proxy": None}})
    with pytest.raises(ExperimentError, match="train sets seed"):
        Experiment(name="x", dataset={"name": "synthetic"}, candidates=CANDIDATES,
                   training_sets={"whole": {"proxy": None, "train": {"seed": 3}}})
    with pytest.raises(ExperimentError, match="unexpected keyword argument 'epoch'"):
        Experiment(name="x", dataset={"name": "synthetic"}, candidates=CANDIDATES,
                   training_sets={"whole": {"proxy": None, "train": {"epoch": 3}}})
    with pytest.raises(ExperimentError, match="unknown experiment keys"):
        Experiment.from_dict({**exp.to_dict(), "worker": 2})


# --- bad inputs leave the studies alone ---------------------------------------------------------------------------


def test_unknown_candidate_in_config_file_is_refused_before_storage(tmp_path, synthetic):
    make_experiment(tmp_path, synthetic)
    doc = json.loads((tmp_path / "experiment.json").read_text())
    doc["candidates"].append("w8-d9-relu-none-nopool")
    (tmp_path / "experiment.json").write_text(json.dumps(doc))
    with pytest.raises(ExperimentError, match="unknown candidate id 'w8-d9-relu-none-nopool' \\(candidates\\[3\\]\\)"):
        run_search(tmp_path, workers=0, progress=False)
    assert not (tmp_path / runner.JOURNAL_FILE).exists()


def test_proxy_from_other_data_is_refused_and_studies_untouched(tmp_path, synthetic):
    make_experiment(tmp_path, synthetic)
    prepare(tmp_path)  # studies and waiting jobs exist
    journal = (tmp_path / runner.JOURNAL_FILE).read_bytes()
    other = load_dataset("synthetic", seed=1)  # another validation split, so another fingerprint
    ProxySet.from_selection(other, np.arange(200), "random").save(tmp_path / "random.json")
    with pytest.raises(ProxyError, match="built on synthetic \\(fingerprint .*\\) but is used with synthetic"):
        run_search(tmp_path, workers=2, progress=False)
    assert (tmp_path / runner.JOURNAL_FILE).read_bytes() == journal


def test_unreachable_storage_is_a_clear_error(tmp_path, synthetic):
    make_experiment(tmp_path, synthetic)
    with pytest.raises(StorageError, match=r"cannot reach storage postgresql\+psycopg2://u:\*\*\*@127.0.0.1:1/x: "
                                           r"\(psycopg2.OperationalError\)"):
        run_search(tmp_path, workers=0, storage="postgresql+psycopg2://u:p@127.0.0.1:1/x", progress=False)
    assert not (tmp_path / runner.JOURNAL_FILE).exists()


def test_changed_training_config_is_refused_against_stored_study(tmp_path, synthetic):
    exp = make_experiment(tmp_path, synthetic)
    prepare(tmp_path)
    journal = (tmp_path / runner.JOURNAL_FILE).read_bytes()
    changed = exp.to_dict()
    changed["training_sets"]["whole"]["train"]["epochs"] = 5
    Experiment.from_dict(changed).save(tmp_path, overwrite=True)
    with pytest.raises(ExperimentError, match=r"study 't:whole' was run with another configuration(.|\n)*"
                                              r"-    \"epochs\": 1,\n\+    \"epochs\": 5,"):
        run_search(tmp_path, workers=0, progress=False)
    assert (tmp_path / runner.JOURNAL_FILE).read_bytes() == journal


# --- failures, retries, duplicates, dead workers ---------------------------------------------------------------------


def test_failing_job_is_recorded_and_retried(tmp_path, synthetic, monkeypatch):
    make_experiment(tmp_path, synthetic, seeds=[0], max_retries=2)
    calls = []

    def flaky(loaded, training_set, candidate, seed):
        calls.append((training_set, candidate))
        if candidate == CANDIDATES[0] and training_set == "whole":
            raise RuntimeError("boom: always")
        if candidate == CANDIDATES[1] and calls.count((training_set, candidate)) == 1:
            raise RuntimeError("boom: once")
        return fake_result(50.0)

    monkeypatch.setattr(runner, "_train_job", flaky)
    summary = run_search(tmp_path, workers=0, progress=False)
    assert summary == {"total": 6, "complete": 5, "failed": 1, "unfinished": 0, "worker_exitcodes": []}
    assert calls.count(("whole", CANDIDATES[0])) == 3  # 1 + max_retries
    status = job_status(tmp_path).set_index(["training_set", "candidate"])
    failed = status.loc[("whole", CANDIDATES[0])]
    assert failed["state"] == "failed" and failed["errors"] == 3 and failed["error"] == "RuntimeError: boom: always"
    jobs = load_jobs(tmp_path)
    assert len(jobs) == 5 and set(jobs.loc[jobs["candidate"] == CANDIDATES[1], "attempt"]) == {2}
    errors = [t.user_attrs["error"] for t in trials(tmp_path)["t:whole"] if t.state == TrialState.FAIL]
    assert len(errors) == 4 and "Traceback" in errors[0]  # 3 always + 1 once
    run_search(tmp_path, workers=0, progress=False)  # nothing left to do
    assert calls.count(("whole", CANDIDATES[0])) == 3
    run_search(tmp_path, workers=0, progress=False, retry_failed=True)  # one more try
    assert calls.count(("whole", CANDIDATES[0])) == 4


def test_duplicate_trials_of_a_job_run_once(tmp_path, synthetic, monkeypatch):
    exp = make_experiment(tmp_path, synthetic, seeds=[0])
    _, store, ids = prepare(tmp_path)
    for c in CANDIDATES:  # as if two processes had enqueued at once
        _jobstore.enqueue(store, ids["random"], c, 0, attempt=1)
    monkeypatch.setattr(runner, "_train_job", lambda *a: fake_result(60.0))
    run_search(tmp_path, workers=0, progress=False)
    assert set(completes_per_job(tmp_path).values()) == {1}
    dups = [t for t in trials(tmp_path)["t:random"] if "duplicate" in t.user_attrs]
    assert len(dups) == len(CANDIDATES) and all(t.state == TrialState.FAIL for t in dups)
    assert len(load_jobs(tmp_path)) == len(exp.jobs())


def test_dead_and_stale_workers_jobs_are_requeued(tmp_path, synthetic):
    exp = make_experiment(tmp_path, synthetic, seeds=[0])
    _, store, ids = prepare(tmp_path)
    sid = ids["whole"]
    waiting = store.get_all_trials(sid, states=(TrialState.WAITING,))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = _jobstore.host_id()
    claimers = [  # a dead process on this host, a silent other host, another host with a fresh heartbeat
        (f"claim:{here}:{dead.pid}", {"host": here, "pid": dead.pid, "started": time.time()}),
        ("claim:elsewhere/boot:1", {"host": "elsewhere/boot", "pid": 1, "started": time.time()}),
        ("claim:elsewhere/boot:2", {"host": "elsewhere/boot", "pid": 2, "started": time.time()}),
    ]
    for t, (key, info) in zip(waiting, claimers):
        store.set_trial_user_attr(t._trial_id, key, info)
        assert store.set_trial_state_values(t._trial_id, TrialState.RUNNING)
    assert _jobstore.recover(store, sid, exp, grace=60) == 1  # only the dead local process is certain yet
    time.sleep(1.2)
    store.set_trial_user_attr(waiting[2]._trial_id, "heartbeat", time.time())
    assert _jobstore.recover(store, sid, exp, grace=1) == 1
    states = {t.user_attrs["candidate"]: t.state for t in store.get_all_trials(sid) if t.number < 3}
    assert states == {CANDIDATES[0]: TrialState.FAIL, CANDIDATES[1]: TrialState.FAIL, CANDIDATES[2]: TrialState.RUNNING}
    requeued = store.get_all_trials(sid, states=(TrialState.WAITING,))
    assert sorted(t.user_attrs["candidate"] for t in requeued) == CANDIDATES[:2]
    assert all(t.user_attrs["attempt"] == 2 for t in requeued)


def test_half_written_journal_line_is_repaired(tmp_path, synthetic):
    make_experiment(tmp_path, synthetic, seeds=[0])
    prepare(tmp_path)
    with open(tmp_path / runner.JOURNAL_FILE, "ab") as f:
        f.write(b'{"op_code":8,"worker_id":"x","trial_id":0,"user_at')  # a write cut by SIGKILL
    _, store, ids = prepare(tmp_path)
    store.set_trial_user_attr(0, "after", 1)
    assert trials(tmp_path)["t:random"][0].user_attrs["after"] == 1


# --- SIGKILL and resume -------------------------------------------------------------------------------------------


def test_sigkill_then_resume_keeps_finished_jobs_and_matches_uninterrupted_run(tmp_path, synthetic):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    for d in (killed, reference):
        make_experiment(d, synthetic, epochs=3)
    run_search(reference, workers=0, threads=1, progress=False)

    env = {**os.environ, "PYTHONPATH": str(Path(runner.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "nasprune.cli", "search", "--experiment", str(killed),
                             "--workers", "1", "--threads", "1", "--no-progress"],
                            start_new_session=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if (killed / runner.JOURNAL_FILE).exists():
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

    run_search(killed, workers=0, threads=1, progress=False)
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


# --- PostgreSQL ---------------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_two_workers_on_postgres_do_every_job_once(tmp_path, synthetic):
    url = os.environ.get("NASPRUNE_TEST_PG_URL")
    if not url:
        pytest.skip("set NASPRUNE_TEST_PG_URL (scripts/start_postgres.sh prints one)")
    exp = make_experiment(tmp_path, synthetic, name=f"pg-{uuid.uuid4().hex[:8]}", epochs=2)
    try:
        summary = run_search(tmp_path, workers=2, storage=url, threads=1, progress=False)
        assert summary["complete"] == summary["total"] == len(exp.jobs()) and summary["worker_exitcodes"] == [0, 0]
        counts = completes_per_job(tmp_path, url)
        assert len(counts) == len(exp.jobs()) and set(counts.values()) == {1}
        jobs = load_jobs(tmp_path, url)
        assert len(jobs) == len(exp.jobs()) and not jobs.duplicated(["training_set", "candidate", "seed"]).any()
    finally:
        import optuna

        for ts in exp.training_sets:
            optuna.delete_study(study_name=exp.study_name(ts), storage=url)


def test_workers_take_jobs_seed_by_seed(tmp_path, synthetic, monkeypatch):
    """A partial run holds a whole seed of every training set before any job of the next seed runs."""
    exp = make_experiment(tmp_path, synthetic, seeds=[3, 0])
    calls = []

    def fake_train_job(loaded, ts, candidate, seed):
        calls.append((ts, candidate, seed))
        return fake_result(50.0)

    monkeypatch.setattr(runner, "_train_job", fake_train_job)
    run_search(tmp_path, workers=0, progress=False)
    assert calls == exp.jobs()
    assert [s for *_, s in calls] == [3] * 6 + [0] * 6


def test_adding_a_training_set_keeps_finished_jobs_and_runs_only_the_new_ones(tmp_path, synthetic, monkeypatch):
    exp = make_experiment(tmp_path, synthetic, seeds=[0])
    calls = []
    monkeypatch.setattr(runner, "_train_job", lambda loaded, ts, c, s: calls.append(ts) or fake_result(50.0))
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
    with pytest.raises(ExperimentError, match="holds another experiment"):
        Experiment.from_dict(changed).save(tmp_path)
