"""The NAS runner: workers that train every candidate on every training set of an experiment.

An experiment (``DIR/experiment.json``, see :class:`Experiment`) is a dataset, candidate spec ids, named
training sets (the whole training split, or a ProxySet file) each with its TrainConfig, and seeds.
Every (training set, candidate, seed) is one *job*, kept as Optuna trials by the job store
(``nasprune/search/_store.py``: queue, claim, heartbeat, complete, fail, retry, recover).

:func:`run_search` checks everything that can be refused (config, candidates, proxies, storage) before
touching the studies, queues the jobs that are not done, and spawns workers that claim and run them.
It resumes a killed run: finished jobs are kept, and the jobs of dead workers are run again. SIGTERM
(or Ctrl-C) stops it cleanly: the workers mark their running jobs interrupted, which queues them again,
and exit before the command does. The default storage, the journal file ``DIR/optuna.journal``, serves
the processes of one host; an RDB URL (PostgreSQL) serves several machines, each running the same command.

With ``fuse=K`` a worker claims up to K waiting jobs of one candidate that share the training config (all
but the seed) and the training set's size, e.g. one candidate on several equal-size proxies and seeds, and
trains them as one network (:func:`nasprune.training.train_fused`). Each member stays its own trial with its own
result, as if it had run alone (weights equal to float32 rounding, tests/training/test_fused.py).
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import time
from pathlib import Path
from typing import Callable, Hashable, Iterator, Sequence

import torch

from ._experiment import Experiment
from ._loaded import Loaded, group_keys, load, train_group, train_job
from ._signals import Stop
from ._store import Job, JobStore

__all__ = ["GRACE_SECONDS", "HEARTBEAT_SECONDS", "default_threads", "prepare", "run_search"]

HEARTBEAT_SECONDS = 30.0  # how often a running job refreshes its heartbeat
GRACE_SECONDS = 180.0  # a job on another host with no heartbeat for this long is taken as dead
STOP_SECONDS = 30.0  # how long SIGTERM'd workers get to record their interrupted jobs before SIGKILL
_log = logging.getLogger("nasprune.search")


def _run_group(loaded: Loaded, store: JobStore, group: list[Job], heartbeat: float, stop: Stop) -> list[bool]:
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
                results = [train_job(loaded, group[0].training_set, group[0].candidate, group[0].seed)]
            else:
                results = train_group(loaded, group)
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
        metrics = {"val_acc": r.val_acc, "test_acc": r.test_acc, "train_loss": r.train_loss, "tse": r.tse,
                   "seconds": r.seconds,
                   "images_per_sec": r.images_per_sec, "diverged": r.diverged, "epochs": r.epochs,
                   "wall_seconds": wall, "history": r.history, **extra}
        recorded.append(store.complete(job, metrics, r.val_acc))
    return recorded


def _work(loaded: Loaded, store: JobStore, *, heartbeat: float, grace: float, stop: Stop, fuse: int = 1,
          on_job: Callable[[bool], None] | None = None) -> None:
    """Claim and run jobs, up to ``fuse`` of them as one fused group, until none is waiting and no dead
    worker's job can be taken over, or until told to stop. ``on_job(recorded)`` runs after each job."""
    keys = group_keys(loaded)

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
        loaded, error = load(Path(directory)), None
    except Exception as e:  # the parent finds the same problem and reports it
        loaded, error = None, e
    go.wait()
    if error is not None:
        raise error
    with Stop(force_on_second=False).installed() as stop, contextlib.suppress(KeyboardInterrupt):
        store = JobStore.open(directory, loaded.experiment, url, first)
        _work(loaded, store, heartbeat=heartbeat, grace=grace, stop=stop, fuse=fuse,
              on_job=lambda ok: _count(done, ok))


# --- the public entry points ----------------------------------------------------------------------------------------


def prepare(experiment_dir: str | os.PathLike, storage: str | None = None, *, retry_failed: bool = False,
            grace: float = GRACE_SECONDS, first: Sequence[str] = ()) -> tuple[Loaded, JobStore]:
    """Check the experiment against its data and storage, create the studies and queue the jobs not done.

    Everything that can be refused (config, candidates, proxies, storage URL, a study made with another
    config, a ``first`` training set it does not have) is checked before anything is written. Returns the
    loaded experiment and its job store, which claims jobs in ``Experiment.jobs(first)`` order.
    """
    directory = Path(experiment_dir)
    loaded = load(directory)
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
            (:func:`nasprune.training.train_fused`); each stays its own trial and result. A group takes members of later
            seeds too, so a partial fused run is not complete seed by seed. 1 (the default) trains every job
            alone: on a CPU fusion measured slower (scripts/bench_fused.py); it is meant for GPUs, where
            small nets are launch-bound.
        first: training sets whose jobs are taken before any other's, every seed of each, in this order
            (:meth:`~nasprune.search.Experiment.jobs`); by default seed by seed. With ``fuse`` > 1 a
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
    with Stop().installed() as stop:
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
    summary = {**store.summary(), "worker_exitcodes": codes}
    if any(codes):
        _log.warning("workers exited with codes %s; %s", codes, "run the search again to resume"
                     if summary["unfinished"] else "the other workers finished every job")
    return summary


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
