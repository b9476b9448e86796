"""A schedule run live (``search.schedule``): rungs trained as training sets of the candidates the previous rung kept,
recorded in the storage, resumed with the same decisions, and replayable from its own jobs."""

import contextlib

import pandas as pd
import pytest
import yaml

from nasprune.cli import main as cli_main
from nasprune.search import Experiment, ReplaySource, Rung, Schedule, load_history, load_jobs, run_schedule
from nasprune.workflows import PipelineConfig, rung_set_name, run_pipeline
from nasprune.zerocost import score_candidates

CANDIDATES = ["w8-d1-relu-none-avgpooling", "w8-d1-sigmoid-batchnorm-maxpooling",
              "w8-d1-leakyrelu-instancenorm-none", "w8-d2-relu-batchnorm-avgpooling"]
TINY = {
    "name": "sched",
    "dataset": {"name": "synthetic"},
    "proxies": {"per_class": 10, "sets": [{"name": "r0", "method": "random", "seed": 0}]},
    "search": {"candidates": CANDIDATES, "seeds": [0], "workers": 0,
               "proxy_train": {"epochs": 2, "lr": 0.05, "eval_every": 1}, "whole_train": {"epochs": 2, "lr": 0.05},
               "schedule": [{"source": "zerocost:naswot", "eta": 2},
                            {"source": "r0", "keep": 1, "signal": "tse"},
                            {"source": "whole", "epochs": 1}]},
}


def _config(tmp_path, doc=TINY, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return PipelineConfig.load(path)


def test_a_live_schedule_trains_only_what_each_rung_kept_then_resumes_with_the_same_choices(tmp_path, capsys):
    config, out = _config(tmp_path), tmp_path / "run"
    result = run_pipeline(config, out, progress=False, log=lambda _: None)
    rungs = result.schedule.rungs
    assert [len(r.candidates) for r in rungs] == [4, 2, 1] and [len(r.kept) for r in rungs] == [2, 1, 1]
    assert rungs[1].candidates == rungs[0].kept and rungs[2].candidates == rungs[1].kept
    assert result.schedule.chosen == rungs[2].kept[0]
    # the zero-cost rung ranks by NASWOT: its two best are kept
    naswot = rungs[0].values.sort_values(ascending=False)
    assert rungs[0].kept == list(naswot.index[:2])
    # each training rung is a training set of just the candidates it measured, trained at its budget
    exp = Experiment.load(out)
    names = [rung_set_name(i, Rung(**r)) for i, r in enumerate(TINY["search"]["schedule"])][1:]
    assert names == ["rung1-r0", "rung2-whole-e1"]
    assert exp.candidates_of("rung1-r0") == [c for c in CANDIDATES if c in rungs[1].candidates]
    jobs = load_jobs(out)
    assert sorted(jobs["training_set"]) == ["rung1-r0", "rung1-r0", "rung2-whole-e1"]
    assert set(jobs.query("training_set == 'rung2-whole-e1'")["epochs"]) == {1}
    assert set(jobs.query("training_set == 'rung1-r0'")["images"]) == {40}
    # the rung's values are the jobs' signals: TSE negated on the proxy, val_acc on the whole set
    r1 = jobs.query("training_set == 'rung1-r0'").set_index("candidate")["tse"]
    pd.testing.assert_series_equal(rungs[1].values.sort_index(), -r1.sort_index(), check_names=False)
    # cost: the rungs' SGD steps (2 candidates x 2 epochs of 40 images; 1 epoch of the whole set)
    batch = config.search.whole_train.batch_size
    whole_images = jobs.query("training_set == 'rung2-whole-e1'")["images"].iloc[0]
    assert result.schedule.steps == 2 * 2 * -(-40 // batch) + 1 * -(-whole_images // batch)
    # the report names the choice and draws every rung
    md = (out / "schedule.md").read_text()
    assert f"**Chosen: `{result.schedule.chosen}`.**" in md and "## Rung 2: whole" in md
    table = pd.read_csv(out / "schedule.csv")
    assert len(table) == 4 + 2 + 1 and table.query("rung == 0")["kept"].sum() == 2
    assert (out / "schedule.png").stat().st_size > 10_000
    assert "## Rung 1: r0, by tse (negated: lower TSE ranks higher)" in md
    assert list(table.query("rung == 0")["signal"].unique()) == ["naswot"]
    # `nasprune report` points a schedule's directory to its report instead of a Table 1 it cannot have
    assert cli_main(["report", "--experiment", str(out)]) == 2
    assert f"ran a schedule (search.schedule), which has no Table 1: its report is {out / 'schedule.md'}" in \
        capsys.readouterr().err
    # a rerun trains nothing and reads the recorded rungs: the same choices
    journal = (out / "optuna.journal").read_bytes()
    assert cli_main(["run", str(tmp_path / "cfg.yaml"), "--out", str(out)]) == 0
    assert f"chosen: {result.schedule.chosen}\ndone: {out / 'schedule.md'}" in capsys.readouterr().out
    again = run_pipeline(config, out, progress=False, log=lambda _: None).schedule
    assert [r.kept for r in again.rungs] == [r.kept for r in rungs]
    pd.testing.assert_series_equal(again.rungs[0].values, rungs[0].values)
    assert (out / "optuna.journal").read_bytes() == journal
    # the same schedule replayed over the live run's jobs (read as the sets they trained on) and a zero-cost table
    # scored apart promotes alike, at the same cost in steps
    as_sets = {"rung1-r0": "r0", "rung2-whole-e1": "whole"}
    zero_cost = score_candidates(config.experiment().dataset.load(), CANDIDATES, ["naswot"], seed=0)
    source = ReplaySource(jobs.replace({"training_set": as_sets}),
                          load_history(out).replace({"training_set": as_sets}),
                          {"r0": config.search.proxy_train, "whole": config.search.whole_train}, zero_cost=zero_cost)
    replayed = run_schedule(Schedule("replay", config.search.schedule), CANDIDATES, source)
    assert [r.kept for r in replayed.rungs] == [r.kept for r in rungs]
    assert replayed.steps == result.schedule.steps
    # a changed schedule on the same directory is refused, naming what changed
    changed = {**TINY, "search": {**TINY["search"], "schedule": [{"source": "zerocost:synflow", "eta": 2},
                                                                 *TINY["search"]["schedule"][1:]]}}
    recorded = (out / "pipeline.yaml").read_text()
    with pytest.raises(ValueError, match=r"rung 0 was run as another rung \(source 'zerocost:naswot' -> "
                                         r"'zerocost:synflow'\); the schedule changed since it started"):
        run_pipeline(_config(tmp_path, changed, "changed.yaml"), out, progress=False, log=lambda _: None)
    assert (out / "pipeline.yaml").read_text() == recorded


@pytest.mark.parametrize("rung, match", [
    ({"source": "zerocost:magic"}, r"search\.schedule\[0\]\.source: unknown zero-cost score 'magic'"),
    ({"source": "r1", "keep": 1}, r"search\.schedule\[0\]\.source: no training set 'r1'; choose 'whole', .*r0"),
    ({"source": "whole", "keep": 0}, r"search\.schedule\[0\]\.keep: must be an int >= 1"),
    ({"source": "whole", "signal": "loss"}, r"search\.schedule\[0\]\.signal: unknown signal 'loss'"),
    ({"source": "zerocost:naswot", "epochs": 2}, "a zero-cost rung trains nothing"),
    ({"source": "whole", "speed": 2}, r"search\.schedule\[0\]\.speed: unknown key"),
])
def test_bad_schedules_are_refused_before_anything_runs(tmp_path, rung, match):
    with pytest.raises(ValueError, match=match):
        _config(tmp_path, {**TINY, "search": {**TINY["search"], "schedule": [rung]}})


@pytest.mark.slow
@pytest.mark.postgres
def test_two_machines_on_one_storage_run_one_schedule(tmp_path, pg_url, child_env):
    """Two ``nasprune run`` commands, each with its own directory, on one PostgreSQL storage (two machines): they
    share each rung's jobs, training every one once, and make the same choices."""
    import subprocess
    import sys
    import uuid

    import optuna

    name = f"sched-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({**TINY, "name": name}))
    command = [sys.executable, "-m", "nasprune.cli", "run", str(path), "--storage", pg_url, "--out"]
    try:
        runs = [subprocess.Popen([*command, str(tmp_path / f"m{i}")], env=child_env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
        outs = [r.communicate(timeout=300) for r in runs]
        assert [r.returncode for r in runs] == [0, 0], [o[1][:900] for o in outs]
        chosen = [next(line for line in o[0].splitlines() if line.startswith("chosen: ")) for o in outs]
        assert chosen[0] == chosen[1]
        studies = {s.study_name: s for s in optuna.get_all_study_summaries(pg_url) if s.study_name.startswith(name)}
        assert sorted(studies) == sorted([f"{name}:rung1-r0", f"{name}:rung2-whole-e1",
                                          *(f"{name}:schedule:rung{i}" for i in range(3))])
        for rung_set, jobs in [("rung1-r0", 2), ("rung2-whole-e1", 1)]:
            trials = optuna.load_study(study_name=f"{name}:{rung_set}", storage=pg_url).get_trials(deepcopy=False)
            assert len([t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]) == jobs
        tables = [pd.read_csv(tmp_path / f"m{i}" / "schedule.csv") for i in range(2)]
        pd.testing.assert_frame_equal(*tables)
    finally:
        for study in optuna.get_all_study_names(pg_url):
            if study.startswith(name):
                optuna.delete_study(study_name=study, storage=pg_url)


def test_a_zero_cost_schedule_trains_nothing_and_a_diverged_candidate_ranks_last(tmp_path, monkeypatch):
    """A schedule of zero-cost rungs only writes no experiment; a candidate whose score is not finite (as a diverged
    job's value) is never promoted over a finite one, and a rung keeping more than it has keeps them all."""
    import nasprune.zerocost as zerocost

    doc = {**TINY, "search": {**TINY["search"], "schedule": [{"source": "zerocost:params", "keep": 9},
                                                             {"source": "zerocost:naswot", "keep": 1}]}}
    real = zerocost.score_candidates

    def one_nan(dataset, candidates, scores, **kw):  # the largest net's NASWOT is NaN
        table = real(dataset, candidates, scores, **kw)
        if scores == ["naswot"]:
            table.loc["w8-d2-relu-batchnorm-avgpooling", "naswot"] = float("nan")
        return table

    monkeypatch.setattr(zerocost, "score_candidates", one_nan)
    result = run_pipeline(_config(tmp_path, doc), tmp_path / "run", progress=False, log=lambda _: None)
    assert result.summary["total"] == 0 and not (tmp_path / "run" / "experiment.json").exists()
    first, second = result.schedule.rungs
    assert sorted(first.kept) == sorted(CANDIDATES) and len(second.candidates) == 4
    finite = second.values.dropna()
    assert result.schedule.chosen == finite.idxmax() != "w8-d2-relu-batchnorm-avgpooling"
    table = pd.read_csv(tmp_path / "run" / "schedule.csv").query("rung == 1").set_index("candidate")
    assert table.loc["w8-d2-relu-batchnorm-avgpooling", "rank"] == 4 and "diverged" in \
        (tmp_path / "run" / "schedule.md").read_text()


@pytest.mark.slow
def test_a_schedule_killed_mid_rung_resumes_training_no_job_twice_with_the_same_promotions(tmp_path, child_env,
                                                                                            capsys):
    import os
    import signal
    import subprocess
    import sys
    import time

    import optuna

    doc = {**TINY, "search": {**TINY["search"], "proxy_train": {"epochs": 60, "lr": 0.05},
                              "schedule": [{"source": "zerocost:naswot", "keep": 3},
                                           {"source": "r0", "keep": 1}, {"source": "whole", "epochs": 1}]}}
    config, killed, reference = _config(tmp_path, doc), tmp_path / "killed", tmp_path / "reference"
    expected = run_pipeline(config, reference, progress=False, log=lambda _: None).schedule
    proc = subprocess.Popen([sys.executable, "-m", "nasprune.cli", "run", str(tmp_path / "cfg.yaml"), "--out",
                             str(killed), "--workers", "0"], env=child_env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    study = f"{config.name}:rung1-r0"
    deadline, states = time.time() + 120, []
    try:
        while time.time() < deadline and proc.poll() is None:
            with contextlib.suppress(KeyError, FileNotFoundError, ValueError):
                storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
                    str(killed / "optuna.journal")))
                trials = storage.get_all_trials(storage.get_study_id_from_name(study), deepcopy=False)
                states = [t.state for t in trials]
                if states.count(optuna.trial.TrialState.COMPLETE) >= 1 and optuna.trial.TrialState.RUNNING in states:
                    break  # rung 1 under way: a job done, one half-way
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert states.count(optuna.trial.TrialState.COMPLETE) in (1, 2), "the kill should land inside rung 1"
    assert cli_main(["status", "--experiment", str(killed)]) == 0
    assert "rung 0: zerocost:naswot: kept 3 of 4\n  rung 1: r0 by val_acc: training (rung1-r0)\n  rung 2: whole by " \
           "val_acc, 1 epochs: waiting" in capsys.readouterr().out
    resumed = run_pipeline(config, killed, progress=False, log=lambda _: None).schedule
    assert [r.kept for r in resumed.rungs] == [r.kept for r in expected.rungs]
    jobs = load_jobs(killed)
    assert sorted(jobs["training_set"]) == ["rung1-r0"] * 3 + ["rung2-whole-e1"]
    completes = [t.user_attrs["job"] for t in optuna.load_study(study_name=study, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(killed / "optuna.journal")))).get_trials(
        deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])]
    assert sorted(completes) == sorted(set(completes)) and len(completes) == 3  # none trained twice
    pd.testing.assert_series_equal(resumed.rungs[1].values, expected.rungs[1].values)
