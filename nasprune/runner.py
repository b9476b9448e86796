"""The NAS runner: workers that train every candidate on every training set of an experiment.

An experiment (``DIR/experiment.json``, see :class:`Experiment`) is a dataset, candidate spec ids, named
training sets (the whole training split, or a ProxySet file) each with its TrainConfig, and seeds.
Every (training set, candidate, seed) is one *job*, kept as Optuna trials by :mod:`nasprune.jobs`
(queue, claim, heartbeat, complete, fail, retry, recover, read back).

:func:`run_search` checks everything that can be refused (config, candidates, proxies, storage) before
touching the studies, queues the jobs that are not done, and spawns workers that claim and run them.
It resumes a killed run: finished jobs are kept, and the jobs of dead workers are run again. SIGTERM
(or Ctrl-C) stops it cleanly: the workers mark their running jobs interrupted, which queues them again,
and exit before the command does. The default storage, the journal file ``DIR/optuna.journal``, serves
the processes of one host; an RDB URL (PostgreSQL) serves several machines, each running the same command.

With ``fuse=K`` a worker claims up to K waiting jobs of one candidate that share the training config (all
but the seed) and the training set's size, e.g. one candidate on several equal-size proxies and seeds, and
trains them as one network (:func:`nasprune.fused.train_fused`). Each member stays its own trial with its own
result, as if it had run alone (weights equal to float32 rounding, tests/test_fused.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Iterator, Sequence

import torch

from nasprune import __version__
from nasprune.artifacts import jsonable
from nasprune.data import Dataset
from nasprune.experiment import CONFIG_FILE, Experiment, ExperimentError
from nasprune.fused import train_fused
from nasprune.jobs import (EXTRA_COLUMNS, JOB_COLUMNS, JOURNAL_FILE, Job, JobStore, StorageError, job_status,
                           load_jobs, open_storage)
from nasprune.proxy import ProxySet
from nasprune.train import TrainConfig, TrainResult, train_candidate
from search_spaces.convnet import ConvNetSpec, block_shapes

__all__ = ["CONFIG_FILE", "EXTRA_COLUMNS", "JOB_COLUMNS", "JOURNAL_FILE", "Experiment", "ExperimentError",
           "StorageError", "Terminated", "default_threads", "exit_on_interrupt", "job_status", "load_jobs",
           "open_storage", "prepare", "run_search"]

HEARTBEAT_SECONDS = 30.0  # how often a running job refreshes its heartbeat
GRACE_SECONDS = 180.0  # a job on another host with no heartbeat for this long is taken as dead
STOP_SECONDS = 30.0  # how long SIGTERM'd workers get to record their interrupted jobs before SIGKILL
_log = logging.getLogger(__name__)


# --- what every process loads once -------------------------------------------------------------------------------


@dataclass
class _Loaded:
    """An experiment with its dataset and training tensors loaded, and each study's identity."""

    experiment: Experiment
    directory: Path
    dataset: Dataset
    sets: dict[str, tuple[torch.Tensor, torch.Tensor]]
    train_configs: dict[str, TrainConfig]  # each training set's, with the dataset's normalisation (seed 0)
    identity: dict[str, dict]  # must equal the study's stored config
    info: dict[str, dict]  # facts for reports: images, bytes, method, proxy_minutes


def _load(directory: Path) -> _Loaded:
    """Load the experiment, its dataset and proxies; refuse candidates or proxies that do not fit the data."""
    exp = Experiment.load(directory)
    ds = exp.dataset.load()
    for c in exp.candidates:
        block_shapes(ConvNetSpec.from_id(c), ds.in_channels, ds.image_size)  # SpecError if the map vanishes
    sets, configs, identity, info = {}, {}, {}, {}
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
        configs[ts] = entry.config(ds.mean, ds.std)
        config = configs[ts].to_dict()
        config.pop("seed")
        identity[ts] = jsonable({
            "experiment": exp.name, "training_set": ts, "proxy": proxy_desc, "train": config,
            "dataset": {**_dataset_identity(exp), "fingerprint": ds.fingerprint}})
        n = len(sets[ts][1])
        info[ts] = {"images": n, "bytes": n * pixels, "method": method, "proxy_minutes": minutes,
                    "version": __version__}
    return _Loaded(exp, Path(directory), ds, sets, configs, identity, info)


def _dataset_identity(exp: Experiment) -> dict:
    """The split as studies record it (the root may differ by host; a stored experiment never downloads)."""
    return {k: v for k, v in dataclasses.asdict(exp.dataset).items() if k != "download"} | {"root": None}


# --- one job -----------------------------------------------------------------------------------------------------


def _train_job(loaded: _Loaded, training_set: str, candidate: str, seed: int) -> TrainResult:
    """One job: the candidate trained on the training set under its seed (:func:`nasprune.train.train_candidate`)."""
    x, y = loaded.sets[training_set]
    return train_candidate(candidate, loaded.dataset, x, y, dataclasses.replace(loaded.train_configs[training_set],
                                                                                seed=seed))


def _train_group(loaded: _Loaded, group: list[Job]) -> list[TrainResult]:
    """A fused group's jobs (one candidate; one training config but the seed; training sets of one size) trained
    as one network by :func:`nasprune.fused.train_fused`, each as :func:`_train_job` would train it alone;
    one result per job, in order."""
    candidates = {j.candidate for j in group}
    if len(candidates) != 1:
        raise ValueError(f"a fused group trains one candidate, got {sorted(candidates)}; group jobs by candidate")
    ds = loaded.dataset
    config = loaded.train_configs[group[0].training_set]  # its seed is not used: each job has its own
    return train_fused(group[0].candidate, [loaded.sets[j.training_set] for j in group], [j.seed for j in group],
                       config, in_channels=ds.in_channels, image_size=ds.image_size, num_classes=ds.num_classes,
                       val=(ds.val_x, ds.val_y), test=(ds.test_x, ds.test_y))


def _group_keys(loaded: _Loaded) -> dict[str, str]:
    """Per training set, what the jobs of one fused group must share besides their candidate: the training
    config but the seed (``train_fused`` trains every member under one config) and the training set's shape
    (its size: members train on sets of one size, batch by batch)."""
    keys = {}
    for ts, train_config in loaded.train_configs.items():
        config = {k: v for k, v in train_config.to_dict().items() if k != "seed"}
        keys[ts] = json.dumps([config, list(loaded.sets[ts][0].shape)], sort_keys=True)
    return keys


class Terminated(KeyboardInterrupt):
    """Raised in :func:`run_search` (and in its workers) when SIGTERM or SIGINT asked it to stop."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def exit_on_interrupt(command: str) -> Iterator[None]:
    """For entry points (``nasprune``, ``scripts/``): Ctrl-C or SIGTERM (:class:`Terminated`) inside ends the
    process with one line saying how to resume, not a traceback, and the exit status 128 + the signal's number
    (130 for SIGINT, 143 for SIGTERM), as a shell reports a process the signal killed. Finished jobs are kept,
    so the same command resumes."""
    try:
        yield
    except KeyboardInterrupt as e:
        print(f"{command}: interrupted; run the same command again to resume", file=sys.stderr)
        raise SystemExit(128 + getattr(e, "signum", signal.SIGINT)) from None


class _Stop:
    """What a process that runs jobs does on SIGTERM or SIGINT: inside :meth:`interruptible` (training,
    waiting) raise :class:`Terminated` at once; elsewhere (storage writes) remember it, so that a write is
    never cut in half, and raise at the next :meth:`interruptible` or :meth:`check`. With ``force_on_second``
    (the command a user runs; not its workers, which get the parent's SIGTERM after their own Ctrl-C) a
    second signal raises at once."""

    def __init__(self, force_on_second: bool = True) -> None:
        self.signum: int | None = None
        self.force_on_second = force_on_second
        self._armed = 0

    def handler(self, signum: int, frame) -> None:
        again, self.signum = self.signum is not None, signum
        if self._armed or (again and self.force_on_second):
            raise Terminated(signum)

    def check(self) -> None:
        if self.signum is not None:
            raise Terminated(self.signum)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        self.check()
        self._armed += 1
        try:
            yield
        finally:
            self._armed -= 1

    @contextlib.contextmanager
    def installed(self) -> Iterator["_Stop"]:
        """Handle SIGTERM and SIGINT with :meth:`handler` (only the main thread can), then restore."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self.handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _run_group(loaded: _Loaded, store: JobStore, group: list[Job], heartbeat: float, stop: _Stop) -> list[bool]:
    """Train claimed jobs (one alone, or a fused group) and record each one's result; on an error record it for
    every job (each is retried while it has retries left), on SIGTERM or Ctrl-C mark every job interrupted
    (queued again) and re-raise. Returns, per job, whether a result was recorded.

    A fused group's members are recorded as a job alone is, plus ``fused`` (the group's size); ``seconds`` and
    ``wall_seconds`` are each member's equal share of the group's, so that they add up as the jobs' times do."""
    beat = store.heartbeat(group, heartbeat)
    start = time.perf_counter()
    try:
        with stop.interruptible():
            if len(group) == 1:
                results = [_train_job(loaded, group[0].training_set, group[0].candidate, group[0].seed)]
            else:
                results = _train_group(loaded, group)
    except Exception as e:
        beat.stop()
        for job in group:
            store.fail(job, e)
        return [False] * len(group)
    except BaseException as e:  # KeyboardInterrupt, Terminated, SystemExit
        beat.stop()
        for job in group:
            store.interrupt(job, f"{type(e).__name__}: {e}")
        raise
    beat.stop()
    wall = (time.perf_counter() - start) / len(group)
    extra = {"fused": len(group)} if len(group) > 1 else {}
    recorded = []
    for job, r in zip(group, results):
        metrics = {"val_acc": r.val_acc, "test_acc": r.test_acc, "train_loss": r.train_loss, "seconds": r.seconds,
                   "images_per_sec": r.images_per_sec, "diverged": r.diverged, "epochs": r.epochs,
                   "wall_seconds": wall, "history": r.history, **extra}
        recorded.append(store.complete(job, metrics, r.val_acc))
    return recorded


def _work(loaded: _Loaded, store: JobStore, *, heartbeat: float, grace: float, stop: _Stop, fuse: int = 1,
          on_job: Callable[[bool], None] | None = None) -> None:
    """Claim and run jobs, up to ``fuse`` of them as one fused group, until none is waiting and no dead
    worker's job can be taken over, or until told to stop. ``on_job(recorded)`` runs after each job."""
    keys = _group_keys(loaded)

    def group_of(training_set: str, t) -> Hashable:
        if loaded.train_configs[training_set].eval_every:  # train_fused records no per-epoch history
            return t._trial_id  # a group of its own: trained unfused
        return t.user_attrs.get("candidate"), keys[training_set]

    while stop.signum is None:
        if fuse == 1:
            job = store.claim()
            group = [job] if job is not None else []
        else:
            group = store.claim_group(fuse, group_of)
        if not group:
            if store.recover(grace):
                continue
            return
        for recorded in _run_group(loaded, store, group, heartbeat, stop):
            if on_job is not None:
                on_job(recorded)


def _count(done, recorded: bool) -> None:
    """Add a recorded job to the counter the workers share with the parent's progress bar."""
    if recorded:
        with done.get_lock():
            done.value += 1


def _die_with_parent(parent: int) -> None:
    """Have Linux send this process SIGTERM when its parent ends, however it ends (SIGKILL too), so that a
    worker never outlives its ``nasprune search``. Elsewhere: nothing."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError, TypeError):
        return
    if os.getppid() != parent:  # it ended before the call
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(directory: str, url: str | None, threads: int, heartbeat: float, grace: float, fuse: int,
                 first: tuple[str, ...], go, done, parent: int) -> None:
    """Entry point of a spawned worker: load the data and proxies once (while the parent checks the
    experiment), wait for the parent's go, then run jobs, adding 1 to ``done`` per recorded job. Before
    the go, SIGTERM ends it at once (nothing was touched yet); after it, SIGTERM and SIGINT mark the
    running job interrupted and end the worker. It gets SIGTERM when the parent ends."""
    _die_with_parent(parent)
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        loaded, error = _load(Path(directory)), None
    except Exception as e:  # the parent finds the same problem and reports it
        loaded, error = None, e
    go.wait()
    if error is not None:
        raise error
    with _Stop(force_on_second=False).installed() as stop, contextlib.suppress(KeyboardInterrupt):
        store = JobStore.open(directory, loaded.experiment, url, first)
        _work(loaded, store, heartbeat=heartbeat, grace=grace, stop=stop, fuse=fuse,
              on_job=lambda ok: _count(done, ok))


# --- the public entry points ----------------------------------------------------------------------------------------


def prepare(experiment_dir: str | os.PathLike, storage: str | None = None, *, retry_failed: bool = False,
            grace: float = GRACE_SECONDS, first: Sequence[str] = ()) -> tuple[_Loaded, JobStore]:
    """Check the experiment against its data and storage, create the studies and queue the jobs not done.

    Everything that can be refused (config, candidates, proxies, storage URL, a study made with another
    config, a ``first`` training set it does not have) is checked before anything is written. Returns the
    loaded experiment and its job store, which claims jobs in ``Experiment.jobs(first)`` order.
    """
    directory = Path(experiment_dir)
    loaded = _load(directory)
    store = JobStore.open(directory, loaded.experiment, storage or loaded.experiment.storage, first)
    with store.locked():
        store.create(loaded.identity, loaded.info)
        store.recover(grace)
        store.top_up(retry_failed=retry_failed)
    return loaded, store


def _cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (containers)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    return n


def default_threads(workers: int, cpus: int | None = None) -> int:
    """Torch threads per worker process that do not oversubscribe the cores: ``cpus // workers``, at least
    1. (Two processes of 2 threads on 2 cores ran 3.4x slower than with 1 thread each.)"""
    cpus = cpus or _cpus()
    if workers > cpus:
        _log.warning("%d workers on %d cpus: each gets 1 thread and they share the cores", workers, cpus)
    return max(1, cpus // max(workers, 1))


def _stop_workers(procs: list, timeout: float) -> None:
    """SIGTERM the live workers, give them ``timeout`` seconds to record their interrupted jobs, then
    SIGKILL what is left (its job is recovered on the next run)."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def run_search(experiment_dir: str | os.PathLike, workers: int = 1, storage: str | None = None, *,
               threads: int | None = None, retry_failed: bool = False, progress: bool = True,
               heartbeat: float = HEARTBEAT_SECONDS, grace: float = GRACE_SECONDS, fuse: int = 1,
               first: Sequence[str] = (), log: Callable[[str], None] | None = print) -> dict:
    """Run every job of the experiment in ``experiment_dir`` that has not finished; return a summary.

    Args:
        experiment_dir: the directory holding ``experiment.json`` (and the journal file by default).
        workers: processes to spawn; 0 runs the jobs in this process (for tests and debugging). A script
            that spawns workers needs the ``if __name__ == "__main__":`` guard.
        storage: an Optuna RDB URL overriding the experiment's; the same URL on another machine joins.
        threads: torch threads per worker; default :func:`default_threads` (``cpus // workers``; in this
            process: torch's setting, capped at the cpus).
        retry_failed: give jobs that used up their retries one more attempt.
        progress: show a tqdm bar in this process (jobs done out of total; its rate and ETA count only
            the jobs of this run).
        heartbeat, grace: seconds between heartbeats of a running job, and without one before a job of
            another host is taken as dead and run again.
        fuse: the largest fused group: a worker trains up to ``fuse`` waiting jobs of one candidate, one
            training config (all but the seed) and one training-set size as one network
            (:mod:`nasprune.fused`); each stays its own trial and result. A group takes members of later
            seeds too, so a partial fused run is not complete seed by seed. 1 (the default) trains every job
            alone: on a CPU fusion measured slower (scripts/bench_fused.py); it is meant for GPUs, where
            small nets are launch-bound.
        first: training sets whose jobs are taken before any other's, every seed of each, in this order
            (:meth:`~nasprune.experiment.Experiment.jobs`); by default seed by seed. With ``fuse`` > 1 a
            group started on a ``first`` set may take jobs of later sets of the same candidate and size.
        log: where the line ``resumed: N finished jobs kept, M interrupted re-queued`` goes when a run
            resumes (None: nowhere).

    Returns:
        ``{"total", "complete", "failed", "unfinished", "worker_exitcodes"}``.

    Raises:
        Terminated: on SIGTERM or SIGINT, after every worker has stopped (their running jobs are queued
            again).
    """
    if not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an int >= 0, got {workers!r}")
    if not isinstance(fuse, int) or fuse < 1:
        raise ValueError(f"fuse must be an int >= 1 (1: no fusion), got {fuse!r}")
    exp = Experiment.load(experiment_dir)
    exp.set_order(first)  # an unknown training set is refused before any worker starts
    url = storage or exp.storage
    ctx = mp.get_context("spawn")
    go, done = ctx.Event(), ctx.Value("q", 0)
    n_threads = threads or default_threads(workers)
    codes: list[int | None] = []
    with _Stop().installed() as stop:
        # workers start (imports, data) while this process checks the experiment; they touch nothing before `go`
        procs = [ctx.Process(target=_worker_main, name=f"nasprune-worker-{i}",
                             args=(str(experiment_dir), url, n_threads, heartbeat, grace, fuse, tuple(first), go,
                                   done, os.getpid()))
                 for i in range(workers)]
        bar = None
        try:
            for p in procs:
                p.start()
            loaded, store = prepare(experiment_dir, storage, retry_failed=retry_failed, grace=grace, first=first)
            rows = store.status_rows()
            kept, requeued = sum(r["state"] == "complete" for r in rows), sum(r["requeued"] for r in rows)
            stop.check()
            go.set()
            if (kept or requeued) and log is not None:
                log(f"resumed: {kept} finished jobs kept, {requeued} interrupted re-queued")
            bar = _Progress(store, done, kept, full_every=5.0 if url is None else 60.0, enabled=progress)
            if workers == 0:
                with _torch_threads(threads or min(torch.get_num_threads(), _cpus())):
                    _work(loaded, store, heartbeat=heartbeat, grace=grace, stop=stop, fuse=fuse,
                          on_job=lambda recorded: _count(done, recorded) or bar.refresh())
                stop.check()
            else:
                with stop.interruptible():
                    while any(p.is_alive() for p in procs):
                        mp.connection.wait([p.sentinel for p in procs if p.is_alive()], timeout=1.0)
                        bar.refresh()
                stop.check()
                codes = [p.exitcode for p in procs]
        finally:
            _stop_workers(procs, STOP_SECONDS)
            if bar is not None:
                bar.close()
    if any(codes):
        _log.warning("workers exited with codes %s; run the search again to resume", codes)
    return {**store.summary(), "worker_exitcodes": codes}


class _Progress:
    """The progress bar of :func:`run_search`. It starts at the jobs already complete, so that its rate and
    ETA count only this run's jobs. It moves with this host's recorded jobs (a counter the workers share)
    and asks the storage for the whole picture (other hosts, failures) every ``full_every`` seconds, which
    on an RDB reads every trial."""

    def __init__(self, store: JobStore, done, kept: int, *, full_every: float, enabled: bool):
        from tqdm.auto import tqdm

        self.store, self.done, self.full_every = store, done, full_every
        self.bar = tqdm(total=len(store.exp.jobs()), initial=kept, desc=store.exp.name, unit="job",
                        disable=not enabled, smoothing=0.1)
        self.base, self.base_done, self.last = kept, done.value, time.monotonic()

    def refresh(self) -> None:
        if self.bar.disable:
            return
        if time.monotonic() - self.last >= self.full_every:
            s = self.store.summary()
            self.base, self.base_done, self.last = s["complete"], self.done.value, time.monotonic()
            if s["failed"]:
                self.bar.set_postfix(failed=s["failed"])
        n = min(self.base + self.done.value - self.base_done, self.bar.total)
        if n > self.bar.n:
            self.bar.update(n - self.bar.n)

    def close(self) -> None:
        self.refresh()
        self.bar.close()


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
