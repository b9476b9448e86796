"""The job life cycle (nasprune/jobs.py): queueing under the lock, claiming, dead workers, read-back, and
studies made by earlier versions. Workers, signals and whole runs are in tests/test_runner.py."""

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from optuna.trial import TrialState
from test_runner import CANDIDATES, _drop_studies, _pg_url, completes_per_job, fake_result, make_experiment, trials

from nasprune import jobs, runner
from nasprune.jobs import JobStore, StorageError
from nasprune.proxy import ProxySet
from nasprune.runner import load_jobs, prepare, run_search

REPO = Path(__file__).parents[1]


def _record_reads(store: JobStore) -> list:
    """Replace the store's ``get_all_trials`` by one that records the states each call asks for."""
    calls, real = [], store.storage.get_all_trials

    def recording(study_id, deepcopy=True, states=None):
        calls.append(states)
        return real(study_id, deepcopy=deepcopy, states=states)

    store.storage.get_all_trials = recording
    return calls


# --- claiming -----------------------------------------------------------------------------------------------------


def test_claim_and_recover_read_only_the_trials_they_need(tmp_path, synthetic):
    """Their cost must not grow with the finished part of a study (on an RDB every read is a query)."""
    make_experiment(tmp_path, synthetic, seeds=[0])
    _, store = prepare(tmp_path)
    calls = _record_reads(store)
    job = store.claim()
    assert calls == [(TrialState.WAITING,)]  # the first training set had a waiting job: no other study is read
    calls.clear()
    assert store.recover(grace=60) == 0
    assert set(calls) == {(TrialState.RUNNING,)}
    assert (job.training_set, job.candidate, job.seed, job.attempt) == ("random", CANDIDATES[0], 0, 1)
    t = store.storage.get_trial(job.trial_id)
    assert t.state == TrialState.RUNNING and f"claim:{jobs.host_id()}:{os.getpid()}" in t.user_attrs


def test_a_trial_is_claimed_once(tmp_path, synthetic):
    make_experiment(tmp_path, synthetic, seeds=[0])
    _, store = prepare(tmp_path)
    ts, first = next(store.waiting())
    assert store.take(ts, first) is not None
    assert store.take(ts, first) is None  # already RUNNING: the atomic transition refuses
    claimed = [store.claim() for _ in range(6)]
    assert claimed[-1] is None and len({j.trial_id for j in claimed[:-1]} | {first._trial_id}) == 6


# --- queueing -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["journal", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_queueing_waits_for_the_queue_lock(tmp_path, synthetic, backend):
    """While one process holds the lock, another's `prepare` cannot queue; afterwards it sees what the first
    queued and adds nothing, so no job gets two trials."""
    url = _pg_url() if backend == "postgres" else None
    exp = make_experiment(tmp_path, synthetic, name=f"lock-{uuid.uuid4().hex[:8]}", seeds=[0])
    try:
        loaded, store = prepare(tmp_path, url)
        for t in store.storage.get_all_trials(store.study_ids["random"]):  # as if never queued
            store.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        code = ("from nasprune.runner import prepare; print('started', flush=True); "
                f"prepare({str(tmp_path)!r}, {url!r}); print('queued')")
        with store.locked():
            other = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
            assert other.stdout.readline().strip() == "started"
            time.sleep(3)  # ample time to load the data and reach the lock
            assert other.poll() is None, "prepare must wait for the lock"
            assert store.top_up("random") == len(CANDIDATES)
        assert other.communicate(timeout=60)[0].strip() == "queued" and other.returncode == 0
        waiting = store.storage.get_all_trials(store.study_ids["random"], states=(TrialState.WAITING,))
        assert sorted(t.user_attrs["job"] for t in waiting) == sorted(jobs.job_key(c, 0) for c in CANDIDATES)
    finally:
        _drop_studies(exp, url)


def test_duplicates_from_earlier_versions_are_dropped_before_any_runs(tmp_path, synthetic, monkeypatch):
    """Versions that queued without the lock could leave two waiting trials of one job; the next prepare
    marks the later one FAIL ``duplicate``, and every job runs once."""
    exp = make_experiment(tmp_path, synthetic, seeds=[0])
    _, store = prepare(tmp_path)
    for c in CANDIDATES:
        store._enqueue(store.study_ids["random"], c, 0, attempt=1)
    calls = []
    monkeypatch.setattr(runner, "_train_job", lambda loaded, ts, c, s: calls.append((ts, c)) or fake_result(60.0))
    run_search(tmp_path, workers=0, progress=False)
    assert sorted(calls) == sorted(set(calls)) and len(calls) == len(exp.jobs())
    assert set(completes_per_job(tmp_path).values()) == {1}
    dups = [t for t in trials(tmp_path)["t:random"] if "duplicate" in t.user_attrs]
    assert len(dups) == len(CANDIDATES) and all(t.state == TrialState.FAIL and t.number >= 3 for t in dups)


def test_fail_retries_until_max_retries_and_interrupt_always_requeues(tmp_path, synthetic):
    make_experiment(tmp_path, synthetic, seeds=[0], max_retries=1)
    _, store = prepare(tmp_path)
    job = store.claim()
    store.interrupt(job, "Terminated: stopped by SIGTERM")
    rows = {(r["training_set"], r["candidate"]): r for r in store.status_rows()}
    assert rows[("random", job.candidate)]["state"] == "waiting" and rows[("random", job.candidate)]["requeued"]
    attempts = []
    for _ in range(3):  # interrupted attempts do not count against the retries
        ts, t = next((ts, t) for ts, t in store.waiting() if ts == "random" and t.user_attrs["job"] == job.key)
        job = store.take(ts, t)
        attempts.append(job.attempt)
        queued = store.fail(job, RuntimeError("boom"))
        if not queued:
            break
    assert attempts == [2, 3] and not queued
    row = next(r for r in store.status_rows() if r["training_set"] == "random" and r["candidate"] == job.candidate)
    assert (row["state"], row["errors"], row["error"], row["requeued"]) == ("failed", 2, "RuntimeError: boom", False)


# --- dead workers -------------------------------------------------------------------------------------------------


def test_dead_and_stale_workers_jobs_are_requeued(tmp_path, synthetic):
    make_experiment(tmp_path, synthetic, seeds=[0])
    _, store = prepare(tmp_path)
    sid = store.study_ids["whole"]
    waiting = store.storage.get_all_trials(sid, states=(TrialState.WAITING,))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = jobs.host_id()
    claimers = [  # a dead process on this host, a silent other host, another host with a fresh heartbeat
        (f"claim:{here}:{dead.pid}", {"host": here, "pid": dead.pid, "started": time.time()}),
        ("claim:elsewhere/boot:1", {"host": "elsewhere/boot", "pid": 1, "started": time.time()}),
        ("claim:elsewhere/boot:2", {"host": "elsewhere/boot", "pid": 2, "started": time.time()}),
    ]
    for t, (key, info) in zip(waiting, claimers):
        store.storage.set_trial_user_attr(t._trial_id, key, info)
        assert store.storage.set_trial_state_values(t._trial_id, TrialState.RUNNING)
    assert store.recover(grace=60) == 1  # only the dead local process is certain yet
    time.sleep(1.2)
    store.storage.set_trial_user_attr(waiting[2]._trial_id, "heartbeat", time.time())
    assert store.recover(grace=1) == 1
    states = {t.user_attrs["candidate"]: t.state for t in store.storage.get_all_trials(sid) if t.number < 3}
    assert states == {CANDIDATES[0]: TrialState.FAIL, CANDIDATES[1]: TrialState.FAIL, CANDIDATES[2]: TrialState.RUNNING}
    requeued = store.storage.get_all_trials(sid, states=(TrialState.WAITING,))
    assert sorted(t.user_attrs["candidate"] for t in requeued) == CANDIDATES[:2]
    assert all(t.user_attrs["attempt"] == 2 for t in requeued)


def test_half_written_journal_line_is_repaired(tmp_path, synthetic):
    make_experiment(tmp_path, synthetic, seeds=[0])
    prepare(tmp_path)
    with open(tmp_path / jobs.JOURNAL_FILE, "ab") as f:
        f.write(b'{"op_code":8,"worker_id":"x","trial_id":0,"user_at')  # a write cut by SIGKILL
    _, store = prepare(tmp_path)
    store.storage.set_trial_user_attr(0, "after", 1)
    assert trials(tmp_path)["t:random"][0].user_attrs["after"] == 1


# --- studies made by earlier versions --------------------------------------------------------------------------------


def test_a_study_made_before_new_train_settings_still_opens(tmp_path, synthetic):
    """A setting added to TrainConfig since (at its default) and one that changes only speed
    (eval_batch_size) do not make a stored study "another configuration"; a real change still does."""
    make_experiment(tmp_path, synthetic, seeds=[0])
    _, store = prepare(tmp_path)
    sid = store.study_ids["whole"]
    stored = store.storage.get_study_user_attrs(sid)["config"]
    train = {k: v for k, v in stored["train"].items() if k != "eval_test"} | {"eval_batch_size": 2048}
    old = {**stored, "train": train}
    store.storage.set_study_user_attr(sid, "config", old)
    prepare(tmp_path)
    store.storage.set_study_user_attr(sid, "config", {**old, "train": {**old["train"], "eval_test": False}})
    with pytest.raises(jobs.ExperimentError, match=r"'t:whole' was run with another configuration \(setting stored "
                                                   r"-> now\): train.eval_test False -> True; restore the old"):
        prepare(tmp_path)


def test_the_reference_experiment_still_opens_with_nothing_to_do(tmp_path):
    """results/fmnist-ref (648 jobs, run by an earlier version) resumes as finished: no study refused,
    nothing queued, every job read back."""
    shutil.copytree(REPO / "results" / "fmnist-ref", tmp_path / "ref")
    said = []
    summary = run_search(tmp_path / "ref", workers=0, progress=False, log=said.append)
    assert summary == {"total": 648, "complete": 648, "failed": 0, "unfinished": 0, "worker_exitcodes": []}
    assert said == ["resumed: 648 finished jobs kept, 0 interrupted re-queued"]
    store = JobStore.open(tmp_path / "ref")
    assert not [t for sid in store.study_ids.values() for t in store.storage.get_all_trials(sid)
                if t.state in (TrialState.WAITING, TrialState.RUNNING)]
    assert len(load_jobs(tmp_path / "ref")) == 648


def test_a_corrupted_journal_names_its_file_and_line(tmp_path, synthetic):
    make_experiment(tmp_path, synthetic, seeds=[0])
    run_search(tmp_path, workers=0, progress=False)
    journal = tmp_path / "optuna.journal"
    lines = journal.read_bytes().split(b"\n")
    lines[2] = lines[2][:20] + b"\x01" + lines[2][20:]  # a control character inside a JSON string
    journal.write_bytes(b"\n".join(lines))
    with pytest.raises(StorageError, match=r"optuna.journal: line 3 is not a journal entry .*corrupted"):
        load_jobs(tmp_path)


def test_a_heartbeat_outlives_a_storage_hiccup(tmp_path, synthetic):
    make_experiment(tmp_path, synthetic, seeds=[0])
    _, store = prepare(tmp_path)
    job = store.claim()
    calls = []

    class Flaky:
        """The storage, failing its first heartbeat write."""

        def set_trial_user_attr(self, trial_id, key, value):
            calls.append(key)
            if len(calls) == 1:
                raise RuntimeError("connection reset")
            store.storage.set_trial_user_attr(trial_id, key, value)

    beat = jobs.Heartbeat(Flaky(), job.trial_id, 0.05)
    beat.start()
    deadline = time.time() + 10
    while len(calls) < 3 and time.time() < deadline:
        time.sleep(0.02)
    beat.stop()
    assert len(calls) >= 3 and beat.trial_ids == [job.trial_id]  # kept beating after the failure
    assert "heartbeat" in store.storage.get_trial(job.trial_id).user_attrs


# --- reusing finished jobs ------------------------------------------------------------------------------------------


def test_copied_jobs_are_reused_not_trained_again(tmp_path, synthetic):
    """A new experiment that copies a finished training set trains only the rest; the copy refuses an
    experiment of another name, a training set the target has started, and one the source has not."""
    make_experiment(tmp_path / "a", synthetic, seeds=[0])
    run_search(tmp_path / "a", workers=0, progress=False, log=None)
    make_experiment(tmp_path / "b", synthetic, seeds=[0])
    with pytest.raises(jobs.ExperimentError, match="use one storage"):
        jobs.copy_training_set(tmp_path / "a", tmp_path / "a", "whole")
    assert jobs.copy_training_set(tmp_path / "a", tmp_path / "b", "whole") == len(CANDIDATES)
    assert len(trials(tmp_path / "b")["t:whole"]) == len(CANDIDATES)  # copied before any run of b
    with pytest.raises(jobs.ExperimentError, match="has started it already"):
        jobs.copy_training_set(tmp_path / "a", tmp_path / "b", "whole")
    summary = run_search(tmp_path / "b", workers=0, progress=False, log=None)
    assert (summary["total"], summary["complete"]) == (2 * len(CANDIDATES), 2 * len(CANDIDATES))
    assert all(n == 1 for n in completes_per_job(tmp_path / "b").values())
    a, b = (load_jobs(tmp_path / d).set_index(["training_set", "candidate"]) for d in ("a", "b"))
    # the same trials, not retrained ones: their start and end times are a's, to the microsecond
    kept = ["started", "completed", "val_acc"]
    assert b.loc["whole", kept].equals(a.loc["whole", kept])
    assert not b.loc["random", "started"].isin(a.loc["random", "started"]).any()  # trained in b
    make_experiment(tmp_path / "e", synthetic, seeds=[0])
    ProxySet.from_selection(synthetic, np.arange(200), "random").save(tmp_path / "e" / "random.json")
    with pytest.raises(jobs.ExperimentError, match="differ in proxy file contents"):
        jobs.copy_training_set(tmp_path / "a", tmp_path / "e", "random")
    make_experiment(tmp_path / "c", synthetic, seeds=[0], name="other")
    with pytest.raises(jobs.ExperimentError, match="differ in name"):
        jobs.copy_training_set(tmp_path / "a", tmp_path / "c", "whole")
    make_experiment(tmp_path / "d", synthetic, seeds=[0])
    with pytest.raises(jobs.ExperimentError, match="has not started it"):
        jobs.copy_training_set(tmp_path / "d", tmp_path / "b", "whole")
