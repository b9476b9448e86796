"""Where an experiment's jobs live: an Optuna storage, opened once per command, and its queue lock.

The default is Optuna's journal file ``DIR/optuna.journal``, for the processes of one host; an RDB URL
(PostgreSQL) serves several machines. Opening a journal replays it, so a command opens its storage once and
passes it on. The queue lock serialises the creation of trials (``nasprune/search/_store.py``): an ``flock`` on
the journal or SQLite file, or a PostgreSQL advisory lock, each released by the system when its holder dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import optuna

from nasprune.errors import StorageError

__all__ = ["JOURNAL_FILE", "open_storage", "queue_lock", "redact", "repair_journal"]

JOURNAL_FILE = "optuna.journal"
_log = logging.getLogger("nasprune.search")


def open_storage(directory: str | os.PathLike, url: str | None = None) -> optuna.storages.BaseStorage:
    """The journal file ``DIR/optuna.journal`` when ``url`` is None, else an Optuna RDB storage."""
    if url is None:
        path = Path(directory) / JOURNAL_FILE
        repair_journal(path)
        return optuna.storages.JournalStorage(_JournalFile(path))
    tries = 0
    while True:
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except Exception as e:  # sqlalchemy raises many kinds; all mean "cannot use this URL", but one
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            tries += 1
            if tries < _SCHEMA_TRIES and _SCHEMA_RACE.search(first):
                time.sleep(0.2 * tries)  # another process created Optuna's tables an instant ago: open them
                continue
            raise StorageError(f"cannot reach storage {redact(url)}: {first}") from None


#: Two processes opening a new database at once both create Optuna's tables; the one that loses the race fails
#: with one of these, and opening it again finds the tables made (tests/search/test_store.py, fresh database).
_SCHEMA_RACE = re.compile(r"DuplicateTable|UniqueViolation|already exists|duplicate key")
_SCHEMA_TRIES = 5


class _JournalFile(optuna.storages.journal.JournalFileBackend):
    """Optuna's journal file, whose unreadable lines are one :class:`StorageError` naming the file and line."""

    def __init__(self, path: Path):
        super().__init__(str(path))
        self.path = path

    def read_logs(self, log_number_from: int):
        try:
            yield from super().read_logs(log_number_from)
        except ValueError as e:  # json.JSONDecodeError, or Optuna's "Invalid log format."
            raise StorageError(
                f"{self.path}: line {_first_bad_line(self.path)} is not a journal entry ({e}); the journal is "
                "corrupted. Restore it from a copy, or move it away to start the search again (finished jobs are "
                "lost)") from None


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


# --- the queue lock ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "ab") as f:  # an advisory lock beside Optuna's own (a symlink); gone when the process is
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _PgLock:
    """A PostgreSQL advisory lock on its own connection (a session lock: the server drops it when the connection
    dies), from an engine of its own, so that nothing reaches into Optuna's storage."""

    def __init__(self, url: str, name: str):
        self.url, self.key = url, int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        self._engine = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        if self._engine is None:
            self._engine = create_engine(self.url, poolclass=NullPool)
        with self._engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})


def queue_lock(directory: Path, url: str | None, name: str) -> Callable[[], ContextManager[None]]:
    """A context-manager factory for experiment ``name``'s queue lock on its storage (``url`` None: the journal
    file in ``directory``)."""
    if url is None:
        return lambda: _file_lock(directory / JOURNAL_FILE)
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return _PgLock(url, f"nasprune:{name}")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return lambda: _file_lock(Path(parsed.database))

    def unlocked():
        _log.warning("no queue lock for %s storage: run one `nasprune search` at a time against %s, or two may "
                     "queue a job twice", parsed.get_backend_name(), redact(url))
        return contextlib.nullcontext()

    return unlocked
