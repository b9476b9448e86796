"""How far a search is and how long it has left: what ``nasprune status`` shows.

The rule for the time left: each unfinished job (waiting or running) is taken to last as long as the mean wall time
of its training set's finished jobs; when its set has none yet, its SGD steps times the seconds per step of the
finished jobs whose steps are known, whatever set they trained on (a job's time goes with its steps), else the mean
of all finished jobs. Their
sum is divided by the worker processes running jobs now (a fused group is one worker; with none running, it is the
work left for one).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ._experiment import Experiment
from ._readback import job_status, load_jobs
from ._store import JobStore

__all__ = ["format_duration", "progress", "search_status", "time_left"]


def progress(status: pd.DataFrame, jobs: pd.DataFrame, planned: dict[str, int] | None = None,
             steps: Mapping[str, int | None] | None = None) -> pd.DataFrame:
    """Jobs per training set by state, with the work left (the rule of this module's docstring).

    ``status`` is :func:`job_status`, ``jobs`` :func:`load_jobs`, and
    ``planned`` the number of jobs of each training set in the experiment (those of a set added since
    the last search have no study yet, so ``status`` lacks them: they count as waiting). Columns:
    ``done``, ``running``, ``failed`` (out of retries), ``waiting`` (queued or not yet queued),
    ``mean_job_seconds`` (mean wall time of the set's finished jobs; NaN when none has finished),
    ``job_seconds`` (the time each unfinished job is expected to take: that mean; else, where ``steps``
    gives the SGD steps of one job of each set, its steps times the seconds per step of the finished jobs
    whose steps are known, since a job's time goes with its steps; else the mean of all finished jobs),
    ``estimate`` (which of the three: "measured", "steps", "mean") and ``left_seconds`` (running and waiting
    jobs times ``job_seconds``).
    """
    order = list(dict.fromkeys([*(planned or {}), *status["training_set"]]))
    state = status["state"].replace({"complete": "done", "pending": "waiting"})
    counts = pd.crosstab(status["training_set"], state).reindex(index=order, columns=["done", "running", "failed",
                                                                                       "waiting"], fill_value=0)
    if planned:
        missing = pd.Series(planned).reindex(order).fillna(0) - counts.sum(axis=1)
        counts["waiting"] += missing.clip(lower=0).astype(int)
    seconds = jobs["wall_seconds"].fillna(jobs["seconds"]) if "wall_seconds" in jobs else jobs["seconds"]
    mean = seconds.groupby(jobs["training_set"]).mean().reindex(order).astype(float)
    estimate = pd.Series(np.where(mean.notna(), "measured", "mean"), index=order)
    per_job = mean
    done_steps = jobs["training_set"].map(dict(steps or {})).astype(float)
    if done_steps.notna().any():
        per_step = seconds[done_steps.notna()].sum() / done_steps.sum()
        per_job = per_job.fillna(pd.Series(steps, dtype=float).reindex(order) * per_step)
        estimate[mean.isna() & per_job.notna()] = "steps"
    per_job = per_job.fillna(seconds.mean() if len(seconds) else np.nan)
    return counts.assign(mean_job_seconds=mean, job_seconds=per_job, estimate=estimate,
                         left_seconds=(counts["running"] + counts["waiting"]) * per_job)


def search_status(directory: str | os.PathLike, storage: str | None = None) -> tuple[pd.DataFrame, int]:
    """The :func:`progress` table of the experiment in ``directory`` (the jobs it plans, as a set added since the
    last search has no study yet, and each set's SGD steps per job) and the number of workers running jobs now (a
    fused group is one worker). A set's SGD steps per job come from its proxy file, or, for the whole training
    split, from the size its finished jobs recorded. The storage is opened, and a journal replayed, once."""
    exp = Experiment.load(directory)
    store = JobStore.open(directory, exp, storage)
    status = job_status(store)
    if status.empty:
        raise ValueError(f"no search has run in {directory}; start one with `nasprune search --experiment {directory}`")
    planned = {ts: len(exp.candidates_of(ts)) * len(exp.seeds_of(ts)) for ts in exp.training_sets}
    jobs = load_jobs(store)
    steps = {ts: exp.steps_per_job(ts, directory) for ts in exp.training_sets}
    for ts, images in jobs.groupby("training_set")["images"].first().dropna().items():
        if steps.get(ts) is None and ts in exp.training_sets:  # the whole split: its size, as its jobs recorded it
            steps[ts] = exp.training_sets[ts].train.steps(int(images))
    workers = status.loc[status["state"] == "running", "worker"].nunique()
    return progress(status, jobs, planned, steps), int(workers)


def time_left(table: pd.DataFrame, workers: int, directory: str | os.PathLike) -> str:
    """The time left by this module's rule, in words; ``table``: :func:`progress`; ``workers``: the processes
    running jobs now."""
    remaining = int(table["running"].sum() + table["waiting"].sum())
    work = float(table["left_seconds"].sum())
    if remaining == 0:
        return "none, every job has finished or failed"
    if table["job_seconds"].isna().all():
        return f"unknown until a job finishes ({remaining} jobs to run)"
    unfinished = table["running"] + table["waiting"] > 0
    ways = {"steps": "their SGD steps times the seconds per step of the finished jobs",
            "mean": "the mean of all finished jobs"}
    used = [text for way, text in ways.items() if (unfinished & (table["estimate"] == way)).any()]
    guessed = f" (sets with no finished job: {'; or '.join(used)})" if used else ""
    if workers == 0:
        return (f"no worker is running; {format_duration(work)} of work for one worker{guessed}; "
                f"`nasprune search --experiment {directory}` continues")
    return (f"about {format_duration(work / workers)}: {remaining} jobs x the mean job time of their training set, "
            f"over {workers} running worker{'s' if workers > 1 else ''}{guessed}")


def format_duration(seconds: float | None) -> str:
    """Seconds as "42 s", "17 min" or "3.2 h"; "?" when unknown."""
    if seconds is None or seconds != seconds:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
