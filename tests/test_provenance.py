"""nasprune.provenance: the commit a result records is the one its process started from."""

import subprocess
from pathlib import Path

import pytest

from nasprune import provenance as prov

pytestmark = pytest.mark.slow  # every test runs git

ROOT = Path(__file__).resolve().parents[1]


def _head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                          check=True).stdout.strip()


def test_the_commit_is_head_when_nothing_moved():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    record = prov.provenance(1.23, seeds=[0])
    assert record["git_commit"] == _head() and "git_commit_at_write" not in record
    assert record["wall_seconds"] == 1.2 and record["seeds"] == [0]


def test_a_commit_made_during_the_run_is_not_recorded_as_the_run(monkeypatch):
    """A run that outlives a commit records the commit it started from, and where HEAD was at the end."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    monkeypatch.setattr(prov, "_STARTED", ("0" * 40, False))
    record = prov.provenance()
    assert record["git_commit"] == "0" * 40 and record["git_commit_at_write"] == _head()
    monkeypatch.setattr(prov, "_STARTED", ("0" * 40, True))
    assert prov.provenance()["uncommitted_library_changes"] is True  # a library changed at the start stays flagged
