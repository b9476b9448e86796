"""The job life cycle (nasprune/search/_store.py): queueing under the lock, claiming, dead workers and heartbeats
(nasprune/search/_liveness.py), read-back, and studies made by earlier versions. Workers, signals and whole runs are
in tests/search/test_runner.py."""

import dataclasses
import os
import shutil
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
from optuna.trial import TrialState

from nasprune.errors import ExperimentError, StorageError
from nasprune.proxies import ProxySet
from nasprune.search import (HISTORY_COLUMNS, JOURNAL_FILE, Experiment, JobStore, copy_training_set, load_history,
                             load_jobs, open_storage, prepare, run_search)
from nasprune.search import _liveness, _runner
from nasprune.search._liveness import HEARTBEAT_DIR, AttrBeats, FileBeats, Heartbeat, claimers, host_id
from nasprune.search._studies import job_key
from nasprune.training import train_candidate


def _record_reads(store: JobStore) -> list:
    """Replace the store's ``get_all_trials`` by one that records the states each call asks for."""
    calls, real = [], store.storage.get_all_trials

    def recording(study_id, deepcopy=True, states=None):
        calls.append(states)
        return real(study_id, deepcopy=deepcopy, states=states)

    store.storage.get_all_trials = recording
    return calls


# --- claiming -----------------------------------------------------------------------------------------------------


def test_claim_and_recover_read_only_the_trials_they_need(tmp_path, synthetic, make_experiment, candidates):
    """Their cost must not grow with the finished part of a study (on an RDB every read is a query)."""
    make_experiment(tmp_path, synthetic, seeds=[0])
    _, store = prepare(tmp_path)
    calls = _record_reads(store)
    job = store.claim()
    assert calls == [(TrialState.WAITING,)]  # the first training set had a waiting job: no other study is read
    calls.clear()
    assert store.recover(grace=60) == 0
    assert set(calls) == {(TrialState.RUNNING,)}
    assert (job.training_set, job.candidate, job.seed, job.attempt) == ("random", candidates[0], 0, 1)
    t = store.storage.get_trial(job.trial_id)
    assert t.state == TrialState.RUNNING and f"claim:{host_id()}:{os.getpid()}" in t.user_attrs


def test_a_trial_is_claimed_once(tmp_path, synthetic, make_experiment):
    make_experiment(tmp_path, synthetic, seeds=[0])
    _, store = prepare(tmp_path)
    other = JobStore.open(tmp_path)  # another worker: its own storage object, as in another process
    ts, first = next(store.waiting())
    assert store.take(ts, first) is not None
    assert other.take(ts, first) is None  # already RUNNING: the atomic transition refuses the other worker
    claimed = [store.claim() for _ in range(6)]
    assert claimed[-1] is None and len({j.trial_id for j in claimed[:-1]} | {store.trial_id(ts, first)}) == 6


# --- queueing -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_queueing_waits_for_the_queue_lock(tmp_path, synthetic, child_env, storage_url, make_experiment, candidates,
                                           drop_studies):
    """While one process holds the lock, another's `prepare` cannot queue; afterwards it sees what the first
    queued and adds nothing, so no job gets two trials."""
    url = storage_url
    exp = make_experiment(tmp_path, synthetic, name=f"lock-{uuid.uuid4().hex[:8]}", seeds=[0])
    try:
        loaded, store = prepare(tmp_path, url)
        for t in store.storage.get_all_trials(store.study_ids["random"]):  # as if never queued
            store.storage.set_trial_state_values(store.trial_id("random", t), TrialState.FAIL)
        env = child_env
        code = ("from nasprune.search import prepare; print('started', flush=True); "
                f"prepare({str(tmp_path)!r}, {url!r}); print('queued')")
        with store.locked():
            other = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
            assert other.stdout.readline().strip() == "started"
            time.sleep(3)  # ample time to load the data and reach the lock
            assert other.poll() is None, "prepare must wait for the lock"
            assert store.top_up("random") == len(candidates)
        assert other.communicate(timeout=60)[0].strip() == "queued" and other.returncode == 0
        waiting = store.storage.get_all_trials(store.study_ids["random"], states=(TrialState.WAITING,))
        assert sorted(t.user_attrs["job"] for t in waiting) == sorted(job_key(c, 0) for c in candidates)
    finally:
        drop_studies(exp, url)


def test_duplicates_from_earlier_versions_are_dropped_before_any_runs(tmp_path, synthetic, monkeypatch,
                                                                      make_experiment, trials, completes_per_job,
                                                                      fake_result, candidates):
    """Versions that queued without the lock could leave two waiting trials of one job; the next prepare
    marks the later one FAIL ``duplicate``, and every job runs once."""
    exp = make_experiment(tmp_path, synthetic, seeds=[0])
    _, store = prepare(tmp_path)
    for c in candidates:
        store._enqueue(store.study_ids["random"], c, 0, attempt=1)
    calls = []
    monkeypatch.setattr(_runner, "train_job", lambda loaded, ts, c, s: calls.append((ts, c)) or fake_result(60.0))
    run_search(tmp_path, workers=0, progress=False)
    assert sorted(calls) == sorted(set(calls)) and len(calls) == len(exp.jobs())
    assert set(completes_per_job(tmp_path).values()) == {1}
    dups = [t for t in trials(tmp_path)["t:random"] if "duplicate" in t.user_attrs]
    assert len(dups) == len(candidates) and all(t.state == TrialState.FAIL and t.number >= 3 for t in dups)


def test_fail_retries_until_max_retries_and_interrupt_always_requeues(tmp_path, synthetic, make_experiment):
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


def beat_as(beats: AttrBeats | FileBeats, host: str, pid: int, trial_id: int) -> None:
    """One heartbeat of process ``pid`` on ``host`` for the trial, written as that process's own ``beats`` write it."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(_liveness, "host_id", lambda: host)
        m.setattr(_liveness, "os", SimpleNamespace(getpid=lambda: pid))
        assert beats.beat([trial_id]) == [trial_id]


@pytest.mark.slow
def test_dead_and_stale_workers_jobs_are_requeued(tmp_path, synthetic, storage_url, make_experiment, candidates,
                                                  drop_studies):
    """A claimer on this host is alive while its process is; one on another host while its heartbeat is fresh:
    on the journal a file per process in DIR/heartbeats/ (the journal itself does not grow), on an RDB the
    trial's user attr ``heartbeat``."""
    url = storage_url
    exp = make_experiment(tmp_path, synthetic, name=f"dead-{uuid.uuid4().hex[:8]}", seeds=[0])
    try:
        _, store = prepare(tmp_path, url)
        sid = store.study_ids["whole"]
        waiting = store.storage.get_all_trials(sid, states=(TrialState.WAITING,))
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        here = host_id()
        claims = [  # a dead process on this host, a silent other host, another host with a fresh heartbeat
            (f"claim:{here}:{dead.pid}", {"host": here, "pid": dead.pid, "started": time.time()}),
            ("claim:elsewhere/boot:1", {"host": "elsewhere/boot", "pid": 1, "started": time.time()}),
            ("claim:elsewhere/boot:2", {"host": "elsewhere/boot", "pid": 2, "started": time.time()}),
        ]
        for t, (key, info) in zip(waiting, claims):
            store.storage.set_trial_user_attr(store.trial_id("whole", t), key, info)
            assert store.storage.set_trial_state_values(store.trial_id("whole", t), TrialState.RUNNING)
        assert store.recover(grace=60) == 1  # only the dead local process is certain yet
        time.sleep(1.2)
        journal = tmp_path / JOURNAL_FILE
        before = journal.stat().st_size if url is None else None
        beats = FileBeats(tmp_path / HEARTBEAT_DIR) if url is None else AttrBeats(store.storage)
        beat_as(beats, "elsewhere/boot", 2, store.trial_id("whole", waiting[2]))
        if url is None:
            assert len(list((tmp_path / HEARTBEAT_DIR).iterdir())) == 1 and journal.stat().st_size == before
            assert "heartbeat" not in store.storage.get_trial(store.trial_id("whole", waiting[2])).user_attrs
        else:
            assert "heartbeat" in store.storage.get_trial(store.trial_id("whole", waiting[2])).user_attrs
            assert not (tmp_path / HEARTBEAT_DIR).exists()
        assert store.recover(grace=1) == 1
        states = {t.user_attrs["candidate"]: t.state for t in store.storage.get_all_trials(sid) if t.number < 3}
        assert states == {candidates[0]: TrialState.FAIL, candidates[1]: TrialState.FAIL,
                          candidates[2]: TrialState.RUNNING}
        requeued = store.storage.get_all_trials(sid, states=(TrialState.WAITING,))
        assert sorted(t.user_attrs["candidate"] for t in requeued) == candidates[:2]
        assert all(t.user_attrs["attempt"] == 2 for t in requeued)
        time.sleep(1.2)  # its heartbeat is stale now: taken for dead too
        assert store.recover(grace=1) == 1
        assert store.storage.get_trial(store.trial_id("whole", waiting[2])).state == TrialState.FAIL
    finally:
        drop_studies(exp, url)


def test_half_written_journal_line_is_repaired(tmp_path, synthetic, make_experiment, trials):
    make_experiment(tmp_path, synthetic, seeds=[0])
    prepare(tmp_path)
    with open(tmp_path / JOURNAL_FILE, "ab") as f:
        f.write(b'{"op_code":8,"worker_id":"x","trial_id":0,"user_at')  # a write cut by SIGKILL
    _, store = prepare(tmp_path)
    store.storage.set_trial_user_attr(0, "after", 1)
    assert trials(tmp_path)["t:random"][0].user_attrs["after"] == 1


# --- studies made by earlier versions --------------------------------------------------------------------------------


def test_a_study_made_before_new_train_settings_still_opens(tmp_path, synthetic, make_experiment):
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
    with pytest.raises(ExperimentError, match=r"'t:whole' was run with another configuration \(setting stored "
                                              r"-> now\): train.eval_test False -> True; restore the old"):
        prepare(tmp_path)


@pytest.mark.slow
def test_the_reference_experiment_still_opens_with_nothing_to_do(tmp_path, repo):
    """results/fmnist-ref (648 jobs, run by an earlier version) resumes as finished: no study refused,
    nothing queued, every job read back."""
    shutil.copytree(repo / "results" / "fmnist-ref", tmp_path / "ref")
    said = []
    summary = run_search(tmp_path / "ref", workers=0, progress=False, log=said.append)
    assert summary == {"total": 648, "complete": 648, "failed": 0, "unfinished": 0, "worker_exitcodes": []}
    assert said == ["resumed: 648 finished jobs kept, 0 interrupted re-queued"]
    store = JobStore.open(tmp_path / "ref")
    assert not [t for sid in store.study_ids.values() for t in store.storage.get_all_trials(sid)
                if t.state in (TrialState.WAITING, TrialState.RUNNING)]
    assert len(load_jobs(tmp_path / "ref")) == 648


def test_a_corrupted_journal_names_its_file_and_line(tmp_path, synthetic, make_experiment):
    make_experiment(tmp_path, synthetic, seeds=[0])
    run_search(tmp_path, workers=0, progress=False)
    journal = tmp_path / "optuna.journal"
    lines = journal.read_bytes().split(b"\n")
    lines[2] = lines[2][:20] + b"\x01" + lines[2][20:]  # a control character inside a JSON string
    journal.write_bytes(b"\n".join(lines))
    with pytest.raises(StorageError, match=r"optuna.journal: line 3 is not a journal entry .*corrupted"):
        load_jobs(tmp_path)


def test_a_heartbeat_outlives_a_storage_hiccup(tmp_path, synthetic, storage_url, make_experiment, drop_studies):
    """A heartbeat whose write fails (a storage or disk hiccup) beats again at the next interval. On the journal it
    is this process's file in DIR/heartbeats/, removed when it stops; on an RDB the trial's ``heartbeat``."""
    url = storage_url
    exp = make_experiment(tmp_path, synthetic, name=f"beat-{uuid.uuid4().hex[:8]}", seeds=[0])
    try:
        _, store = prepare(tmp_path, url)
        job = store.claim()
        calls = []
        if url is None:
            class Flaky(FileBeats):
                """The journal's heartbeat files, failing the first write."""

                def beat(self, trial_ids):
                    calls.append(list(trial_ids))
                    if len(calls) == 1:
                        raise OSError("no space left on device")
                    return super().beat(trial_ids)

            beats = Flaky(tmp_path / HEARTBEAT_DIR)
        else:
            class Storage:
                """The storage, failing its first heartbeat write."""

                def set_trial_user_attr(self, trial_id, key, value):
                    calls.append(key)
                    if len(calls) == 1:
                        raise RuntimeError("connection reset")
                    store.storage.set_trial_user_attr(trial_id, key, value)

            beats = AttrBeats(Storage())
        beat = Heartbeat(beats, [job.trial_id], 0.05)
        beat.start()
        deadline = time.time() + 10
        while len(calls) < 3 and time.time() < deadline:
            time.sleep(0.02)
        t = store.storage.get_trial(job.trial_id)
        (claim,) = claimers(t).values()
        last = store._beats.last(t)(claim)  # as recover() reads it
        beat.stop()
        assert len(calls) >= 3 and beat.trial_ids == [job.trial_id]  # kept beating after the failure
        assert last is not None and time.time() - last < 5
        if url is None:
            assert "heartbeat" not in t.user_attrs  # not in the journal
            assert list((tmp_path / HEARTBEAT_DIR).iterdir()) == []  # removed when it stopped
        else:
            assert "heartbeat" in store.storage.get_trial(job.trial_id).user_attrs
    finally:
        drop_studies(exp, url)


# --- reading back -------------------------------------------------------------------------------------------------


def test_the_job_store_records_the_history_and_load_history_reads_it_back(synthetic, tmp_path, candidates):
    ProxySet.from_selection(synthetic, np.arange(0, 400, 2), "random").save(tmp_path / "p.json")
    Experiment(name="hist", dataset={"name": "synthetic"}, candidates=candidates[:2],
               training_sets={"p": {"proxy": "p.json", "train": {"epochs": 2, "eval_every": 1}}}).save(tmp_path)
    loaded, store = prepare(tmp_path)
    x, y = loaded.sets["p"]
    recorded = {}
    for with_val in (True, False):
        job = store.claim()
        config = dataclasses.replace(loaded.train_configs["p"], seed=job.seed, eval_every=int(with_val))
        r = train_candidate(job.candidate, loaded.dataset, x, y, config)
        store.complete(job, {"val_acc": r.val_acc, "history": r.history}, r.val_acc)
        recorded[job.candidate] = r
    history = load_history(tmp_path)
    assert list(history.columns) == HISTORY_COLUMNS
    with_val, without = candidates[0], candidates[1]  # jobs are claimed in the experiment's order
    assert set(history["candidate"]) == {with_val}  # a history without val_acc is not stored
    assert history["epoch"].tolist() == [1, 2] and history["seed"].tolist() == [0, 0]
    assert history["val_acc"].tolist() == [h["val_acc"] for h in recorded[with_val].history]
    assert history["train_loss"].tolist() == pytest.approx([h["train_loss"] for h in recorded[with_val].history])
    storage = open_storage(tmp_path)
    trials = storage.get_all_trials(storage.get_study_id_from_name("hist:p"), states=(TrialState.COMPLETE,))
    attrs = {t.user_attrs["candidate"]: t.user_attrs for t in trials}
    assert attrs[with_val]["history"][1] == {"epoch": 2, "val_acc": recorded[with_val].val_acc,
                                             "train_loss": pytest.approx(recorded[with_val].train_loss)}
    assert "history" not in attrs[without]
    assert load_jobs(tmp_path)["val_acc"].notna().all()  # jobs.csv is unchanged by it


# --- reusing finished jobs ------------------------------------------------------------------------------------------


def test_copied_jobs_are_reused_not_trained_again(tmp_path, synthetic, make_experiment, trials, completes_per_job,
                                                  candidates):
    """A new experiment that copies a finished training set trains only the rest; the copy refuses an
    experiment of another name, a training set the target has started, and one the source has not."""
    make_experiment(tmp_path / "a", synthetic, seeds=[0])
    run_search(tmp_path / "a", workers=0, progress=False, log=None)
    make_experiment(tmp_path / "b", synthetic, seeds=[0])
    with pytest.raises(ExperimentError, match="use one storage"):
        copy_training_set(tmp_path / "a", tmp_path / "a", "whole")
    assert copy_training_set(tmp_path / "a", tmp_path / "b", "whole") == len(candidates)
    assert len(trials(tmp_path / "b")["t:whole"]) == len(candidates)  # copied before any run of b
    with pytest.raises(ExperimentError, match="has started it already"):
        copy_training_set(tmp_path / "a", tmp_path / "b", "whole")
    summary = run_search(tmp_path / "b", workers=0, progress=False, log=None)
    assert (summary["total"], summary["complete"]) == (2 * len(candidates), 2 * len(candidates))
    assert all(n == 1 for n in completes_per_job(tmp_path / "b").values())
    a, b = (load_jobs(tmp_path / d).set_index(["training_set", "candidate"]) for d in ("a", "b"))
    # the same trials, not retrained ones: their start and end times are a's, to the microsecond
    kept = ["started", "completed", "val_acc"]
    assert b.loc["whole", kept].equals(a.loc["whole", kept])
    assert not b.loc["random", "started"].isin(a.loc["random", "started"]).any()  # trained in b
    make_experiment(tmp_path / "e", synthetic, seeds=[0])
    ProxySet.from_selection(synthetic, np.arange(200), "random").save(tmp_path / "e" / "random.json")
    with pytest.raises(ExperimentError, match="differ in proxy file contents"):
        copy_training_set(tmp_path / "a", tmp_path / "e", "random")
    make_experiment(tmp_path / "c", synthetic, seeds=[0], name="other")
    with pytest.raises(ExperimentError, match="differ in name"):
        copy_training_set(tmp_path / "a", tmp_path / "c", "whole")
    make_experiment(tmp_path / "d", synthetic, seeds=[0])
    with pytest.raises(ExperimentError, match="has not started it"):
        copy_training_set(tmp_path / "d", tmp_path / "b", "whole")


def test_the_suite_has_postgresql_wherever_its_server_is_installed(postgres_server):
    """The README's test command runs the multi-worker tests on PostgreSQL by itself: where the server's binaries
    are installed (scripts/setup.sh installs them), a throwaway server is started when NASPRUNE_TEST_PG_URL is unset."""
    from sqlalchemy import create_engine, text

    if postgres_server is None:  # the fixture's answer where no server binary is installed and no URL given
        pytest.skip("PostgreSQL's server binaries are not installed here")
    engine = create_engine(postgres_server)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


@pytest.mark.postgres
def test_commands_opening_a_new_database_at_once_all_open_it(pg_url, child_env):
    """Machines started together on a new PostgreSQL database all create Optuna's tables; the ones that lose that
    race open the tables the winner made instead of failing ("relation already exists")."""
    from sqlalchemy import create_engine, text

    database = f"fresh_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {database}"))
    url = pg_url.rsplit("/", 1)[0] + "/" + database
    opener = f"from nasprune.search import open_storage; open_storage('.', {url!r}).get_all_studies(); print('ok')"
    try:
        procs = [subprocess.Popen([sys.executable, "-c", opener], env=child_env, text=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for _ in range(4)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [(p.returncode, o[0].strip()) for p, o in zip(procs, outs)] == [(0, "ok")] * 4, [o[1] for o in outs]
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        admin.dispose()
