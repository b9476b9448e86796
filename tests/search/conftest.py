"""Fixtures of the search's tests: a small experiment on the synthetic data, its trials read straight from the
storage, an instant training result, and the processes below a command (PostgreSQL's fixtures are in
tests/conftest.py)."""

import contextlib
from pathlib import Path

import numpy as np
import pytest
from optuna.trial import TrialState

from nasprune.proxies import ProxySet
from nasprune.search import Experiment, open_storage
from nasprune.training import TrainResult

CANDIDATES = ["w8-d1-relu-none-avgpooling", "w8-d1-sigmoid-batchnorm-maxpooling", "w8-d2-leakyrelu-groupnorm-none"]


@pytest.fixture(scope="session")
def candidates() -> list[str]:
    """The three candidates of :func:`make_experiment`'s experiments, in order."""
    return list(CANDIDATES)


@pytest.fixture(scope="session")
def make_experiment():
    """``make(directory, dataset, *, name="t", candidates=..., seeds=(0, 1), epochs=1, **kwargs) -> Experiment``:
    a random 200-image proxy ``random`` and the whole synthetic split, saved in ``directory`` (3 candidates x 2
    sets x 2 seeds: 12 jobs)."""

    def make(directory: Path, dataset, *, name="t", candidates=CANDIDATES, seeds=(0, 1), epochs=1,
             **kwargs) -> Experiment:
        directory.mkdir(parents=True, exist_ok=True)
        kept = np.random.default_rng(0).choice(len(dataset.train_y), 200, replace=False)
        ProxySet.from_selection(dataset, kept, "random").save(directory / "random.json")
        exp = Experiment(name=name, dataset={"name": "synthetic"}, candidates=list(candidates),
                         training_sets={"random": {"proxy": "random.json", "train": {"epochs": epochs}},
                                        "whole": {"proxy": None, "train": {"epochs": epochs}}},
                         seeds=list(seeds), **kwargs)
        exp.save(directory)
        return exp

    return make


def _trials(directory: Path, url=None) -> dict[str, list]:
    storage, exp = open_storage(directory, url), Experiment.load(directory)
    names = {exp.study_name(ts) for ts in exp.training_sets}
    return {s.study_name: storage.get_all_trials(storage.get_study_id_from_name(s.study_name))
            for s in storage.get_all_studies() if s.study_name in names}


@pytest.fixture(scope="session")
def trials():
    """``trials(directory, url=None) -> {study name: [FrozenTrial]}``: the experiment's trials by study, read
    from its storage."""
    return _trials


@pytest.fixture(scope="session")
def completes_per_job():
    """``completes_per_job(directory, url=None) -> {(study, job): n}``: COMPLETE trials per job."""

    def count(directory: Path, url=None) -> dict[tuple[str, str], int]:
        counts = {}
        for study, ts in _trials(directory, url).items():
            for t in ts:
                key = (study, t.user_attrs["job"])
                counts[key] = counts.get(key, 0) + (t.state == TrialState.COMPLETE)
        return counts

    return count


@pytest.fixture(scope="session")
def fake_result():
    """``fake_result(val) -> TrainResult``: what a job returns without training (validation accuracy ``val``)."""

    def result(val: float) -> TrainResult:
        return TrainResult(train_loss=1.0, val_acc=val, test_acc=val - 1, epochs=1, seconds=0.01,
                           images_per_sec=1.0, diverged=False)

    return result


@pytest.fixture(scope="session")
def drop_studies():
    """``drop_studies(exp, url)``: delete the experiment's studies from the RDB at ``url`` (nothing for None),
    so that PostgreSQL keeps no test's studies."""

    def drop(exp: Experiment, url: str | None) -> None:
        if url is not None:
            import optuna

            for ts in exp.training_sets:
                with contextlib.suppress(KeyError):
                    optuna.delete_study(study_name=exp.study_name(ts), storage=url)

    return drop


@pytest.fixture(scope="session")
def descendants():
    """``descendants(pid) -> {pid}``: every process below ``pid``, from /proc (no psutil)."""

    def below(pid: int) -> set[int]:
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            children.setdefault(int(text[text.rindex(")") + 2:].split()[1]), []).append(int(stat.parent.name))
        out, todo = set(), [pid]
        while todo:
            for child in children.get(todo.pop(), []):
                out.add(child)
                todo.append(child)
        return out

    return below
