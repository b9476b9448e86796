"""Reading an experiment back: its finished jobs (``jobs.csv``'s rows), their per-epoch history, every job's state,
and a finished training set copied into another experiment so that it is not trained again.

Each function takes the experiment's directory, or a :class:`~nasprune.search.JobStore` already open: a command
that reads several of them opens the store once, so a journal is replayed once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import optuna
import pandas as pd

from nasprune.errors import ExperimentError

from ._experiment import Experiment
from ._storage import JOURNAL_FILE, redact
from ._store import JobStore

__all__ = ["HISTORY_COLUMNS", "JOB_COLUMNS", "STATUS_COLUMNS", "copy_training_set", "job_status", "load_history",
           "load_jobs"]

#: The columns of :func:`load_jobs` (and of ``jobs.csv``), in order.
JOB_COLUMNS = ["training_set", "candidate", "seed", "val_acc", "test_acc", "train_loss", "seconds", "images_per_sec",
               "diverged", "epochs", "wall_seconds", "attempt", "images", "bytes", "proxy_minutes", "method",
               "started", "completed", "trial", "tse"]
#: The metrics a finished trial records (its user attrs), read back into :data:`JOB_COLUMNS`.
METRICS = ("val_acc", "test_acc", "train_loss", "seconds", "images_per_sec", "diverged", "epochs", "wall_seconds",
           "tse")
#: The columns of :func:`load_history`.
HISTORY_COLUMNS = ["training_set", "candidate", "seed", "epoch", "val_acc", "train_loss"]
#: The columns of :func:`job_status`.
STATUS_COLUMNS = ["training_set", "candidate", "seed", "state", "errors", "error", "requeued", "worker"]


def _store(experiment: str | os.PathLike | JobStore, storage: str | None) -> JobStore:
    return experiment if isinstance(experiment, JobStore) else JobStore.open(experiment, url=storage)


# --- reusing finished jobs -------------------------------------------------------------------------------------------


def copy_training_set(source: str | os.PathLike, target: str | os.PathLike, training_set: str) -> int:
    """Copy the finished jobs of ``training_set`` from the experiment in ``source`` into the one in ``target``
    (each in its own storage), so that a new experiment reuses them instead of training them again: a study
    of extra proxies against a finished ground truth, say. Returns the number of jobs copied.

    Both experiments must share their name, dataset and that training set's definition, its proxy file's
    contents included (the copied study then passes the target's identity check, :func:`check_study`, like
    one it ran itself), and live in different storages; the target must not have started the training set.
    Only each job's first COMPLETE trial is copied."""
    src, dst = JobStore.open(source), JobStore.open(target)
    pairs = ((source, src.exp), (target, dst.exp))
    where = [exp.storage or str((Path(d) / JOURNAL_FILE).resolve()) for d, exp in pairs]
    if where[0] == where[1]:
        raise ExperimentError(f"cannot copy {training_set!r}: both experiments use one storage ({redact(where[0])})")
    for what, a, b in (("name", src.exp.name, dst.exp.name), ("dataset", src.exp.dataset, dst.exp.dataset),
                       (f"training set {training_set!r}", src.exp.training_sets.get(training_set),
                        dst.exp.training_sets.get(training_set)),
                       ("proxy file contents", *(_proxy_digest(exp, training_set, d) for d, exp in pairs))):
        if a != b or (a is None and what != "proxy file contents"):
            raise ExperimentError(f"cannot copy {training_set!r}: the experiments differ in {what} ({a!r} -> {b!r})")
    if training_set not in src.study_ids:
        raise ExperimentError(f"cannot copy {training_set!r}: {source} has not started it")
    name = src.exp.study_name(training_set)
    trials = src.completed(training_set)
    with dst.locked():  # checked under the lock: a run starting now cannot create the study in between
        with contextlib.suppress(KeyError):
            dst.storage.get_study_id_from_name(name)
            raise ExperimentError(f"cannot copy {training_set!r}: {target} has started it already")
        sid = dst.storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], name)
        try:
            for key, value in src.storage.get_study_user_attrs(src.study_ids[training_set]).items():
                dst.storage.set_study_user_attr(sid, key, value)
            optuna.load_study(study_name=name, storage=dst.storage).add_trials(trials)
        except BaseException:  # no half-copied study left behind to block a retry
            dst.storage.delete_study(sid)
            raise
    return len(trials)


def _proxy_digest(exp: Experiment, training_set: str, directory) -> str | None:
    """The sha256 of the training set's proxy file (None for the whole split or a set the experiment lacks)."""
    path = exp.proxy_path(training_set, directory) if training_set in exp.training_sets else None
    return None if path is None else hashlib.sha256(path.read_bytes()).hexdigest()


# --- reading an experiment's jobs ------------------------------------------------------------------------------------


def job_status(experiment: str | os.PathLike | JobStore, storage: str | None = None) -> pd.DataFrame:
    """One row per job: training_set, candidate, seed, state (complete / running / waiting / failed /
    pending), errors (attempts that raised), error (the last one's final line), requeued and worker.
    ``experiment``: its directory, or a :class:`JobStore` already open (a journal is then not replayed again)."""
    rows = _store(experiment, storage).status_rows()
    return pd.DataFrame(rows, columns=STATUS_COLUMNS)


def load_jobs(experiment: str | os.PathLike | JobStore, storage: str | None = None) -> pd.DataFrame:
    """One row per finished job of the experiment (its first COMPLETE trial), accuracies in percent.
    ``experiment``: its directory, or a :class:`JobStore` already open.

    Columns: :data:`JOB_COLUMNS`: the job, its metrics, then ``wall_seconds`` (the whole job: model
    building, training, evaluation), ``attempt``, ``images``/``bytes`` (the training set's size, uint8
    pixels), ``proxy_minutes`` (building the proxy), ``method``, ``started``/``completed`` (ISO times)
    and ``trial`` (its number in the study), and ``tse`` (the training speed estimate,
    :attr:`nasprune.training.TrainResult.tse`: lower ranks higher; NaN for jobs recorded before it was). ``test_acc``
    is NaN for training sets trained with ``eval_test: false``.
    """
    store = _store(experiment, storage)
    rows = []
    for ts, sid in store.study_ids.items():
        info = store.storage.get_study_user_attrs(sid).get("info", {})
        for t in store.completed(ts):
            a = t.user_attrs
            rows.append({"training_set": ts, "candidate": a["candidate"], "seed": a["seed"],
                         **{k: a.get(k) for k in METRICS}, "attempt": a.get("attempt"),
                         **{k: info.get(k) for k in ("images", "bytes", "proxy_minutes", "method")},
                         "started": t.datetime_start.isoformat() if t.datetime_start else None,
                         "completed": t.datetime_complete.isoformat() if t.datetime_complete else None,
                         "trial": t.number})
    df = pd.DataFrame(rows, columns=JOB_COLUMNS)
    for col in ("val_acc", "test_acc", "train_loss", "seconds", "images_per_sec", "wall_seconds", "proxy_minutes",
                "tse"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["diverged"] = df["diverged"].astype(bool)
    return df


def load_history(experiment: str | os.PathLike | JobStore, storage: str | None = None) -> pd.DataFrame:
    """Per-epoch validation accuracy of every finished job trained with ``TrainConfig.eval_every`` > 0, as a
    tidy frame: one row per (training_set, candidate, seed, epoch) with ``val_acc`` (percent; NaN at epochs
    that were not evaluated) and ``train_loss``. Jobs that recorded no history are left out, so the frame is
    empty for an experiment that never set ``eval_every``. :func:`nasprune.analysis.ranking_by_epoch` turns it
    into the ranking's agreement with its last epoch. ``experiment``: its directory, or a :class:`JobStore`."""
    store = _store(experiment, storage)
    rows = [{"training_set": ts, "candidate": t.user_attrs["candidate"], "seed": t.user_attrs["seed"], **h}
            for ts in store.study_ids for t in store.completed(ts) for h in t.user_attrs.get("history") or []]
    df = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    for col in ("val_acc", "train_loss"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df.astype({"seed": int, "epoch": int})
