"""Stopping a search cleanly: SIGTERM or Ctrl-C ends a command with one line and the shell's exit status, and a
worker records its running job as interrupted (queued again) before it ends, never in the middle of a write."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Iterator

__all__ = ["Stop", "Terminated", "exit_on_interrupt"]


class Terminated(KeyboardInterrupt):
    """Raised in :func:`run_search` (and in its workers) when SIGTERM or SIGINT asked it to stop."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def exit_on_interrupt(command: str) -> Iterator[None]:
    """For entry points (``nasprune``, ``scripts/``): Ctrl-C or SIGTERM (:class:`Terminated`) inside ends the
    process with one line saying how to resume, not a traceback, and the exit status 128 + the signal's number
    (130 for SIGINT, 143 for SIGTERM), as a shell reports a process the signal killed. Finished jobs are kept,
    so the same command resumes."""
    try:
        yield
    except KeyboardInterrupt as e:
        print(f"{command}: interrupted; run the same command again to resume", file=sys.stderr)
        raise SystemExit(128 + getattr(e, "signum", signal.SIGINT)) from None


class Stop:
    """What a process that runs jobs does on SIGTERM or SIGINT: inside :meth:`interruptible` (training,
    waiting) raise :class:`Terminated` at once; elsewhere (storage writes) remember it, so that a write is
    never cut in half, and raise at the next :meth:`interruptible` or :meth:`check`. With ``force_on_second``
    (the command a user runs; not its workers, which get the parent's SIGTERM after their own Ctrl-C) a
    second signal raises at once."""

    def __init__(self, force_on_second: bool = True) -> None:
        self.signum: int | None = None
        self.force_on_second = force_on_second
        self._armed = 0

    def handler(self, signum: int, frame) -> None:
        again, self.signum = self.signum is not None, signum
        if self._armed or (again and self.force_on_second):
            raise Terminated(signum)

    def check(self) -> None:
        if self.signum is not None:
            raise Terminated(self.signum)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        self.check()
        self._armed += 1
        try:
            yield
        finally:
            self._armed -= 1

    @contextlib.contextmanager
    def installed(self) -> Iterator["Stop"]:
        """Handle SIGTERM and SIGINT with :meth:`handler` (only the main thread can), then restore."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self.handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)
