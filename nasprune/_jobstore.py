"""Jobs as Optuna trials: opening the storage, queueing, claiming, recovering and reading them back.

One study per training set, one trial per attempt at a (candidate, seed) job. The trial's ``job`` user
attr names its job. A job's trials go through these states:

- ``WAITING``: queued by :func:`top_up` for each job with no complete, waiting or running trial.
- ``RUNNING``: taken by :func:`claim` through the storage's atomic WAITING -> RUNNING transition (the one
  ``study.ask()`` uses), so two workers never take the same trial. The claimer writes its identity
  (``claim:<host>:<pid>``) into the trial first, so a running trial always names its process.
- ``COMPLETE``: the metrics are in user attrs and the value is val_acc. When two trials of one job were
  queued at once, the worker that claims the later one drops it (``duplicate``), so no job completes
  twice.
- ``FAIL``: training raised (``error``; the job is queued again while it has failed at most
  ``max_retries`` times), its worker died (``interrupted``; queued again, not counted), or it was a
  duplicate.

Every function here works on any Optuna storage: the journal file (processes of one host) or an RDB
(several machines).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState, create_trial

from nasprune._experiment import Experiment, ExperimentError, diff, pretty
from search_spaces.convnet import ACTIVATIONS, NORMS, POOLINGS, ConvNetSpec

JOURNAL_FILE = "optuna.journal"
LIVE = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
# Wide, fixed distributions: every trial of every experiment stays compatible with every other.
DISTRIBUTIONS = {
    "width": IntDistribution(1, 1 << 16), "depth": IntDistribution(1, 1 << 10),
    "act": CategoricalDistribution(ACTIVATIONS), "norm": CategoricalDistribution(NORMS),
    "pool": CategoricalDistribution(POOLINGS), "seed": IntDistribution(0, 2**31 - 1),
}
_log = logging.getLogger("nasprune.runner")


class StorageError(ValueError):
    """A storage URL that cannot be opened or reached."""


# --- storage ----------------------------------------------------------------------------------------------------


def open_storage(directory: str | os.PathLike, url: str | None = None) -> optuna.storages.BaseStorage:
    """The journal file ``DIR/optuna.journal`` when ``url`` is None, else an Optuna RDB storage."""
    if url is None:
        path = Path(directory) / JOURNAL_FILE
        repair_journal(path)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except Exception as e:  # sqlalchemy raises many kinds; all mean "cannot use this URL"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"cannot reach storage {redact(url)}: {first}") from None


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


# --- studies and queueing ------------------------------------------------------------------------------------------


def check_study(storage, name: str, config: dict) -> int | None:
    """The id of study ``name`` (None if there is none yet); refuse one made with another configuration.
    Only reads."""
    try:
        sid = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    stored = storage.get_study_user_attrs(sid).get("config")
    if stored is not None and stored != config:
        raise ExperimentError(
            f"study {name!r} was run with another configuration (- stored, + now):\n"
            f"{diff(pretty(stored), pretty(config))}\nrestore the old config, or start a new experiment "
            "(another name, or another storage)")
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
    for t in storage.get_all_trials(sid, deepcopy=False):
        out.setdefault(t.user_attrs.get("job"), []).append(t)
    return out


def enqueue(storage, sid: int, candidate: str, seed: int, attempt: int) -> None:
    """Add a WAITING trial for the job, with the spec's factors and the seed as its params."""
    params = {**ConvNetSpec.from_id(candidate).as_params(), "seed": seed}
    storage.create_new_trial(sid, template_trial=create_trial(
        state=TrialState.WAITING, params=params, distributions={k: DISTRIBUTIONS[k] for k in params},
        user_attrs={"job": job_key(candidate, seed), "candidate": candidate, "seed": seed, "attempt": attempt}))


def top_up(storage, sid: int, exp: Experiment, *, only: str | None = None, retry_failed: bool = False) -> int:
    """Queue each job (or only job ``only``) that needs a trial; return how many were queued.

    A job needs one when it has no complete, waiting or running trial and has raised at most
    ``max_retries`` times (``retry_failed`` lifts that limit once).
    """
    trials = by_job(storage, sid)
    added = 0
    for c in exp.candidates:
        for s in exp.seeds:
            key = job_key(c, s)
            if only is not None and key != only:
                continue
            mine = trials.get(key, [])
            if any(t.state in LIVE for t in mine):
                continue
            errors = sum(t.state == TrialState.FAIL and "error" in t.user_attrs for t in mine)
            if errors > exp.max_retries and not retry_failed:
                continue
            enqueue(storage, sid, c, s, attempt=len(mine) + 1)
            added += 1
    return added


# --- who is alive --------------------------------------------------------------------------------------------------


def host_id() -> str:
    """Hostname plus boot id: two containers with one hostname on different machines still differ."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def _proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _process_alive(pid: int, start: int | None) -> bool:
    if Path("/proc/self/stat").exists():
        now = _proc_start(pid)
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


def recover(storage, sid: int, exp: Experiment, grace: float) -> int:
    """Mark RUNNING trials of dead workers FAIL (``interrupted``) and queue their jobs again; return how
    many jobs were queued."""
    n = 0
    for t in storage.get_all_trials(sid, deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_stale(t, grace):
            continue
        gone = [k.removeprefix("claim:") for k, v in t.user_attrs.items() if k.startswith("claim:") and v]
        try:
            storage.set_trial_user_attr(t._trial_id, "interrupted", f"worker gone: {', '.join(gone) or 'unknown'}")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # another process recovered it, or it has just finished
        n += top_up(storage, sid, exp, only=t.user_attrs.get("job"))
    return n


# --- claiming ----------------------------------------------------------------------------------------------------


def claim(storage, study_ids: dict[str, int], exp: Experiment) -> tuple[str, int, FrozenTrial] | None:
    """Take the first WAITING trial in ``exp.jobs()`` order (seed by seed, then training set), as
    ``(set, study id, trial)``.

    Drops a trial whose job already has a complete trial or a lower-numbered live one (two processes
    queued it at once), and moves on.
    """
    key = f"claim:{host_id()}:{os.getpid()}"
    snapshots = {ts: storage.get_all_trials(sid, deepcopy=False) for ts, sid in study_ids.items()}
    for seed, ts in ((s, ts) for s in exp.seeds for ts in study_ids):
        sid, snapshot = study_ids[ts], snapshots[ts]
        for t in snapshot:
            if t.state != TrialState.WAITING or t.user_attrs.get("seed") != seed:
                continue
            try:
                storage.set_trial_user_attr(t._trial_id, key, _me())
                if not storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
                    storage.set_trial_user_attr(t._trial_id, key, None)  # lost the race: not ours
                    continue
            except UpdateFinishedTrialError:
                continue
            job = t.user_attrs["job"]
            dup = next((u.number for u in snapshot if u.user_attrs.get("job") == job and u is not t
                        and (u.state == TrialState.COMPLETE or (u.state in LIVE and u.number < t.number))), None)
            if dup is None:
                return ts, sid, t
            storage.set_trial_user_attr(t._trial_id, "duplicate", dup)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            top_up(storage, sid, exp, only=job)  # in case the trial it duplicated has failed since
    return None


def _me() -> dict:
    return {"host": host_id(), "pid": os.getpid(), "proc_start": _proc_start(os.getpid()), "started": time.time()}


# --- reading back ------------------------------------------------------------------------------------------------


def status_rows(storage, study_ids: dict[str, int], exp: Experiment) -> list[dict]:
    """One dict per job of ``exp``: training_set, candidate, seed, state, errors, error (last line)."""
    rows = []
    for ts, sid in study_ids.items():
        trials = by_job(storage, sid)
        for c in exp.candidates:
            for s in exp.seeds:
                mine = trials.get(job_key(c, s), [])
                states = {t.state for t in mine}
                errors = [t.user_attrs["error"] for t in mine if t.state == TrialState.FAIL and "error" in t.user_attrs]
                state = ("complete" if TrialState.COMPLETE in states else "running" if TrialState.RUNNING in states
                         else "waiting" if TrialState.WAITING in states else "failed" if errors else "pending")
                rows.append({"training_set": ts, "candidate": c, "seed": s, "state": state, "errors": len(errors),
                             "error": errors[-1].strip().splitlines()[-1] if errors else None})
    return rows


def completed(storage, sid: int, exp: Experiment) -> list[FrozenTrial]:
    """The first COMPLETE trial of each job of ``exp``, in trial order."""
    wanted = {job_key(c, s) for c in exp.candidates for s in exp.seeds}
    seen: set[str] = set()
    out = []
    for t in sorted(storage.get_all_trials(sid, deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        key = t.user_attrs.get("job")
        if key in wanted and key not in seen:
            seen.add(key)
            out.append(t)
    return out


def jsonable(config: dict) -> dict:
    """``config`` as it reads back from storage (tuples become lists), so comparisons are exact."""
    return json.loads(json.dumps(config))
