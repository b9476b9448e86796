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
  and its heartbeat is refreshed while it trains (``nasprune/search/_liveness.py``).
- ``COMPLETE``: :meth:`JobStore.complete` wrote the metrics and the value.
- ``FAIL``: training raised (``error``; :meth:`JobStore.fail` queues the job again while it has raised
  at most ``max_retries`` times), or it was stopped (``interrupted``: :meth:`JobStore.interrupt` when the
  worker got SIGTERM or Ctrl-C, :meth:`JobStore.recover` when its worker died; queued again, not counted).
  The retries are counted here, over the job's trials, rather than by Optuna's ``RetryFailedTrialCallback``:
  that callback copies the failed trial's user attrs (its claims, its error) into the retry and counts along a
  chain of system attrs that an interruption's re-queue would break, and it was renamed within the Optuna
  versions nasprune supports.

Every method works on any Optuna storage (``nasprune/search/_storage.py``) through its public API: the journal
file (processes of one host) or an RDB (several machines). Claiming reads only the waiting trials and recovering only the running ones, so their cost
does not grow with the finished part of a study.

A fused group of jobs (one candidate trained on several training sets or seeds at once, see
:func:`nasprune.training.train_fused`) is claimed by :meth:`JobStore.claim_group`: its first member as :meth:`JobStore.claim`
takes one, then further waiting trials of the same group from the same snapshot, each through the same atomic
transition. Each member stays its own trial, with its own claim, heartbeat, result, failure or interruption.
"""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Iterator, Sequence

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState, create_trial

from search_spaces.convnet import ConvNetSpec

from ._experiment import Experiment
from ._liveness import HEARTBEAT_DIR, AttrBeats, FileBeats, Heartbeat, claim, claimers, is_stale
from ._storage import open_storage, queue_lock
from ._studies import DISTRIBUTIONS, by_job, check_study, ensure_study, job_key

__all__ = ["Job", "JobStore"]

LIVE = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
_log = logging.getLogger("nasprune.search")


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


class JobStore:
    """The jobs of one experiment in one Optuna storage, and every change of a job's state.

    Build it with :meth:`open` (studies that exist) or :meth:`create` (check and create every study).
    Jobs are claimed in ``exp.jobs(first)`` order.
    """

    def __init__(self, storage, exp: Experiment, study_ids: dict[str, int], lock=None, first: Sequence[str] = (),
                 beats: AttrBeats | FileBeats | None = None):
        self.storage, self.exp, self.study_ids = storage, exp, study_ids
        self._order = exp.set_order(first)  # the (training set, seed) pairs jobs are claimed in, fixed once
        self._lock, self._depth = lock, 0
        self._beats = beats or AttrBeats(storage)

    @classmethod
    def open(cls, directory: str | os.PathLike, exp: Experiment | None = None, url: str | None = None,
             first: Sequence[str] = ()) -> "JobStore":
        """The experiment's existing studies in its storage (``url`` overrides the experiment's); a training
        set with no study yet is left out. ``first``: as :meth:`Experiment.jobs`, checked before the storage
        is opened (which creates a journal file). Opening a journal replays it: open the store once per command."""
        exp = exp or Experiment.load(directory)
        exp.set_order(first)
        url = url or exp.storage
        st = open_storage(directory, url)
        ids = {}
        for ts in exp.training_sets:
            with contextlib.suppress(KeyError):
                ids[ts] = st.get_study_id_from_name(exp.study_name(ts))
        beats = FileBeats(Path(directory) / HEARTBEAT_DIR) if url is None else AttrBeats(st)
        return cls(st, exp, ids, queue_lock(Path(directory), url, exp.name), first, beats)

    def trial_id(self, training_set: str, t: FrozenTrial) -> int:
        """The storage's id of trial ``t`` of the training set's study."""
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_ids[training_set], t.number)

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
                for c in self.exp.candidates_of(ts):
                    for s in self.exp.seeds_of(ts):
                        key = job_key(c, s)
                        if only is not None and key != only:
                            continue
                        mine = trials.get(key, [])
                        self._drop_duplicates(ts, mine)
                        if any(t.state in LIVE for t in mine):
                            continue
                        errors = sum(t.state == TrialState.FAIL and "error" in t.user_attrs for t in mine)
                        if errors > self.exp.max_retries and not retry_failed:
                            continue
                        self._enqueue(sid, c, s, attempt=len(mine) + 1)
                        added += 1
        return added

    def _drop_duplicates(self, training_set: str, mine: list[FrozenTrial]) -> None:
        """Mark FAIL ``duplicate`` (with the number of the trial kept) every waiting trial of one job but the
        live one: a running or complete trial, else the first waiting one."""
        waiting = [t for t in mine if t.state == TrialState.WAITING]
        kept = next((t for t in mine if t.state in (TrialState.RUNNING, TrialState.COMPLETE)), None) or \
            next(iter(waiting), None)
        for t in waiting:
            if t is not kept:
                with contextlib.suppress(UpdateFinishedTrialError):
                    trial_id = self.trial_id(training_set, t)
                    self.storage.set_trial_user_attr(trial_id, "duplicate", kept.number)
                    self.storage.set_trial_state_values(trial_id, TrialState.FAIL)

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
        key, value = claim()
        trial_id = self.trial_id(training_set, t)
        try:
            self.storage.set_trial_user_attr(trial_id, key, value)
            if not self.storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                self.storage.set_trial_user_attr(trial_id, key, None)  # lost the race: not ours
                return None
        except UpdateFinishedTrialError:
            return None
        a = t.user_attrs
        return Job(training_set, a["candidate"], int(a["seed"]), self.study_ids[training_set], trial_id,
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
        beat = Heartbeat(self._beats, [j.trial_id for j in ([jobs] if isinstance(jobs, Job) else jobs)], interval)
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
                if not is_stale(t, grace, self._beats.last(t)):
                    continue
                trial_id = self.trial_id(ts, t)
                try:
                    self.storage.set_trial_user_attr(trial_id, "interrupted",
                                                     f"worker gone: {', '.join(claimers(t)) or 'unknown'}")
                    self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
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
            for c in self.exp.candidates_of(ts):
                for s in self.exp.seeds_of(ts):
                    mine = trials.get(job_key(c, s), [])
                    states = {t.state for t in mine}
                    errors = [t.user_attrs["error"] for t in mine
                              if t.state == TrialState.FAIL and "error" in t.user_attrs]
                    state = ("complete" if TrialState.COMPLETE in states else "running" if TrialState.RUNNING in states
                             else "waiting" if TrialState.WAITING in states else "failed" if errors else "pending")
                    ended = [t for t in mine if t.state == TrialState.FAIL and "duplicate" not in t.user_attrs]
                    requeued = state == "waiting" and bool(ended) and "interrupted" in ended[-1].user_attrs
                    running = [w for t in mine if t.state == TrialState.RUNNING for w in claimers(t)]
                    rows.append({"training_set": ts, "candidate": c, "seed": s, "state": state, "errors": len(errors),
                                 "error": errors[-1].strip().splitlines()[-1] if errors else None,
                                 "requeued": requeued, "worker": running[-1] if running else None})
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
        wanted = {job_key(c, s) for c in self.exp.candidates_of(training_set) for s in self.exp.seeds_of(training_set)}
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
