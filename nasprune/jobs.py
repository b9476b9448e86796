"""The job life cycle, in one place: queue, claim, heartbeat, complete, fail, retry, recover and read back.

An experiment's job is one (training set, candidate, seed). Each training set is one Optuna study named
``"{experiment}:{training set}"``; each attempt at a job is one trial, whose ``job`` user attr names the
job, whose params are the spec's factors plus the seed, whose user attrs hold the metrics and whose value
is the validation accuracy in percent. A job's trials go through these states:

- ``WAITING``: queued by :meth:`JobStore.top_up` for a job with no complete, waiting or running trial.
  Trials are only ever created under the experiment's *queue lock* (:meth:`JobStore.locked`), after the
  job's trials are read again under it, so two processes never queue one job twice: an ``flock`` on
  the journal file, on the SQLite file, or a PostgreSQL advisory lock (all released by the system when
  their holder dies).
- ``RUNNING``: taken by :meth:`JobStore.claim` through the storage's atomic WAITING -> RUNNING transition
  (the one ``study.ask()`` uses), so two workers never take the same trial. The claimer writes its
  identity (``claim:<host>:<pid>``) into the trial first, so a running trial always names its process,
  and a :class:`Heartbeat` refreshes ``heartbeat`` while it trains.
- ``COMPLETE``: :meth:`JobStore.complete` wrote the metrics and the value.
- ``FAIL``: training raised (``error``; :meth:`JobStore.fail` queues the job again while it has raised
  at most ``max_retries`` times), or it was stopped (``interrupted``: :meth:`JobStore.interrupt` when the
  worker got SIGTERM or Ctrl-C, :meth:`JobStore.recover` when its worker died; queued again, not counted).

Every method works on any Optuna storage: the journal file (processes of one host) or an RDB (several
machines). Claiming reads only the waiting trials and recovering only the running ones, so their cost
does not grow with the finished part of a study.

A fused group of jobs (one candidate trained on several training sets or seeds at once, see
:mod:`nasprune.fused`) is claimed by :meth:`JobStore.claim_group`: its first member as :meth:`JobStore.claim`
takes one, then further waiting trials of the same group from the same snapshot, each through the same atomic
transition. Each member stays its own trial, with its own claim, heartbeat, result, failure or interruption.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Iterator, Sequence

import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState, create_trial

from nasprune.artifacts import changed_settings, jsonable, show_changes
from nasprune.errors import StorageError
from nasprune.experiment import Experiment, ExperimentError
from nasprune.train import config_defaults
from search_spaces.convnet import ACTIVATIONS, NORMS, POOLINGS, ConvNetSpec

__all__ = ["EXTRA_COLUMNS", "HISTORY_COLUMNS", "JOB_COLUMNS", "JOURNAL_FILE", "Heartbeat", "Job", "JobStore",
           "StorageError", "copy_training_set", "job_status", "load_history", "load_jobs", "open_storage"]

JOURNAL_FILE = "optuna.journal"
LIVE = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
# Wide, fixed distributions: every trial of every experiment stays compatible with every other.
DISTRIBUTIONS = {
    "width": IntDistribution(1, 1 << 16), "depth": IntDistribution(1, 1 << 10),
    "act": CategoricalDistribution(ACTIVATIONS), "norm": CategoricalDistribution(NORMS),
    "pool": CategoricalDistribution(POOLINGS), "seed": IntDistribution(0, 2**31 - 1),
}
JOB_COLUMNS = ["training_set", "candidate", "seed", "val_acc", "test_acc", "train_loss", "seconds",
               "images_per_sec", "diverged", "epochs"]
EXTRA_COLUMNS = ["wall_seconds", "attempt", "images", "bytes", "proxy_minutes", "method", "started",
                 "completed", "trial"]
METRICS = ("val_acc", "test_acc", "train_loss", "seconds", "images_per_sec", "diverged", "epochs", "wall_seconds")
HISTORY_COLUMNS = ["training_set", "candidate", "seed", "epoch", "val_acc", "train_loss"]
# TrainConfig settings that change speed, not results: a study made under another value is the same study
SPEED_ONLY = ("eval_batch_size",)
_log = logging.getLogger("nasprune.runner")


# --- storage ------------------------------------------------------------------------------------------------------


def open_storage(directory: str | os.PathLike, url: str | None = None) -> optuna.storages.BaseStorage:
    """The journal file ``DIR/optuna.journal`` when ``url`` is None, else an Optuna RDB storage."""
    if url is None:
        path = Path(directory) / JOURNAL_FILE
        repair_journal(path)
        return optuna.storages.JournalStorage(_JournalFile(str(path)))
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except Exception as e:  # sqlalchemy raises many kinds; all mean "cannot use this URL"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"cannot reach storage {redact(url)}: {first}") from None


class _JournalFile(optuna.storages.journal.JournalFileBackend):
    """Optuna's journal file, whose unreadable lines are one :class:`StorageError` naming the file and line."""

    def read_logs(self, log_number_from: int):
        try:
            yield from super().read_logs(log_number_from)
        except ValueError as e:  # json.JSONDecodeError, or Optuna's "Invalid log format."
            line = _first_bad_line(Path(self._file_path))
            raise StorageError(
                f"{self._file_path}: line {line} is not a journal entry ({e}); the journal is corrupted. Restore "
                "it from a copy, or move it away to start the search again (finished jobs are lost)") from None


def _first_bad_line(path: Path) -> int | None:
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                json.loads(line)
            except ValueError:
                return number
    return None


def redact(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)


def repair_journal(path: Path) -> None:
    """Cut a half-written last line (left by a process killed mid-write), under the journal's own lock;
    otherwise the next append would glue onto it and make the journal unreadable."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
    lock = optuna.storages.journal.JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        data = path.read_bytes()
        if not data.endswith(b"\n"):  # checked again under the lock: a live writer may just have finished
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
            _log.warning("%s: removed a half-written last line left by a killed process", path)
    finally:
        lock.release()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "ab") as f:  # an advisory lock beside Optuna's own (a symlink); gone when the process is
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _pg_lock(storage: optuna.storages.RDBStorage, name: str) -> Iterator[None]:
    from sqlalchemy import text

    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with storage.engine.connect() as conn:  # a session lock: the server drops it when the connection dies
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})


def _queue_lock(storage, directory: Path, url: str | None, name: str):
    """A context-manager factory for the experiment's queue lock on this storage."""
    if url is None:
        return lambda: _file_lock(directory / JOURNAL_FILE)
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return lambda: _pg_lock(storage, f"nasprune:{name}")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return lambda: _file_lock(Path(parsed.database))

    def unlocked():
        _log.warning("no queue lock for %s storage: run one `nasprune search` at a time against %s, or two may "
                     "queue a job twice", parsed.get_backend_name(), redact(url))
        return contextlib.nullcontext()

    return unlocked


# --- who is alive --------------------------------------------------------------------------------------------------


def host_id() -> str:
    """Hostname plus boot id: two containers with one hostname on different machines still differ."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _process_alive(pid: int, start: int | None) -> bool:
    if Path("/proc/self/stat").exists():
        now = proc_start(pid)
        return now is not None and (start is None or now == start)  # a reused pid has another start time
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def is_stale(t: FrozenTrial, grace: float) -> bool:
    """True when every process that claimed this RUNNING trial is gone: on this host, dead; on another,
    silent (no heartbeat or claim) for ``grace`` seconds."""
    claimers = [v for k, v in t.user_attrs.items() if k.startswith("claim:") and v]
    if not claimers:  # not claimed through nasprune
        return t.datetime_start is None or time.time() - t.datetime_start.timestamp() > grace
    beat = float(t.user_attrs.get("heartbeat", 0))
    for w in claimers:
        if w.get("host") == host_id():
            if _process_alive(int(w["pid"]), w.get("proc_start")):
                return False
        elif time.time() - max(beat, float(w.get("started", 0))) <= grace:
            return False
    return True


def _me() -> dict:
    return {"host": host_id(), "pid": os.getpid(), "proc_start": proc_start(os.getpid()), "started": time.time()}


# --- studies --------------------------------------------------------------------------------------------------------


def _comparable(config: dict) -> dict:
    """A study's identity as compared: TrainConfig settings added since the study was made count as their
    defaults, and settings that change only speed (``SPEED_ONLY``) are left out."""
    if not isinstance(config.get("train"), dict):
        return config
    defaults = {k: v for k, v in config_defaults().items() if k != "seed"}
    train = {**jsonable(defaults), **config["train"]}
    return {**config, "train": {k: v for k, v in train.items() if k not in SPEED_ONLY}}


def check_study(storage, name: str, config: dict) -> int | None:
    """The id of study ``name`` (None if there is none yet); refuse one made with another configuration.
    Only reads."""
    try:
        sid = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    stored = storage.get_study_user_attrs(sid).get("config")
    diff = {} if stored is None else changed_settings(_comparable(stored), _comparable(config))
    if diff:
        raise ExperimentError(
            f"study {name!r} was run with another configuration (setting stored -> now): {show_changes(diff)}; "
            "restore the old config, or start a new experiment (another name, or another storage)")
    return sid


def ensure_study(storage, name: str, config: dict, info: dict) -> int:
    """Create study ``name`` if needed and record its configuration (checked on every later run) and
    facts for reports (``info``)."""
    sid = check_study(storage, name, config)
    if sid is None:
        try:
            sid = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], name)
        except optuna.exceptions.DuplicatedStudyError:  # another process made it just now
            sid = check_study(storage, name, config)
    attrs = storage.get_study_user_attrs(sid)
    if attrs.get("config") is None:
        storage.set_study_user_attr(sid, "config", config)
    if attrs.get("info") != info:
        storage.set_study_user_attr(sid, "info", info)
    return sid


def job_key(candidate: str, seed: int) -> str:
    return f"{candidate}|seed={seed}"


def by_job(storage, sid: int) -> dict[str, list[FrozenTrial]]:
    """The study's trials grouped by job, in trial order."""
    out: dict[str, list[FrozenTrial]] = {}
    for t in sorted(storage.get_all_trials(sid, deepcopy=False), key=lambda t: t.number):
        out.setdefault(t.user_attrs.get("job"), []).append(t)
    return out


# --- a claimed job and its heartbeat ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One claimed attempt at a job: a RUNNING trial that this process owns."""

    training_set: str
    candidate: str
    seed: int
    study_id: int
    trial_id: int
    attempt: int

    @property
    def key(self) -> str:
        return job_key(self.candidate, self.seed)


class Heartbeat(threading.Thread):
    """Writes ``heartbeat = time.time()`` into running trials (one job's, or every member's of a fused group)
    every ``interval`` seconds until stopped, so that processes on other hosts can tell a live job from a dead one."""

    def __init__(self, storage, trial_ids: int | Sequence[int], interval: float):
        super().__init__(daemon=True)
        self.storage, self.interval, self.done = storage, interval, threading.Event()
        self.trial_ids = [trial_ids] if isinstance(trial_ids, int) else list(trial_ids)

    def run(self) -> None:
        while self.trial_ids and not self.done.wait(self.interval):
            for trial_id in list(self.trial_ids):
                try:
                    self.storage.set_trial_user_attr(trial_id, "heartbeat", time.time())
                except UpdateFinishedTrialError:  # finished elsewhere: nothing left to keep alive
                    self.trial_ids.remove(trial_id)
                except Exception as e:  # a storage hiccup: the next beat tries again
                    _log.warning("heartbeat of trial %s not written (%s); retrying", trial_id, e)

    def stop(self) -> None:
        self.done.set()
        self.join()


# --- the store --------------------------------------------------------------------------------------------------------


class JobStore:
    """The jobs of one experiment in one Optuna storage, and every change of a job's state.

    Build it with :meth:`open` (studies that exist) or :meth:`create` (check and create every study).
    Jobs are claimed in ``exp.jobs(first)`` order.
    """

    def __init__(self, storage, exp: Experiment, study_ids: dict[str, int], lock=None, first: Sequence[str] = ()):
        self.storage, self.exp, self.study_ids = storage, exp, study_ids
        self._order = exp.set_order(first)  # the (training set, seed) pairs jobs are claimed in, fixed once
        self._lock, self._depth = lock, 0

    @classmethod
    def open(cls, directory: str | os.PathLike, exp: Experiment | None = None, url: str | None = None,
             first: Sequence[str] = ()) -> "JobStore":
        """The experiment's existing studies in its storage (``url`` overrides the experiment's); a training
        set with no study yet is left out. ``first``: as :meth:`Experiment.jobs`, checked before the storage
        is opened (which creates a journal file)."""
        exp = exp or Experiment.load(directory)
        exp.set_order(first)
        url = url or exp.storage
        st = open_storage(directory, url)
        ids = {}
        for ts in exp.training_sets:
            with contextlib.suppress(KeyError):
                ids[ts] = st.get_study_id_from_name(exp.study_name(ts))
        return cls(st, exp, ids, _queue_lock(st, Path(directory), url, exp.name), first)

    def create(self, identity: dict[str, dict], info: dict[str, dict]) -> None:
        """Check every training set's study against its ``identity`` (refusing before anything is written),
        then create the missing ones and record ``info`` (facts for reports)."""
        with self.locked():
            for ts in self.exp.training_sets:
                check_study(self.storage, self.exp.study_name(ts), identity[ts])
            for ts in self.exp.training_sets:
                self.study_ids[ts] = ensure_study(self.storage, self.exp.study_name(ts), identity[ts], info[ts])

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the experiment's queue lock (re-entrant within this store)."""
        outermost = self._lock is not None and self._depth == 0
        with self._lock() if outermost else contextlib.nullcontext():
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1

    # --- queueing ---------------------------------------------------------------------------------------------------

    def _enqueue(self, sid: int, candidate: str, seed: int, attempt: int) -> None:
        params = {**ConvNetSpec.from_id(candidate).as_params(), "seed": seed}
        self.storage.create_new_trial(sid, template_trial=create_trial(
            state=TrialState.WAITING, params=params, distributions={k: DISTRIBUTIONS[k] for k in params},
            user_attrs={"job": job_key(candidate, seed), "candidate": candidate, "seed": seed, "attempt": attempt}))

    def top_up(self, training_set: str | None = None, *, only: str | None = None, retry_failed: bool = False) -> int:
        """Queue each job (of one training set, or of all; only job ``only`` if given) that needs a trial,
        under the queue lock; return how many were queued.

        A job needs one when it has no complete, waiting or running trial and has raised at most
        ``max_retries`` times (``retry_failed`` lifts that limit once). Waiting trials that duplicate a
        live one (left by versions that queued without the lock) are marked FAIL ``duplicate``.
        """
        added = 0
        with self.locked():
            for ts in [training_set] if training_set else list(self.study_ids):
                sid = self.study_ids[ts]
                trials = by_job(self.storage, sid)
                for c in self.exp.candidates:
                    for s in self.exp.seeds_of(ts):
                        key = job_key(c, s)
                        if only is not None and key != only:
                            continue
                        mine = trials.get(key, [])
                        self._drop_duplicates(mine)
                        if any(t.state in LIVE for t in mine):
                            continue
                        errors = sum(t.state == TrialState.FAIL and "error" in t.user_attrs for t in mine)
                        if errors > self.exp.max_retries and not retry_failed:
                            continue
                        self._enqueue(sid, c, s, attempt=len(mine) + 1)
                        added += 1
        return added

    def _drop_duplicates(self, mine: list[FrozenTrial]) -> None:
        """Mark FAIL ``duplicate`` (with the number of the trial kept) every waiting trial of one job but the
        live one: a running or complete trial, else the first waiting one."""
        waiting = [t for t in mine if t.state == TrialState.WAITING]
        kept = next((t for t in mine if t.state in (TrialState.RUNNING, TrialState.COMPLETE)), None) or \
            next(iter(waiting), None)
        for t in waiting:
            if t is not kept:
                with contextlib.suppress(UpdateFinishedTrialError):
                    self.storage.set_trial_user_attr(t._trial_id, "duplicate", kept.number)
                    self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)

    # --- claiming ---------------------------------------------------------------------------------------------------

    def waiting(self) -> Iterator[tuple[str, FrozenTrial]]:
        """Waiting trials as ``(training set, trial)`` in ``exp.jobs(first)`` order (seed by seed, then training
        set, the ``first`` sets before all), one per job (its first). Reads only the waiting trials, of each
        study only once it is reached."""
        snapshot: dict[str, list[FrozenTrial]] = {}
        for ts, seed in self._order:
            if ts not in self.study_ids:
                continue
            if ts not in snapshot:
                trials = self.storage.get_all_trials(self.study_ids[ts], deepcopy=False, states=(TrialState.WAITING,))
                snapshot[ts] = sorted(trials, key=lambda t: t.number)
            seen = set()
            for t in snapshot[ts]:
                key = t.user_attrs.get("job")
                if t.user_attrs.get("seed") == seed and key not in seen:
                    seen.add(key)
                    yield ts, t

    def take(self, training_set: str, t: FrozenTrial) -> Job | None:
        """Claim waiting trial ``t`` through the atomic WAITING -> RUNNING transition; None if another
        process took it first."""
        key = f"claim:{host_id()}:{os.getpid()}"
        try:
            self.storage.set_trial_user_attr(t._trial_id, key, _me())
            if not self.storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
                self.storage.set_trial_user_attr(t._trial_id, key, None)  # lost the race: not ours
                return None
        except UpdateFinishedTrialError:
            return None
        a = t.user_attrs
        return Job(training_set, a["candidate"], int(a["seed"]), self.study_ids[training_set], t._trial_id,
                   int(a.get("attempt", 1)))

    def claim(self) -> Job | None:
        """Take the first waiting job in :meth:`waiting` order; None when none is waiting."""
        group = self.claim_group(1, lambda ts, t: None)
        return group[0] if group else None

    def claim_group(self, size: int, group_of: Callable[[str, FrozenTrial], Hashable]) -> list[Job]:
        """Take up to ``size`` waiting jobs that ``group_of(training set, trial)`` puts in one group: the first
        waiting job that can be taken (as :meth:`claim`), then more of its group, in :meth:`waiting` order, from
        the same snapshot of the waiting trials. Each is taken through the atomic WAITING -> RUNNING transition,
        so a trial another process took in the meantime is skipped, never shared. Empty when none is waiting."""
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        group: list[Job] = []
        key = None
        for ts, t in self.waiting():
            if group and group_of(ts, t) != key:
                continue
            job = self.take(ts, t)
            if job is None:
                continue
            if not group:
                key = group_of(ts, t)
            group.append(job)
            if len(group) == size:
                break
        return group

    def heartbeat(self, jobs: Job | Sequence[Job], interval: float) -> Heartbeat:
        """A started :class:`Heartbeat` for the job (or for every job of a group); call its ``stop()`` before
        recording the result."""
        beat = Heartbeat(self.storage, [j.trial_id for j in ([jobs] if isinstance(jobs, Job) else jobs)], interval)
        beat.start()
        return beat

    # --- ending a job -----------------------------------------------------------------------------------------------

    def complete(self, job: Job, metrics: dict, value: float) -> bool:
        """Record the metrics (NaN stored as None) and the value; False when another process had taken the
        job for dead and the result was dropped.

        ``metrics["history"]`` (``TrainResult.history``) is recorded as the user attr ``history``, a JSON list
        of ``{"epoch", "val_acc", "train_loss"}`` (:func:`load_history` reads it back), only when it holds a
        validation accuracy (``TrainConfig.eval_every`` > 0): a job's bare loss curve is not stored."""
        metrics = dict(metrics)
        history = _history_attr(metrics.pop("history", None) or [])
        if history:
            metrics["history"] = history
        try:
            for k, v in metrics.items():
                self.storage.set_trial_user_attr(job.trial_id, k, None if isinstance(v, float) and v != v else v)
            self.storage.set_trial_state_values(job.trial_id, TrialState.COMPLETE, [float(value)])
        except UpdateFinishedTrialError:
            _log.warning("%s %s finished after another process took it for dead; result dropped",
                         job.training_set, job.key)
            return False
        return True

    def fail(self, job: Job, error: BaseException) -> bool:
        """Record that training raised, and queue the job again while it has retries left; return whether
        it was queued again."""
        self._finish(job, "error", "".join(traceback.format_exception(error))[-4000:])
        _log.warning("%s %s failed: %s", job.training_set, job.key, error)
        return self.top_up(job.training_set, only=job.key) > 0

    def interrupt(self, job: Job, reason: str) -> None:
        """Record that the job was stopped before it finished (SIGTERM, Ctrl-C), and queue it again."""
        self._finish(job, "interrupted", reason)
        self.top_up(job.training_set, only=job.key)

    def _finish(self, job: Job, kind: str, text: str) -> None:
        with contextlib.suppress(UpdateFinishedTrialError):
            self.storage.set_trial_user_attr(job.trial_id, kind, text)
            self.storage.set_trial_state_values(job.trial_id, TrialState.FAIL)

    def recover(self, grace: float) -> int:
        """Mark RUNNING trials of dead workers FAIL (``interrupted``) and queue their jobs again; return how
        many jobs were queued. Reads only the running trials."""
        n = 0
        for ts, sid in self.study_ids.items():
            for t in self.storage.get_all_trials(sid, deepcopy=False, states=(TrialState.RUNNING,)):
                if not is_stale(t, grace):
                    continue
                gone = [k.removeprefix("claim:") for k, v in t.user_attrs.items() if k.startswith("claim:") and v]
                try:
                    self.storage.set_trial_user_attr(t._trial_id, "interrupted",
                                                     f"worker gone: {', '.join(gone) or 'unknown'}")
                    self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                except UpdateFinishedTrialError:
                    continue  # another process recovered it, or it has just finished
                n += self.top_up(ts, only=t.user_attrs.get("job"))
        return n

    # --- reading back -----------------------------------------------------------------------------------------------

    def status_rows(self) -> list[dict]:
        """One dict per job: training_set, candidate, seed, state (complete / running / waiting / failed /
        pending), errors, error (the last one's final line), requeued (waiting again after its last
        attempt was interrupted) and worker (``host:pid`` of a running job's process; a fused group's
        members share one)."""
        rows = []
        for ts, sid in self.study_ids.items():
            trials = by_job(self.storage, sid)
            for c in self.exp.candidates:
                for s in self.exp.seeds_of(ts):
                    mine = trials.get(job_key(c, s), [])
                    states = {t.state for t in mine}
                    errors = [t.user_attrs["error"] for t in mine
                              if t.state == TrialState.FAIL and "error" in t.user_attrs]
                    state = ("complete" if TrialState.COMPLETE in states else "running" if TrialState.RUNNING in states
                             else "waiting" if TrialState.WAITING in states else "failed" if errors else "pending")
                    ended = [t for t in mine if t.state == TrialState.FAIL and "duplicate" not in t.user_attrs]
                    requeued = state == "waiting" and bool(ended) and "interrupted" in ended[-1].user_attrs
                    claimers = [k.removeprefix("claim:") for t in mine if t.state == TrialState.RUNNING
                                for k, v in t.user_attrs.items() if k.startswith("claim:") and v]
                    rows.append({"training_set": ts, "candidate": c, "seed": s, "state": state, "errors": len(errors),
                                 "error": errors[-1].strip().splitlines()[-1] if errors else None,
                                 "requeued": requeued, "worker": claimers[-1] if claimers else None})
        return rows

    def summary(self, rows: list[dict] | None = None) -> dict:
        """``{"total", "complete", "failed", "unfinished"}`` over every job of the experiment (jobs of
        training sets with no study yet count as unfinished); ``rows`` from :meth:`status_rows` if at hand."""
        rows = self.status_rows() if rows is None else rows
        total = len(self.exp.jobs())
        n = {s: sum(r["state"] == s for r in rows) for s in ("complete", "failed")}
        return {"total": total, **n, "unfinished": total - n["complete"] - n["failed"]}

    def completed(self, training_set: str) -> list[FrozenTrial]:
        """The first COMPLETE trial of each job of the training set, in trial order."""
        wanted = {job_key(c, s) for c in self.exp.candidates for s in self.exp.seeds_of(training_set)}
        seen: set[str] = set()
        out = []
        sid = self.study_ids[training_set]
        trials = self.storage.get_all_trials(sid, deepcopy=False, states=(TrialState.COMPLETE,))
        for t in sorted(trials, key=lambda t: t.number):
            key = t.user_attrs.get("job")
            if key in wanted and key not in seen:
                seen.add(key)
                out.append(t)
        return out


def _history_attr(history: Sequence[dict]) -> list[dict]:
    """``TrainResult.history`` as stored: epoch, val_acc (None where not measured) and train_loss (NaN as None);
    empty unless some epoch has a validation accuracy."""
    if not any(h.get("val_acc") is not None for h in history):
        return []

    def number(v) -> float | None:
        return None if v is None or v != v else float(v)

    return [{"epoch": int(h["epoch"]), "val_acc": number(h.get("val_acc")), "train_loss": number(h.get("train_loss"))}
            for h in history]


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


def job_status(experiment_dir: str | os.PathLike, storage: str | None = None) -> pd.DataFrame:
    """One row per job: training_set, candidate, seed, state (complete / running / waiting / failed /
    pending), errors (attempts that raised), error (the last one's final line), requeued and worker."""
    rows = JobStore.open(experiment_dir, url=storage).status_rows()
    return pd.DataFrame(rows, columns=["training_set", "candidate", "seed", "state", "errors", "error", "requeued",
                                       "worker"])


def load_jobs(experiment_dir: str | os.PathLike, storage: str | None = None) -> pd.DataFrame:
    """One row per finished job of the experiment (its first COMPLETE trial), accuracies in percent.

    Columns: :data:`JOB_COLUMNS`, then :data:`EXTRA_COLUMNS`: ``wall_seconds`` (the whole job: model
    building, training, evaluation), ``attempt``, ``images``/``bytes`` (the training set's size, uint8
    pixels), ``proxy_minutes`` (building the proxy), ``method``, ``started``/``completed`` (ISO times)
    and ``trial`` (its number in the study). ``test_acc`` is NaN for training sets trained with
    ``eval_test: false``.
    """
    store = JobStore.open(experiment_dir, url=storage)
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
    df = pd.DataFrame(rows, columns=JOB_COLUMNS + EXTRA_COLUMNS)
    for col in ("val_acc", "test_acc", "train_loss", "seconds", "images_per_sec", "wall_seconds", "proxy_minutes"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["diverged"] = df["diverged"].astype(bool)
    return df


def load_history(experiment_dir: str | os.PathLike, storage: str | None = None) -> pd.DataFrame:
    """Per-epoch validation accuracy of every finished job trained with ``TrainConfig.eval_every`` > 0, as a
    tidy frame: one row per (training_set, candidate, seed, epoch) with ``val_acc`` (percent; NaN at epochs
    that were not evaluated) and ``train_loss``. Jobs that recorded no history are left out, so the frame is
    empty for an experiment that never set ``eval_every``. :func:`nasprune.metrics.ranking_by_epoch` turns it
    into the ranking's agreement with its last epoch."""
    store = JobStore.open(experiment_dir, url=storage)
    rows = [{"training_set": ts, "candidate": t.user_attrs["candidate"], "seed": t.user_attrs["seed"], **h}
            for ts in store.study_ids for t in store.completed(ts) for h in t.user_attrs.get("history") or []]
    df = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    for col in ("val_acc", "train_loss"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df.astype({"seed": int, "epoch": int})
