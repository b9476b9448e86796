"""A schedule run live (``search.schedule`` in a ``nasprune run`` config): each rung that trains is a training set of
the experiment holding only the candidates the previous rung kept, its jobs run by the ordinary runner (resumable,
several workers, PostgreSQL), and each rung's values are recorded in the storage before anything is promoted from
them, so that a resumed run, or a second machine on the same storage, makes the same decisions.

A rung at a smaller budget than its source's is a fresh run, annealed over that budget (``TrainConfig.epochs``): a
promoted candidate starts its next rung from scratch rather than continuing from a checkpoint as ASHA does. The
budget search measured both ways on finished jobs (``results/budget-search/``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from nasprune.config import to_mapping
from nasprune.search import (EXPERIMENT_FILE, Experiment, JobStore, Measurement, Rung, Schedule, ScheduleResult,
                             TrainingSet, job_status, load_jobs, open_storage, run_schedule, run_search)
from nasprune.training import TrainConfig

from ._config import PipelineConfig

__all__ = ["LiveSource", "live_source", "rung_set_name", "run_live_schedule"]

#: The study, beside the experiment's, whose user attribute ``record`` holds one rung's recorded values.
RECORD_STUDY = "{name}:schedule:rung{index}"


def rung_set_name(index: int, rung: Rung) -> str:
    """The training set of rung ``index`` (from 0): ``rung<index>-<source>``, with ``-e<epochs>`` for a budget of its
    own."""
    return f"rung{index}-{rung.source}" + (f"-e{rung.epochs}" if rung.epochs is not None else "")


class LiveSource:
    """Answers a schedule's rungs by training: :meth:`measure` adds the rung's training set (its candidates, the
    source's training config at the rung's budget) to the experiment in ``directory``, runs its jobs, waits until
    every one has finished (on another machine too), and reads their values; a zero-cost rung scores the
    candidates. Every rung's values are recorded once in the storage; a later call reads the record."""

    def __init__(self, config: PipelineConfig, directory: Path, *, workers: int = 1, storage: str | None = None,
                 progress: bool = True, poll: float = 5.0, log: Callable[[str], None] = print):
        self.config, self.directory, self.workers, self.storage = config, Path(directory), workers, storage
        self.progress, self.poll, self.log = progress, poll, log
        self.base = config.experiment()
        self.index = 0

    # --- the record -------------------------------------------------------------------------------------------

    def _record_study(self, index: int) -> str:
        return RECORD_STUDY.format(name=self.base.name, index=index)

    def _recorded(self, index: int, compute: Callable[[], dict]) -> dict:
        """Rung ``index``'s record, else ``compute()``, recorded. Each rung's record is a study of its own, whose
        creation is atomic: the first process to create it records its value, and any other adopts that one
        (computed alike: a rung's jobs are shared, and a zero-cost score is seeded)."""
        store = open_storage(self.directory, self.storage)
        name = self._record_study(index)
        with contextlib.suppress(KeyError):
            return self._read(store, store.get_study_id_from_name(name))
        value = compute()
        try:
            sid = store.create_new_study([optuna.study.StudyDirection.MAXIMIZE], name)
        except optuna.exceptions.DuplicatedStudyError:
            return self._read(store, store.get_study_id_from_name(name))
        store.set_study_user_attr(sid, "record", value)
        return value

    def records(self) -> dict[int, dict]:
        """The rungs recorded so far, by index (without waiting for a record in flight)."""
        store = open_storage(self.directory, self.storage)
        out = {}
        for index in range(len(self.config.search.schedule)):
            name = self._record_study(index)
            with contextlib.suppress(KeyError):
                attrs = store.get_study_user_attrs(store.get_study_id_from_name(name))
                if "record" in attrs:
                    out[index] = attrs["record"]
        return out

    def rung_states(self) -> list[str]:
        """A line per rung of the schedule: what it kept of how many once recorded, else measuring or waiting."""
        records, lines = self.records(), []
        for index, rung in enumerate(self.config.search.schedule):
            label = f"rung {index}: {rung.source}" + ("" if rung.zero_cost else (
                f" by {rung.signal}" + (f", {rung.epochs} epochs" if rung.epochs else "")))
            if index in records:
                n = len(records[index]["candidates"])
                state = f"kept {rung.kept(n)} of {n}"
            elif index == len(records):
                state = "measuring" if rung.zero_cost else f"training ({rung_set_name(index, rung)})"
            else:
                state = "waiting"
            lines.append(f"{label}: {state}")
        return lines

    def check(self) -> None:
        """Refuse a schedule whose recorded rungs differ from the config's: resuming it would mix two schedules."""
        for index, record in self.records().items():
            rung = self.config.search.schedule[index]
            if record["rung"] != to_mapping(rung):
                raise self._changed(index, record["rung"], rung)

    def _changed(self, index: int, recorded: dict, rung: Rung) -> ValueError:
        changes = ", ".join(f"{k} {recorded.get(k)!r} -> {v!r}" for k, v in to_mapping(rung).items()
                            if recorded.get(k) != v)
        return ValueError(f"{self.directory}: rung {index} was run as another rung ({changes}); the schedule changed "
                          "since it started: use another --out")

    def _read(self, store, sid: int) -> dict:
        while "record" not in (attrs := store.get_study_user_attrs(sid)):
            time.sleep(self.poll)  # created by another process an instant ago: its record follows
        return attrs["record"]

    def run(self) -> ScheduleResult:
        """The config's schedule on its candidates, rung by rung (a rerun resumes)."""
        schedule = Schedule(self.config.name, tuple(self.config.search.schedule))
        return run_schedule(schedule, self.config.search.candidate_ids(), self)

    # --- the rungs --------------------------------------------------------------------------------------------

    def measure(self, rung: Rung, candidates: Sequence[str]) -> Measurement:
        index, self.index = self.index, self.index + 1
        if rung.zero_cost:
            record = self._recorded(index, lambda: self._zero_cost(rung, candidates))
        else:  # declared first: a machine that finds the rung recorded by another still lists its jobs
            self._declare(index, rung, candidates)
            record = self._recorded(index, lambda: self._train(index, rung, candidates))
        if record["rung"] != to_mapping(rung):
            raise self._changed(index, record["rung"], rung)
        if record["candidates"] != list(candidates):
            raise ValueError(f"rung {index} was recorded with other candidates ({record['candidates']}) than this run "
                             f"asks for ({list(candidates)}); the schedule or the experiment changed since")
        values = pd.Series(record["values"], index=record["candidates"], dtype=float)
        return Measurement(values, steps=record["steps"], seconds=record["seconds"],
                           scoring_seconds=record["scoring_seconds"], whole_steps=record["whole_steps"])

    def _zero_cost(self, rung: Rung, candidates: Sequence[str]) -> dict:
        from nasprune.zerocost import SCORES, ranking_score, score_candidates

        score = rung.source.split(":", 1)[1]
        start = time.perf_counter()
        table = score_candidates(self.base.dataset.load(), list(candidates),
                                 list(SCORES) if score == "ensemble" else [score], seed=self.base.seeds[0])
        seconds = time.perf_counter() - start
        values = ranking_score(table, score)
        self.log(f"[schedule] rung {rung.source}: {len(candidates)} candidates scored in {seconds:.1f} s")
        return {"rung": to_mapping(rung), "candidates": list(candidates),
                "values": [float(v) for v in values.reindex(list(candidates))],
                "steps": 0.0, "seconds": seconds, "scoring_seconds": seconds, "whole_steps": {}}

    def _declare(self, index: int, rung: Rung, candidates: Sequence[str]) -> tuple[str, TrainConfig]:
        """Add rung ``index``'s training set to the experiment in the directory (each machine's own), unless there;
        its name and training config."""
        name = rung_set_name(index, rung)
        source = self.base.training_sets[rung.source]
        train = source.train if rung.epochs is None else dataclasses.replace(source.train, epochs=rung.epochs)
        entry = TrainingSet(source.proxy, train, source.seeds, candidates=list(candidates))
        path = self.directory / EXPERIMENT_FILE
        exp = Experiment.load(self.directory) if path.exists() else None
        sets = {} if exp is None else dict(exp.training_sets)
        if name in sets and sets[name] != entry:
            raise ValueError(f"training set {name} is in {path} with other candidates or training than rung {index} "
                             "asks for now; the schedule changed since it started: use another --out")
        if name not in sets:
            sets[name] = entry
            dataclasses.replace(self.base, training_sets=sets).save(self.directory, overwrite=exp is None)
        return name, train

    def _train(self, index: int, rung: Rung, candidates: Sequence[str]) -> dict:
        name, train = self._declare(index, rung, candidates)
        source = self.base.training_sets[rung.source]
        self.log(f"[schedule] rung {name}: {len(candidates)} candidates x {len(self.base.seeds_of(rung.source))} "
                 f"seed(s), {train.epochs} epochs")
        while True:
            run_search(self.directory, workers=self.workers, storage=self.storage, progress=self.progress,
                       first=[name], log=None)
            status = job_status(JobStore.open(self.directory, url=self.storage))
            mine = status[status["training_set"] == name]
            if mine["state"].isin(["complete", "failed"]).all():
                break
            time.sleep(self.poll)  # jobs running on another machine: wait for them
        jobs = load_jobs(self.directory, self.storage)
        jobs = jobs[jobs["training_set"] == name]
        signal = jobs["val_acc"] if rung.signal == "val_acc" else -jobs["tse"]
        per = jobs.assign(value=np.where(jobs["diverged"], np.nan, signal)).groupby("candidate")["value"].mean()
        steps = jobs["epochs"] * np.ceil(jobs["images"] / train.batch_size)
        whole = steps.groupby(jobs["candidate"]).mean() if source.proxy is None else pd.Series(dtype=float)
        return {"rung": to_mapping(rung), "candidates": list(candidates),
                "values": [float(per.get(c, np.nan)) for c in candidates],
                "steps": float(steps.sum()), "seconds": float(jobs["wall_seconds"].sum()), "scoring_seconds": 0.0,
                "whole_steps": {c: float(v) for c, v in whole.items()}}


def live_source(config: PipelineConfig, directory: str | Path, *, workers: int | None = None,
                storage: str | None = None, progress: bool = True, log: Callable[[str], None] = print) -> LiveSource:
    """The config's live source in ``directory``, checked against the rungs recorded there (a changed schedule is
    refused before anything runs)."""
    if not config.search.schedule:
        raise ValueError(f"config {config.name!r} has no search.schedule")
    source = LiveSource(config, Path(directory), workers=config.search.workers if workers is None else workers,
                        storage=storage or config.search.storage, progress=progress, log=log)
    source.check()
    return source


def run_live_schedule(config: PipelineConfig, directory: str | Path, *, workers: int | None = None,
                      storage: str | None = None, progress: bool = True,
                      log: Callable[[str], None] = print) -> ScheduleResult:
    """Run ``config.search.schedule`` on the config's candidates, in ``directory``, rung by rung; rerun it to resume."""
    return live_source(config, directory, workers=workers, storage=storage, progress=progress, log=log).run()
