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


def provenance(wall_seconds: float | None = None, **extra) -> dict:
    """A JSON-able record for a results folder; ``extra`` adds seeds, configs or timings.

    ``uncommitted_library_changes`` is true when ``nasprune``/``search_spaces`` differ from the commit,
    so a reader knows the commit alone does not reproduce the numbers.
    """
    return {
        "git_commit": _git("rev-parse", "HEAD") or None,
        "uncommitted_library_changes": bool(_git("status", "--porcelain", "--", "../nasprune", "../search_spaces")),
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
