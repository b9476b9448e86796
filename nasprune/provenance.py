"""Provenance of a generated result: which code, when, on what machine, with which seeds, for how long."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path

import torch

from nasprune import __version__


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _library_changed() -> bool:
    return bool(_git("status", "--porcelain", "--", "../nasprune", "../search_spaces"))


#: The commit (and whether the library differed from it) when this process first imported this module: the code
#: a long run loaded. A commit made while the run goes on does not change what it runs, so it must not be
#: recorded as the run's.
_STARTED = (_git("rev-parse", "HEAD") or None, _library_changed())


def provenance(wall_seconds: float | None = None, **extra) -> dict:
    """A JSON-able record for a results folder; ``extra`` adds seeds, configs or timings.

    ``git_commit`` is the commit when the process started (see :data:`_STARTED`); if HEAD has moved since,
    ``git_commit_at_write`` says where. ``uncommitted_library_changes`` is true when ``nasprune``/
    ``search_spaces`` differed from the commit at the start or differ now, so a reader knows the commit alone
    does not reproduce the numbers.
    """
    head = _git("rev-parse", "HEAD") or None
    commit, changed = _STARTED
    return {
        "git_commit": commit,
        **({"git_commit_at_write": head} if head != commit else {}),
        "uncommitted_library_changes": changed or _library_changed(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "nasprune": __version__, "torch": torch.__version__,
        **({"wall_seconds": round(wall_seconds, 1)} if wall_seconds is not None else {}),
        **extra,
    }


def markdown(prov: dict) -> list[str]:
    """A README section holding the record as JSON."""
    return ["## Provenance", "", "```json", json.dumps(prov, indent=2), "```", ""]
