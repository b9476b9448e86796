"""The search: candidates trained on the training sets of an experiment, as jobs kept in Optuna storage, and schedules.

An :class:`Experiment` (``DIR/experiment.json``) names the candidates, the training sets and the seeds. Each
(training set, candidate, seed) is one job: a trial of the training set's study, queued, claimed, trained and
recorded by the :class:`JobStore`. :func:`run_search` runs the unfinished jobs with worker processes (resumable,
several machines on one PostgreSQL URL); :func:`load_jobs`, :func:`load_history` and :func:`job_status` read them
back; :func:`search_status` says how far a search is. :func:`search_on_proxy` runs your own Optuna study on a proxy
(a fixed pool queued with ``candidates``, for a pruner; :func:`replay_objective` answers it from recorded curves).
A :class:`Schedule` of :class:`Rung` s (zero-cost scores, proxies, the whole set at a budget) is run by
:func:`run_schedule`, its rungs answered by a live search or replayed from finished jobs (:class:`ReplaySource`).
"""

from ._experiment import EXPERIMENT_FILE, Experiment, TrainingSet, check_seeds
from ._objective import enqueue_candidates, make_objective, pool_space, search_on_proxy
from ._readback import (HISTORY_COLUMNS, JOB_COLUMNS, STATUS_COLUMNS, copy_training_set, job_status, load_history,
                        load_jobs)
from ._replay import ReplaySource, replay_objective
from ._runner import GRACE_SECONDS, HEARTBEAT_SECONDS, default_threads, prepare, run_search
from ._schedule import (Measurement, Rung, RungRecord, Schedule, ScheduleResult, Source, hyperband, promote,
                        run_brackets, run_schedule, successive_halving)
from ._signals import Terminated, exit_on_interrupt
from ._status import format_duration, progress, search_status, time_left
from ._storage import JOURNAL_FILE, open_storage, redact
from ._store import Job, JobStore

__all__ = ["EXPERIMENT_FILE", "GRACE_SECONDS", "HEARTBEAT_SECONDS", "HISTORY_COLUMNS", "JOB_COLUMNS",
           "JOURNAL_FILE", "STATUS_COLUMNS", "Experiment", "Job", "JobStore", "Measurement", "ReplaySource",
           "Rung", "RungRecord", "Schedule", "ScheduleResult", "Source", "Terminated", "TrainingSet",
           "check_seeds", "copy_training_set", "default_threads", "enqueue_candidates", "exit_on_interrupt",
           "format_duration", "hyperband", "job_status", "load_history", "load_jobs", "make_objective",
           "open_storage", "pool_space", "prepare", "progress", "promote", "redact", "replay_objective",
           "run_brackets", "run_schedule", "run_search", "search_on_proxy", "search_status",
           "successive_halving", "time_left"]
