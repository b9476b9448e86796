"""Who is alive: the process that claimed a running job, checked on this host by its pid, elsewhere by its heartbeat.

A claim (the user attr ``claim:<host>:<pid>`` of a running trial) names its process. On this host the process is
looked up directly (its pid and start time, so a reused pid is told apart). A process on another host is alive
while its heartbeat is younger than the grace period. Heartbeats never grow the storage with wall time:

- on an RDB, the trial's user attr ``heartbeat``, updated in place;
- on the journal file, which only appends, they go to a small file per process beside it
  (``DIR/heartbeats/``), overwritten in place and removed when the process stops beating.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial

from nasprune.artifacts import atomic_write

__all__ = ["HEARTBEAT_DIR", "AttrBeats", "FileBeats", "Heartbeat", "claim", "claimers", "host_id", "is_stale"]

#: The folder of the journal's heartbeat files, in the experiment directory.
HEARTBEAT_DIR = "heartbeats"
_log = logging.getLogger("nasprune.search")


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


def claim() -> tuple[str, dict]:
    """This process's claim: the user attr's key (``claim:<host>:<pid>``) and its value (host, pid, the process's
    start time, the time of the claim)."""
    pid = os.getpid()
    return f"claim:{host_id()}:{pid}", {"host": host_id(), "pid": pid, "proc_start": proc_start(pid),
                                        "started": time.time()}


def claimers(t: FrozenTrial) -> dict[str, dict]:
    """The claims of a trial that are set (a claimer that lost the race to another clears its own): ``host:pid``
    -> the claim's value."""
    return {k.removeprefix("claim:"): v for k, v in t.user_attrs.items() if k.startswith("claim:") and v}


def is_stale(t: FrozenTrial, grace: float, last_beat: Callable[[dict], float | None]) -> bool:
    """True when every process that claimed this RUNNING trial is gone: on this host, dead; on another, silent
    (no heartbeat, ``last_beat(claim)``, nor claim) for ``grace`` seconds."""
    found = claimers(t)
    if not found:  # not claimed through nasprune
        return t.datetime_start is None or time.time() - t.datetime_start.timestamp() > grace
    for w in found.values():
        if w.get("host") == host_id():
            if _process_alive(int(w["pid"]), w.get("proc_start")):
                return False
        elif time.time() - max(last_beat(w) or 0.0, float(w.get("started", 0))) <= grace:
            return False
    return True


class AttrBeats:
    """Heartbeats as the running trials' user attr ``heartbeat`` (an RDB updates it in place)."""

    def __init__(self, storage):
        self.storage = storage

    def beat(self, trial_ids: Sequence[int]) -> list[int]:
        """Write the time into each trial; return the ids still running (a finished trial needs no more beats)."""
        alive = []
        for trial_id in trial_ids:
            try:
                self.storage.set_trial_user_attr(trial_id, "heartbeat", time.time())
                alive.append(trial_id)
            except UpdateFinishedTrialError:  # finished elsewhere: nothing left to keep alive
                pass
        return alive

    def last(self, t: FrozenTrial) -> Callable[[dict], float | None]:
        return lambda claim: t.user_attrs.get("heartbeat")

    def stop(self) -> None:
        pass


class FileBeats:
    """Heartbeats as one small file per process in ``folder`` (the journal appends every write, so they stay out
    of it): the time, rewritten in place; removed when the process stops beating."""

    def __init__(self, folder: Path):
        self.folder = folder

    def _file(self, host: str, pid: int) -> Path:
        return self.folder / hashlib.sha1(f"{host}:{pid}".encode()).hexdigest()[:16]

    def beat(self, trial_ids: Sequence[int]) -> list[int]:
        atomic_write(self._file(host_id(), os.getpid()), lambda tmp: tmp.write_text(repr(time.time())))
        return list(trial_ids)

    def last(self, t: FrozenTrial) -> Callable[[dict], float | None]:
        def read(claim: dict) -> float | None:
            try:
                return float(self._file(claim["host"], int(claim["pid"])).read_text())
            except (OSError, ValueError, KeyError):
                return None

        return read

    def stop(self) -> None:
        self._file(host_id(), os.getpid()).unlink(missing_ok=True)


class Heartbeat(threading.Thread):
    """Beats for running trials (one job's, or every member's of a fused group) every ``interval`` seconds until
    stopped, so that processes on other hosts can tell a live job from a dead one."""

    def __init__(self, beats: AttrBeats | FileBeats, trial_ids: Sequence[int], interval: float):
        super().__init__(daemon=True)
        self.beats, self.interval, self.done = beats, interval, threading.Event()
        self.trial_ids = list(trial_ids)

    def run(self) -> None:
        while self.trial_ids and not self.done.wait(self.interval):
            try:
                self.trial_ids = self.beats.beat(self.trial_ids)
            except Exception as e:  # a storage or disk hiccup: the next beat tries again
                _log.warning("heartbeat of trials %s not written (%s); retrying", self.trial_ids, e)

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.beats.stop()
