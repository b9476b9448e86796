"""The NAS runner: train every candidate on every training set of an experiment, through Optuna storage.

An experiment (``DIR/experiment.json``, see :class:`Experiment`) is a dataset, candidate spec ids, named
training sets (the whole training split, or a ProxySet file) each with its TrainConfig, and seeds.
Every (training set, candidate, seed) is one *job*. Each training set is one Optuna study named
``"{experiment}:{training set}"``; each job is a trial whose params are the spec's factors plus the
seed, whose user attrs hold the metrics, and whose value is the validation accuracy in percent.

:func:`run_search` checks everything that can be refused (config, candidates, proxies, storage) before
touching the studies, queues the jobs that are not done, and spawns workers that claim and run them.
It resumes a killed run: finished jobs are kept, and the jobs of dead workers are run again (see
:mod:`nasprune._jobstore` for the trial life cycle). The default storage, the journal file
``DIR/optuna.journal``, serves the processes of one host; an RDB URL (PostgreSQL) serves several
machines, each running the same command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import optuna
import pandas as pd
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from nasprune import __version__
from nasprune import _jobstore as store
from nasprune._experiment import CONFIG_FILE, Experiment, ExperimentError
from nasprune._jobstore import JOURNAL_FILE, StorageError, open_storage
from nasprune.data import Dataset, load_dataset
from nasprune.proxy import ProxySet
from nasprune.train import TrainConfig, TrainResult, train
from search_spaces.convnet import ConvNetSpec, block_shapes, build_convnet

__all__ = ["CONFIG_FILE", "EXTRA_COLUMNS", "JOB_COLUMNS", "JOURNAL_FILE", "Experiment", "ExperimentError",
           "StorageError", "job_status", "load_jobs", "open_storage", "prepare", "run_search"]

HEARTBEAT_SECONDS = 30.0  # how often a running job refreshes its heartbeat
GRACE_SECONDS = 180.0  # a job on another host with no heartbeat for this long is taken as dead
JOB_COLUMNS = ["training_set", "candidate", "seed", "val_acc", "test_acc", "train_loss", "seconds",
               "images_per_sec", "diverged", "epochs"]
EXTRA_COLUMNS = ["wall_seconds", "attempt", "images", "bytes", "proxy_minutes", "method", "started",
                 "completed", "trial"]
_METRICS = ("val_acc", "test_acc", "train_loss", "seconds", "images_per_sec", "diverged", "epochs", "wall_seconds")
_log = logging.getLogger(__name__)


# --- what every process loads once -------------------------------------------------------------------------------


@dataclass
class _Loaded:
    """An experiment with its dataset and training tensors loaded, and each study's identity."""

    experiment: Experiment
    directory: Path
    dataset: Dataset
    sets: dict[str, tuple[torch.Tensor, torch.Tensor]]
    train_kwargs: dict[str, dict]
    identity: dict[str, dict]  # must equal the study's stored config
    info: dict[str, dict]  # facts for reports: images, bytes, method, proxy_minutes


def _load(directory: Path) -> _Loaded:
    """Load the experiment, its dataset and proxies; refuse candidates or proxies that do not fit the data."""
    exp = Experiment.load(directory)
    ds = exp.dataset.load()
    for c in exp.candidates:
        block_shapes(ConvNetSpec.from_id(c), ds.in_channels, ds.image_size)  # SpecError if the map vanishes
    sets, kwargs, identity, info = {}, {}, {}, {}
    pixels = ds.in_channels * ds.image_size * ds.image_size
    for ts, entry in exp.training_sets.items():
        path = exp.proxy_path(ts, directory)
        if path is None:
            sets[ts], proxy_desc, method, minutes = (ds.train_x, ds.train_y), None, "whole", 0.0
        else:
            proxy = ProxySet.load(path, ds)  # ProxyError: corrupted, or built on other data
            sets[ts], method, minutes = proxy.tensors(ds), proxy.method, proxy.build_minutes()
            proxy_desc = {"method": proxy.method, "images": len(proxy),
                          "indices_sha256": hashlib.sha256(proxy.indices.astype("int64").tobytes()).hexdigest()}
        kwargs[ts] = entry.config(ds.mean, ds.std).to_dict()
        config = TrainConfig(**kwargs[ts]).to_dict()
        config.pop("seed")
        identity[ts] = store.jsonable({
            "experiment": exp.name, "training_set": ts, "proxy": proxy_desc, "train": config,
            "dataset": {**_dataset_identity(exp), "fingerprint": ds.fingerprint}})
        n = len(sets[ts][1])
        info[ts] = {"images": n, "bytes": n * pixels, "method": method, "proxy_minutes": minutes,
                    "version": __version__}
    return _Loaded(exp, Path(directory), ds, sets, kwargs, identity, info)


def _dataset_identity(exp: Experiment) -> dict:
    """The split as studies record it (the root may differ by host; a stored experiment never downloads)."""
    return {k: v for k, v in dataclasses.asdict(exp.dataset).items() if k != "download"} | {"root": None}


# --- one job -----------------------------------------------------------------------------------------------------


def _train_job(loaded: _Loaded, training_set: str, candidate: str, seed: int) -> TrainResult:
    """One job: build the candidate under ``torch.manual_seed(seed)`` and train it on the training set."""
    ds = loaded.dataset
    x, y = loaded.sets[training_set]
    torch.manual_seed(seed)
    model = build_convnet(ConvNetSpec.from_id(candidate), ds.in_channels, ds.image_size, ds.num_classes)
    config = TrainConfig(**{**loaded.train_kwargs[training_set], "seed": seed})
    return train(model, x, y, config, val=(ds.val_x, ds.val_y), test=(ds.test_x, ds.test_y))


class _Heartbeat(threading.Thread):
    """Writes ``heartbeat = time.time()`` into the running trial every ``interval`` seconds."""

    def __init__(self, storage, trial_id: int, interval: float):
        super().__init__(daemon=True)
        self.storage, self.trial_id, self.interval, self.done = storage, trial_id, interval, threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            try:
                self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
            except Exception:  # finished elsewhere, or the storage hiccuped: stop beating
                return

    def stop(self) -> None:
        self.done.set()
        self.join()


def _run_job(loaded: _Loaded, storage, ts: str, sid: int, t: FrozenTrial, heartbeat: float) -> None:
    """Train a claimed trial's job and record the result, or the error (and queue a retry)."""
    tid, job = t._trial_id, t.user_attrs["job"]
    beat = _Heartbeat(storage, tid, heartbeat)
    beat.start()
    start = time.perf_counter()
    try:
        r = _train_job(loaded, ts, t.user_attrs["candidate"], int(t.user_attrs["seed"]))
    except BaseException as e:  # KeyboardInterrupt/SystemExit: queue the job again, then stop
        beat.stop()
        kind = "error" if isinstance(e, Exception) else "interrupted"
        with contextlib.suppress(UpdateFinishedTrialError):
            storage.set_trial_user_attr(tid, kind, "".join(traceback.format_exception(e))[-4000:])
            storage.set_trial_state_values(tid, TrialState.FAIL)
            store.top_up(storage, sid, loaded.experiment, only=job)
        if kind == "error":
            _log.warning("%s %s failed: %s", ts, job, e)
            return
        raise
    beat.stop()
    metrics = {"val_acc": r.val_acc, "test_acc": r.test_acc, "train_loss": r.train_loss, "seconds": r.seconds,
               "images_per_sec": r.images_per_sec, "diverged": r.diverged, "epochs": r.epochs,
               "wall_seconds": time.perf_counter() - start}
    try:
        for k, v in metrics.items():
            storage.set_trial_user_attr(tid, k, None if isinstance(v, float) and v != v else v)  # NaN -> None
        storage.set_trial_state_values(tid, TrialState.COMPLETE, [float(r.val_acc)])
    except UpdateFinishedTrialError:
        _log.warning("%s %s finished after another process took it for dead; result dropped", ts, job)


def _work(loaded: _Loaded, storage, study_ids: dict[str, int], *, heartbeat: float, grace: float,
          on_job: Callable[[], None] | None = None) -> None:
    """Claim and run jobs until none is waiting and no dead worker's job can be taken over."""
    while True:
        claimed = store.claim(storage, study_ids, loaded.experiment)
        if claimed is None:
            if sum(store.recover(storage, sid, loaded.experiment, grace) for sid in study_ids.values()):
                continue
            return
        _run_job(loaded, storage, *claimed, heartbeat)
        if on_job is not None:
            on_job()


def _worker_main(directory: str, url: str | None, threads: int, heartbeat: float, grace: float, go) -> None:
    """Entry point of a spawned worker: load the data and proxies once (while the parent checks the
    experiment), wait for the parent's go, then run jobs. The parent terminates it if its checks fail."""
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        loaded, error = _load(Path(directory)), None
    except Exception as e:  # the parent finds the same problem and reports it
        loaded, error = None, e
    go.wait()
    if error is not None:
        raise error
    storage = open_storage(directory, url)
    exp = loaded.experiment
    ids = {ts: storage.get_study_id_from_name(exp.study_name(ts)) for ts in exp.training_sets}
    with contextlib.suppress(KeyboardInterrupt):
        _work(loaded, storage, ids, heartbeat=heartbeat, grace=grace)


# --- the public entry points ----------------------------------------------------------------------------------------


def prepare(experiment_dir: str | os.PathLike, storage: str | None = None, *, retry_failed: bool = False,
            grace: float = GRACE_SECONDS) -> tuple[_Loaded, optuna.storages.BaseStorage, dict[str, int]]:
    """Check the experiment against its data and storage, create the studies and queue the jobs not done.

    Everything that can be refused (config, candidates, proxies, storage URL, a study made with another
    config) is checked before anything is written. Returns the loaded experiment, the storage and the
    study id of each training set.
    """
    directory = Path(experiment_dir)
    loaded = _load(directory)
    exp = loaded.experiment
    url = storage or exp.storage
    st = open_storage(directory, url)
    with _prepare_lock(directory, url):
        for ts in exp.training_sets:  # refuse before writing anything
            store.check_study(st, exp.study_name(ts), loaded.identity[ts])
        ids = {ts: store.ensure_study(st, exp.study_name(ts), loaded.identity[ts], loaded.info[ts])
               for ts in exp.training_sets}
        for sid in ids.values():
            store.recover(st, sid, exp, grace)
            store.top_up(st, sid, exp, retry_failed=retry_failed)
    return loaded, st, ids


@contextlib.contextmanager
def _prepare_lock(directory: Path, url: str | None) -> Iterator[None]:
    """Serialise `prepare` between processes of one host sharing a journal (with an RDB, duplicates that
    a race may queue are dropped when claimed)."""
    if url is not None:
        yield
        return
    import fcntl

    with open(directory / JOURNAL_FILE, "ab") as f:  # an advisory lock; Optuna's own lock is a symlink
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_search(experiment_dir: str | os.PathLike, workers: int = 1, storage: str | None = None, *,
               threads: int | None = None, retry_failed: bool = False, progress: bool = True,
               heartbeat: float = HEARTBEAT_SECONDS, grace: float = GRACE_SECONDS) -> dict:
    """Run every job of the experiment in ``experiment_dir`` that has not finished; return a summary.

    Args:
        experiment_dir: the directory holding ``experiment.json`` (and the journal file by default).
        workers: processes to spawn; 0 runs the jobs in this process (for tests and debugging). A script
            that spawns workers needs the ``if __name__ == "__main__":`` guard.
        storage: an Optuna RDB URL overriding the experiment's; the same URL on another machine joins.
        threads: torch threads per worker; default ``cpus // workers`` (in-process: left as it is).
        retry_failed: give jobs that used up their retries one more attempt.
        progress: show a tqdm bar in this process (jobs done out of total, with ETA).
        heartbeat, grace: seconds between heartbeats of a running job, and without one before a job of
            another host is taken as dead and run again.

    Returns:
        ``{"total", "complete", "failed", "unfinished", "worker_exitcodes"}``.
    """
    if not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an int >= 0, got {workers!r}")
    url = storage or Experiment.load(experiment_dir).storage
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    n_threads = threads or max(1, _cpus() // max(workers, 1))
    # workers start (imports, data) while this process checks the experiment; they touch nothing before `go`
    procs = [ctx.Process(target=_worker_main, args=(str(experiment_dir), url, n_threads, heartbeat, grace, go),
                         name=f"nasprune-worker-{i}") for i in range(workers)]
    for p in procs:
        p.start()
    try:
        loaded, st, ids = prepare(experiment_dir, storage, retry_failed=retry_failed, grace=grace)
    except BaseException:
        for p in procs:
            p.terminate()
            p.join()
        raise
    go.set()
    exp = loaded.experiment
    from tqdm.auto import tqdm

    bar = tqdm(total=len(exp.jobs()), desc=exp.name, unit="job", disable=not progress, smoothing=0.1)

    def refresh() -> None:
        s = _summary(st, ids, exp)
        bar.update(s["complete"] - bar.n)
        if s["failed"]:
            bar.set_postfix(failed=s["failed"])

    codes: list[int | None] = []
    try:
        refresh()
        if workers == 0:
            with _torch_threads(threads):
                _work(loaded, st, ids, heartbeat=heartbeat, grace=grace, on_job=refresh)
        else:
            poll = 1.0 if url is None else 5.0  # an RDB is shared: ask it less often
            try:
                while any(p.is_alive() for p in procs):
                    mp.connection.wait([p.sentinel for p in procs if p.is_alive()], timeout=poll)
                    refresh()
            finally:
                for p in procs:
                    p.join()
            codes = [p.exitcode for p in procs]
        refresh()
    finally:
        bar.close()
    if any(codes):
        _log.warning("workers exited with codes %s; run the search again to resume", codes)
    return {**_summary(st, ids, exp), "worker_exitcodes": codes}


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _summary(storage, study_ids: dict[str, int], exp: Experiment) -> dict:
    rows = store.status_rows(storage, study_ids, exp)
    n = {s: sum(r["state"] == s for r in rows) for s in ("complete", "failed")}
    return {"total": len(rows), **n, "unfinished": len(rows) - n["complete"] - n["failed"]}


def _open_existing(experiment_dir, storage: str | None) -> tuple[Experiment, optuna.storages.BaseStorage,
                                                                   dict[str, int]]:
    exp = Experiment.load(experiment_dir)
    st = open_storage(experiment_dir, storage or exp.storage)
    ids = {}
    for ts in exp.training_sets:
        with contextlib.suppress(KeyError):
            ids[ts] = st.get_study_id_from_name(exp.study_name(ts))
    return exp, st, ids


def job_status(experiment_dir: str | os.PathLike, storage: str | None = None) -> pd.DataFrame:
    """One row per job: training_set, candidate, seed, state (complete / running / waiting / failed /
    pending), errors (attempts that raised) and error (the last one's final line)."""
    exp, st, ids = _open_existing(experiment_dir, storage)
    return pd.DataFrame(store.status_rows(st, ids, exp),
                        columns=["training_set", "candidate", "seed", "state", "errors", "error"])


def load_jobs(experiment_dir: str | os.PathLike, storage: str | None = None) -> pd.DataFrame:
    """One row per finished job of the experiment (its first COMPLETE trial), accuracies in percent.

    Columns: :data:`JOB_COLUMNS`, then :data:`EXTRA_COLUMNS`: ``wall_seconds`` (the whole job: model
    building, training, evaluation), ``attempt``, ``images``/``bytes`` (the training set's size, uint8
    pixels), ``proxy_minutes`` (building the proxy), ``method``, ``started``/``completed`` (ISO times)
    and ``trial`` (its number in the study).
    """
    exp, st, ids = _open_existing(experiment_dir, storage)
    rows = []
    for ts, sid in ids.items():
        info = st.get_study_user_attrs(sid).get("info", {})
        for t in store.completed(st, sid, exp):
            a = t.user_attrs
            rows.append({"training_set": ts, "candidate": a["candidate"], "seed": a["seed"],
                         **{k: a.get(k) for k in _METRICS}, "attempt": a.get("attempt"),
                         **{k: info.get(k) for k in ("images", "bytes", "proxy_minutes", "method")},
                         "started": t.datetime_start.isoformat() if t.datetime_start else None,
                         "completed": t.datetime_complete.isoformat() if t.datetime_complete else None,
                         "trial": t.number})
    df = pd.DataFrame(rows, columns=JOB_COLUMNS + EXTRA_COLUMNS)
    for col in ("val_acc", "test_acc", "train_loss", "seconds", "images_per_sec", "wall_seconds", "proxy_minutes"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["diverged"] = df["diverged"].astype(bool)
    return df
