"""What every artifact file shares: atomic writes, format headers, checksums, and the refusals of a file
that is corrupted, of another format, built on other data or with other settings.

The artifacts are the scoring run (``nasprune/proxies/_scoring.py``), the proxy set (``nasprune/proxies/
_proxy_set.py``), the training checkpoint (``nasprune/training/_checkpoint.py``) and the experiment
(``nasprune/search/_experiment.py``). Each file names
its format as ``"nasprune.<kind>/<version>"`` and records the fingerprint of the data it was built on
(``nasprune.data.fingerprint``); a mismatch is refused with a message that says what differs and how to fix
it, never silently mixed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nasprune.errors import OutputError


__all__ = ["ABSENT", "atomic_write", "changed", "changed_settings", "check_data", "check_format", "check_writable",
           "checksum", "jsonable", "read_torch", "show_changes", "write_text", "write_torch"]


# --- writing -------------------------------------------------------------------------------------------------


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a sibling temporary file, then rename it to ``path``: a crash leaves the old
    file or none, never half a file. Missing parent folders are made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.replace(path)
    return path


def check_writable(path: str | os.PathLike) -> Path:
    """Refuse, before the work that would write it, an output file that cannot be written: its folder cannot be made
    or written to, or it is a folder. One :class:`~nasprune.errors.OutputError` line names the path and why."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.with_name(f".{path.name}.{os.getpid()}.probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_torch(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (:func:`atomic_write`)."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


# --- reading -------------------------------------------------------------------------------------------------


def read_torch(path: str | os.PathLike, error: type[Exception], what: str, fix: str) -> Any:
    """``torch.load`` of plain tensors and containers (``weights_only``) onto the CPU. A file torch cannot
    read (truncated, foreign) raises one line of ``error``: ``"{path}: not a {what} (...); {fix}"``."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types (and pages of advice) for truncated or foreign files
        raise error(f"{path}: not a {what} (torch cannot read it: {type(e).__name__}); {fix}") from None


def check_format(found: Any, expected: str, path: str | os.PathLike, error: type[Exception], what: str) -> None:
    """Refuse a file whose format header ``found`` is not ``expected`` (``"nasprune.<kind>/<version>"``).

    Another version of the same kind is told apart from a file of another kind, so that a file written by a
    newer nasprune asks for an upgrade rather than looking corrupted.
    """
    if found == expected:
        return
    kind = expected.rsplit("/", 1)[0]
    if isinstance(found, str) and found.startswith(kind + "/"):
        raise error(f"{path}: a {what} in format {found!r}, but this nasprune ({_version()}) reads {expected!r}; "
                    "use the nasprune version that wrote it, or rebuild the file")
    raise error(f"{path} is not a {what}")


def checksum(payload: Any, default: Callable[[Any], Any] | None = None) -> str:
    """sha256 of ``payload`` as canonical JSON (sorted keys, no spaces); ``default`` converts other types."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=default)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- mismatches ----------------------------------------------------------------------------------------------

#: The split settings of ``Dataset.describe()`` that an artifact records and a mismatch names.
SPLIT_SETTINGS = ("name", "seed", "val_size", "train")


def check_data(what: str, fingerprint: str, dataset, error: type[Exception], fix: str,
               recorded: Mapping | None = None) -> None:
    """Refuse ``dataset`` unless its fingerprint is ``fingerprint``, the data the artifact ``what`` was built on.

    ``recorded`` is that data's ``Dataset.describe()`` when the artifact keeps it: the message then names the
    split settings that differ. ``fix`` says what to do (e.g. the command that rebuilds the artifact).
    """
    if dataset.fingerprint == fingerprint:
        return
    now = dataset.describe()
    differ = [f"{k} {recorded[k]} -> {now[k]}" for k in SPLIT_SETTINGS
              if recorded and k in recorded and recorded[k] != now.get(k)]
    detail = (f"differs in {', '.join(differ)} (built -> used)" if differ
              else f"differs (fingerprint {fingerprint[:12]}... built, {dataset.fingerprint[:12]}... used: the data "
                   "files themselves, or a split setting the file does not record)")
    raise error(f"this {what} was built on other data than it is used with: the split {detail}. {fix}")


def changed(stored: Mapping, asked: Mapping) -> dict[str, tuple[Any, Any]]:
    """The settings of ``asked`` whose stored value differs: key -> (stored, asked). Compared as JSON reads
    them back (tuples as lists, int keys as strings), so a value that only round-tripped through a file
    is not a change. Empty when everything asked is as stored."""

    return {k: (stored.get(k), v) for k, v in asked.items() if jsonable(stored.get(k)) != jsonable(v)}


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


#: A setting one side of :func:`changed_settings` does not have.
ABSENT = _Absent()


def changed_settings(stored: Mapping, asked: Mapping) -> dict[str, tuple[Any, Any]]:
    """:func:`changed` over every setting of two nested mappings, named by dotted keys (``train.lr``); a
    setting only one side has is a change too, with :data:`ABSENT` on the other side."""
    out = {}
    both = {**dict.fromkeys(stored, ABSENT), **dict.fromkeys(asked, ABSENT)}
    for key, (old, new) in changed({**both, **stored}, {**both, **asked}).items():
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            out.update({f"{key}.{k}": d for k, d in changed_settings(old, new).items()})
        else:
            out[str(key)] = (old, new)
    return out


def show_changes(diff: Mapping[str, tuple[Any, Any]]) -> str:
    """A :func:`changed` result as text, one ``setting stored -> asked`` per setting: ``lr 0.01 -> 0.02, ...``;
    a whole section only one side has is ``{...}``."""

    def show(value: Any, other: Any) -> str:
        return "{...}" if isinstance(value, Mapping) and other is ABSENT else repr(value)

    return ", ".join(f"{k} {show(old, new)} -> {show(new, old)}" for k, (old, new) in diff.items())


def jsonable(value: Any) -> Any:
    """``value`` as it reads back from a JSON file or Optuna storage (tuples become lists, int keys strings),
    so that comparisons with stored values are exact."""
    return json.loads(json.dumps(value, default=str))


def _version() -> str:
    from nasprune import __version__

    return __version__
