"""The runner with fused groups (``run_search(fuse=K)``, ``nasprune search --fuse K``): which jobs share a group,
results equal to unfused runs, a diverging member, SIGKILL and resume, and two workers on one queue.
Fused training itself (member by member against ``train()``) is tested in tests/training/test_fused.py."""

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

from nasprune.cli import build_parser
from nasprune.errors import ConfigError
from nasprune.proxies import ProxySet
from nasprune.search import JOB_COLUMNS, JOURNAL_FILE, Experiment, JobStore, Terminated, load_jobs, prepare, run_search
from nasprune.search import _liveness, _loaded, _runner
from nasprune.search._liveness import HEARTBEAT_DIR, claimers
from nasprune.search._studies import job_key
from nasprune.workflows import SearchConfig

CANDIDATES = ["w8-d1-relu-none-avgpooling", "w8-d1-sigmoid-batchnorm-maxpooling", "w8-d2-leakyrelu-groupnorm-none"]
# One validation image is 0.5 percentage points of the synthetic set's 200. Fused members' weights equal separate
# runs' to float32 rounding (2e-6 relative, tests/training/test_fused.py), so an image's predicted class can differ
# only where its two largest logits tie to that precision: we allow one such image per job (none was seen here).
ONE_VAL_IMAGE = 100 / 200


def make_experiment(directory: Path, dataset, *, name: str = "t", candidates=CANDIDATES, seeds=(0, 1),
                    proxies=("p0", "p1"), whole: bool = True, max_retries: int = 2, **train) -> Experiment:
    """Two (or more) random 200-image proxies, each drawn with its own seed, and the whole synthetic split."""
    directory.mkdir(parents=True, exist_ok=True)
    train = {"epochs": 2, "lr": 0.05, **train}
    sets = {}
    for i, p in enumerate(proxies):
        kept = np.random.default_rng(i).choice(len(dataset.train_y), 200, replace=False)
        ProxySet.from_selection(dataset, kept, "random").save(directory / f"{p}.json")
        sets[p] = {"proxy": f"{p}.json", "train": train}
    if whole:
        sets["whole"] = {"proxy": None, "train": train}
    exp = Experiment(name=name, dataset={"name": "synthetic"}, candidates=list(candidates), training_sets=sets,
                     seeds=list(seeds), max_retries=max_retries)
    exp.save(directory)
    return exp


@pytest.fixture()
def record_groups(monkeypatch, fake_result):
    """``record_groups(fake=False) -> groups``: from now on, record every group the runner trains as
    [(training set, candidate, seed)], in order (a job alone is a group of one); with ``fake``, record instantly
    without training."""

    def record(fake: bool = False) -> list[list[tuple[str, str, int]]]:
        groups: list = []
        real_group, real_job = _runner.train_group, _runner.train_job

        def group(loaded, members):
            groups.append([(j.training_set, j.candidate, j.seed) for j in members])
            return [fake_result(50.0) for _ in members] if fake else real_group(loaded, members)

        def alone(loaded, ts, candidate, seed):
            groups.append([(ts, candidate, seed)])
            return fake_result(50.0) if fake else real_job(loaded, ts, candidate, seed)

        monkeypatch.setattr(_runner, "train_group", group)
        monkeypatch.setattr(_runner, "train_job", alone)
        return groups

    return record


@pytest.fixture()
def all_trials(trials):
    """``all_trials(directory, url=None) -> [FrozenTrial]``: every trial of the experiment."""
    return lambda directory, url=None: [t for ts in trials(directory, url).values() for t in ts]


def sorted_jobs(directory: Path) -> pd.DataFrame:
    return load_jobs(directory).sort_values(["training_set", "candidate", "seed"]).reset_index(drop=True)


# --- groups and results -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fused_and_unfused_runs_give_the_same_jobs(tmp_path, synthetic, all_trials, record_groups):
    """Groups hold one candidate, one training config and one training-set size (the two 200-image proxies and
    both seeds; the whole set's two seeds apart); every member is its own trial, and jobs.csv has the same
    columns and, per job, the accuracies of the unfused run."""
    for d in ("alone", "fused"):
        make_experiment(tmp_path / d, synthetic)
    run_search(tmp_path / "alone", workers=0, threads=1, progress=False)
    groups = record_groups()
    summary = run_search(tmp_path / "fused", workers=0, threads=1, progress=False, fuse=4)
    assert summary["complete"] == summary["total"] == 18

    proxy_groups = [sorted((ts, s) for ts, _, s in g) for g in groups if g[0][0] != "whole"]
    assert proxy_groups == [[("p0", 0), ("p0", 1), ("p1", 0), ("p1", 1)]] * 3
    assert [sorted(s for _, _, s in g) for g in groups if g[0][0] == "whole"] == [[0, 1]] * 3
    assert all(len({c for _, c, _ in g}) == 1 for g in groups) and len(groups) == 6
    assert sorted(j for g in groups for j in g) == sorted(Experiment.load(tmp_path / "fused").jobs())

    fused = all_trials(tmp_path / "fused")
    assert len(fused) == 18 and {t.state for t in fused} == {TrialState.COMPLETE}
    assert sorted(t.user_attrs["fused"] for t in fused) == [2] * 6 + [4] * 12
    assert not any("fused" in t.user_attrs for t in all_trials(tmp_path / "alone"))

    a, b = sorted_jobs(tmp_path / "alone"), sorted_jobs(tmp_path / "fused")  # jobs.csv's rows
    assert list(a.columns) == list(b.columns) == JOB_COLUMNS and len(a) == len(b) == 18
    keys = ["training_set", "candidate", "seed", "epochs", "diverged", "images", "attempt"]
    pd.testing.assert_frame_equal(a[keys], b[keys])
    assert (a["val_acc"] - b["val_acc"]).abs().max() <= ONE_VAL_IMAGE and (a["val_acc"] != b["val_acc"]).sum() <= 1
    assert (a["test_acc"] - b["test_acc"]).abs().max() <= 100 / 300  # one of the 300 test images
    assert np.allclose(a["train_loss"], b["train_loss"], rtol=1e-4)
    assert a["val_acc"].max() > 80 and a["val_acc"].nunique() > 5  # they learn, and differ: equal means something
    assert (b["seconds"] > 0).all() and (b["wall_seconds"] >= b["seconds"]).all()


def test_a_diverging_member_is_recorded_diverged_and_the_others_complete(tmp_path, synthetic, monkeypatch,
                                                                         all_trials, record_groups):
    """Proxy ``bright`` holds images 30,000 times too bright (as tests/training/test_fused.py makes them): its members
    diverge, fused as alone, and the members trained beside them in one network finish as if alone."""
    real_load = _runner.load

    def bright_load(directory):
        loaded = real_load(directory)
        x, y = loaded.sets["bright"]
        loaded.sets["bright"] = (x.float() / 255 * 3e4, y)  # float images are taken as [0, 1]
        return loaded

    monkeypatch.setattr(_runner, "load", bright_load)
    for d in ("alone", "fused"):
        make_experiment(tmp_path / d, synthetic, candidates=["w8-d1-leakyrelu-none-avgpooling"],
                        proxies=("p0", "bright"), whole=False, epochs=3, batch_size=64)
    run_search(tmp_path / "alone", workers=0, threads=1, progress=False)
    groups = record_groups()
    run_search(tmp_path / "fused", workers=0, threads=1, progress=False, fuse=4)
    assert [len(g) for g in groups] == [4]

    a, b = sorted_jobs(tmp_path / "alone"), sorted_jobs(tmp_path / "fused")
    assert list(a["training_set"]) == list(b["training_set"]) == ["bright", "bright", "p0", "p0"]
    assert list(a["diverged"]) == list(b["diverged"]) == [True, True, False, False]
    assert b.loc[b.diverged, "train_loss"].isna().all() and b.loc[~b.diverged, "train_loss"].notna().all()
    assert list(a["epochs"]) == list(b["epochs"]) and list(b["epochs"][2:]) == [3, 3]
    assert (b.loc[b.diverged, "epochs"] < 3).all()
    assert (a["val_acc"] - b["val_acc"]).abs().max() <= ONE_VAL_IMAGE
    assert np.allclose(a["train_loss"], b["train_loss"], rtol=1e-4, equal_nan=True)
    assert b.loc[~b.diverged, "val_acc"].min() > 50  # chance is 25%: the others really trained
    assert {t.state for t in all_trials(tmp_path / "fused")} == {TrialState.COMPLETE}


def test_an_error_fails_every_member_and_each_is_retried(tmp_path, synthetic, monkeypatch, all_trials):
    make_experiment(tmp_path, synthetic, candidates=CANDIDATES[:1], whole=False, max_retries=1)
    calls = []

    def boom(loaded, members):
        calls.append(len(members))
        raise RuntimeError("boom")

    monkeypatch.setattr(_runner, "train_group", boom)
    summary = run_search(tmp_path, workers=0, progress=False, fuse=4)
    assert calls == [4, 4] and summary["failed"] == 4 and summary["complete"] == 0  # 1 + max_retries attempts
    failed = all_trials(tmp_path)
    assert len(failed) == 8 and all(t.state == TrialState.FAIL and "RuntimeError: boom" in t.user_attrs["error"]
                                    for t in failed)


def test_every_member_beats_and_an_interrupt_requeues_every_member(tmp_path, synthetic, monkeypatch, storage_url,
                                                                   all_trials, drop_studies):
    """While a group trains, each member's claim has a fresh heartbeat (on the journal its process's file in
    DIR/heartbeats/, one for the whole group, removed when the group stops; on an RDB each member's trial's user
    attr ``heartbeat``); SIGTERM marks each member interrupted and queues it again, without counting against its
    retries."""
    url = storage_url
    exp = make_experiment(tmp_path, synthetic, name=f"fb-{uuid.uuid4().hex[:8]}", candidates=CANDIDATES[:1],
                          whole=False)
    beats, files = [], []

    def slow_then_terminated(loaded, members):
        deadline = time.time() + 10
        store = JobStore.open(tmp_path, url=url)
        while time.time() < deadline:
            trials = [store.storage.get_trial(j.trial_id) for j in members]
            last = [store._beats.last(t)(claim) for t in trials for claim in claimers(t).values()]
            if len(last) == len(members) and all(b is not None for b in last):
                break
            time.sleep(0.02)
        beats.extend((b, t.user_attrs) for b, t in zip(last, trials))
        if (tmp_path / HEARTBEAT_DIR).exists():
            files.extend((tmp_path / HEARTBEAT_DIR).iterdir())
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler raises here

    monkeypatch.setattr(_runner, "train_group", slow_then_terminated)
    try:
        with pytest.raises(Terminated):
            run_search(tmp_path, workers=0, storage=url, progress=False, fuse=4, heartbeat=0.05)
        assert len(beats) == 4 and all(b is not None and time.time() - b < 15 for b, _ in beats)
        if url is None:  # one file, this process's; no heartbeat in the journal
            assert len(files) == 1 and not any("heartbeat" in attrs for _, attrs in beats)
            assert list((tmp_path / HEARTBEAT_DIR).iterdir()) == []  # removed when the group stopped
        else:
            assert files == [] and all(attrs["heartbeat"] == b for b, attrs in beats)
        stopped = all_trials(tmp_path, url)
        interrupted = [t for t in stopped if t.state == TrialState.FAIL]
        assert len(interrupted) == 4 and all(t.user_attrs["interrupted"] == "Terminated: stopped by SIGTERM"
                                             for t in interrupted)
        requeued = [t for t in stopped if t.state == TrialState.WAITING]
        assert sorted(t.user_attrs["job"] for t in requeued) == sorted(t.user_attrs["job"] for t in interrupted)
        assert all(t.user_attrs["attempt"] == 2 for t in requeued)
        rows = JobStore.open(tmp_path, url=url).status_rows()
        assert all(r["state"] == "waiting" and r["requeued"] and r["errors"] == 0 for r in rows)
    finally:
        drop_studies(exp, url)


# --- claiming ---------------------------------------------------------------------------------------------------------


def test_a_member_taken_by_another_worker_is_skipped_not_shared(tmp_path, synthetic):
    """Worker A reads the waiting jobs; worker B then takes one member of the first group. A's group, claimed
    from its stale snapshot, is the three members left; B's next group is the next candidate's four."""
    make_experiment(tmp_path, synthetic, whole=False)
    loaded, a = prepare(tmp_path)
    b = JobStore.open(tmp_path, loaded.experiment)
    keys = _loaded.group_keys(loaded)

    def group_of(ts, t):
        return t.user_attrs["candidate"], keys[ts]

    snapshot = list(a.waiting())
    ts, t = next((ts, t) for ts, t in b.waiting() if (ts, t.user_attrs["job"]) == ("p1", f"{CANDIDATES[0]}|seed=0"))
    by_b = [b.take(ts, t)]
    a.waiting = lambda: iter(snapshot)
    group_a = a.claim_group(4, group_of)
    by_b += b.claim_group(4, group_of)
    assert [(j.training_set, j.candidate, j.seed) for j in group_a] == [
        ("p0", CANDIDATES[0], 0), ("p0", CANDIDATES[0], 1), ("p1", CANDIDATES[0], 1)]
    assert [(j.candidate, j.seed) for j in by_b[1:]] == [(CANDIDATES[1], 0)] * 2 + [(CANDIDATES[1], 1)] * 2
    assert len({j.trial_id for j in group_a + by_b}) == 8  # none shared
    assert all(a.storage.get_trial(j.trial_id).state == TrialState.RUNNING for j in group_a + by_b)
    with pytest.raises(ValueError, match="size must be >= 1, got 0"):
        a.claim_group(0, group_of)


@pytest.mark.slow
def test_two_workers_never_train_the_same_member(tmp_path, synthetic, storage_url, completes_per_job, drop_studies,
                                                 all_trials):
    url = storage_url
    exp = make_experiment(tmp_path, synthetic, name=f"fz-{uuid.uuid4().hex[:8]}", epochs=1)
    try:
        summary = run_search(tmp_path, workers=2, storage=url, threads=1, progress=False, fuse=4)
        assert summary["complete"] == summary["total"] == 18 and summary["worker_exitcodes"] == [0, 0]
        everything = all_trials(tmp_path, url)
        assert len(everything) == 18 and {t.state for t in everything} == {TrialState.COMPLETE}
        assert set(completes_per_job(tmp_path, url).values()) == {1}
        assert any(t.user_attrs.get("fused", 1) > 1 for t in everything)
        assert len(load_jobs(tmp_path, url)) == len(exp.jobs())
    finally:
        drop_studies(exp, url)


# --- SIGKILL and resume -----------------------------------------------------------------------------------------------


@pytest.fixture()
def by_state(trials):
    """``by_state(directory) -> {state: {(study, job): trial}}``: the trials by state."""

    def group(directory: Path) -> dict[TrialState, dict[tuple[str, str], object]]:
        out: dict = {}
        for study, ts in trials(directory).items():
            for t in ts:
                out.setdefault(t.state, {})[(study, t.user_attrs["job"])] = t
        return out

    return group


@pytest.fixture()
def resume(record_groups):
    """``resume(directory) -> (trained, groups, log)``: resume with fuse=4 and instant fake training; the (study,
    job) trained, the groups and the log."""

    def run(directory: Path) -> tuple[list[tuple[str, str]], list[list], list[str]]:
        groups, said = record_groups(fake=True), []
        summary = run_search(directory, workers=0, progress=False, fuse=4, log=said.append)
        assert summary["complete"] == summary["total"]
        return [(f"t:{ts}", job_key(c, s)) for g in groups for ts, c, s in g], groups, said

    return run


@pytest.mark.slow
def test_sigkill_of_a_training_group_then_resume_loses_nothing_and_trains_nothing_twice(tmp_path, synthetic, child_env,
                                                                                        completes_per_job,
                                                                                        descendants, by_state,
                                                                                        resume):
    """`nasprune search --fuse 4`, parent and worker SIGKILLed while a group trains: finished groups are kept,
    the killed group's members are recovered, and the resumed run trains each unfinished member once."""
    make_experiment(tmp_path, synthetic, whole=False, epochs=40)  # 3 groups of 4, about a second each
    env = child_env
    proc = subprocess.Popen([sys.executable, "-m", "nasprune.cli", "search", "--experiment", str(tmp_path),
                             "--workers", "1", "--threads", "1", "--fuse", "4", "--no-progress"],
                            start_new_session=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if (tmp_path / JOURNAL_FILE).exists():
                states = by_state(tmp_path)
                if len(states.get(TrialState.COMPLETE, {})) >= 4 and len(states.get(TrialState.RUNNING, {})) == 4:
                    break  # a group done, the next one training
            time.sleep(0.05)
    finally:
        pids = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)  # the command and its worker
        proc.wait()
    deadline = time.time() + 10  # a killed process takes a moment to go; until then its jobs look alive
    while time.time() < deadline and any(_liveness.proc_start(p) is not None for p in pids):
        time.sleep(0.05)
    states = by_state(tmp_path)
    kept = {key: t.value for key, t in states.get(TrialState.COMPLETE, {}).items()}
    running = set(states.get(TrialState.RUNNING, {}))
    assert len(kept) in (4, 8) and len(running) == 4, "the kill should land while a group trains"
    assert len({job.split("|")[0] for _, job in running}) == 1  # one candidate's group

    trained, groups, said = resume(tmp_path)
    assert said == [f"resumed: {len(kept)} finished jobs kept, 4 interrupted re-queued"]
    assert running in [{(f"t:{ts}", job_key(c, s)) for ts, c, s in g} for g in groups]  # again as one group
    assert sorted(trained) == sorted(set(trained)) and len(trained) + len(kept) == 12 and not set(trained) & set(kept)
    after = by_state(tmp_path)
    assert {key: after[TrialState.COMPLETE][key].value for key in kept} == kept
    assert set(after[TrialState.FAIL]) == running  # recovered as interrupted, queued again
    assert all("interrupted" in t.user_attrs for t in after[TrialState.FAIL].values())
    assert set(completes_per_job(tmp_path).values()) == {1} and len(completes_per_job(tmp_path)) == 12


@pytest.mark.slow
def test_sigkill_while_a_group_records_keeps_the_recorded_members_and_reruns_only_the_rest(tmp_path, synthetic, child_env,
                                                                                           completes_per_job,
                                                                                           by_state, resume):
    """The process dies by SIGKILL after two of its group's four results are written: those two stay, and only
    the other two are trained again (as a group of two)."""
    make_experiment(tmp_path, synthetic, whole=False, seeds=[0, 1])
    code = ("import os, signal\n"
            "from nasprune.search import JobStore, run_search\n"
            "real, n = JobStore.complete, [0]\n"
            "def complete(self, job, metrics, value):\n"
            "    if n[0] == 2:\n"
            "        os.kill(os.getpid(), signal.SIGKILL)\n"
            "    n[0] += 1\n"
            "    return real(self, job, metrics, value)\n"
            "JobStore.complete = complete\n"
            f"run_search({str(tmp_path)!r}, workers=0, threads=1, progress=False, fuse=4)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=child_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    states = by_state(tmp_path)
    kept = {key: t.value for key, t in states[TrialState.COMPLETE].items()}
    unfinished = set(states[TrialState.RUNNING])
    assert len(kept) == 2 and len(unfinished) == 2
    assert all(t.user_attrs["fused"] == 4 and t.user_attrs["val_acc"] == t.value
               for t in states[TrialState.COMPLETE].values())

    trained, groups, said = resume(tmp_path)
    assert said == ["resumed: 2 finished jobs kept, 2 interrupted re-queued"]
    assert unfinished in [{(f"t:{ts}", job_key(c, s)) for ts, c, s in g} for g in groups]  # fused again
    assert len(trained) == 10 and not set(trained) & set(kept) and len(set(trained)) == 10
    after = by_state(tmp_path)
    assert {key: after[TrialState.COMPLETE][key].value for key in kept} == kept
    assert set(completes_per_job(tmp_path).values()) == {1} and len(completes_per_job(tmp_path)) == 12


# --- settings -----------------------------------------------------------------------------------------------------


def test_fuse_is_a_setting_of_the_command_and_the_config(tmp_path, synthetic):
    parser = build_parser()
    assert parser.parse_args(["search", "--experiment", "x"]).fuse == 1  # off by default: slower on a CPU
    assert parser.parse_args(["search", "--experiment", "x", "--fuse", "16"]).fuse == 16
    assert parser.parse_args(["run", "quick"]).fuse is None  # the config's
    assert parser.parse_args(["run", "quick", "--fuse", "4"]).fuse == 4
    assert SearchConfig().fuse == 1 and SearchConfig(fuse=8).fuse == 8
    with pytest.raises(ConfigError, match=r"fuse: must be an int >= 1 \(1: no fusion\), got 0"):
        SearchConfig(fuse=0)
    make_experiment(tmp_path, synthetic)
    with pytest.raises(ValueError, match=r"fuse must be an int >= 1 \(1: no fusion\), got 0"):
        run_search(tmp_path, workers=0, progress=False, fuse=0)
    assert not (tmp_path / JOURNAL_FILE).exists()


def test_sets_that_record_per_epoch_accuracy_train_unfused(tmp_path, synthetic, record_groups):
    """train_fused records no per-epoch history, so a set with eval_every is never fused; the others are."""
    from nasprune.search import load_history

    make_experiment(tmp_path, synthetic, candidates=CANDIDATES[:1], proxies=("p0", "p1"), whole=False,
                    epochs=1, eval_every=1)
    groups = record_groups()
    summary = run_search(tmp_path, workers=0, fuse=4, progress=False)
    assert summary["complete"] == 4 and summary["failed"] == 0
    assert [len(g) for g in groups] == [1, 1, 1, 1]
    assert len(load_history(tmp_path)) == 4  # one epoch per job, recorded
