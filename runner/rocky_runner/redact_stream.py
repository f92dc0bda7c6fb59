"""Redaction of what client libraries print, not only what the runner writes itself.

The runner redacts its own log lines and its result, but a connector that logs through
:mod:`logging` with no handler configured (Python's last-resort handler prints warnings
and errors to ``sys.stderr``), a :mod:`warnings` message or a thread's uncaught
traceback would reach the pod log, and from there a ``FallbackToLogsOnError``
termination message, unredacted. :func:`redacted_std_streams` puts a line-buffered
redacting stream in front of ``sys.stderr`` (and ``sys.stdout``) for the duration of
a run, so every Python-level write goes through the same redactor.

Lines are redacted whole: a secret is never split between two redactions, whatever
sizes the writer used. ``flush()`` therefore holds back an unfinished line until its
newline arrives, the stream is drained at the end of the run, or the pending text
grows past :data:`MAX_PENDING` (a line that long is redacted and written as it is).
Writes to the file descriptor itself (C extensions) are not covered.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TextIO

#: Characters of an unfinished line held back before it is written anyway.
MAX_PENDING = 64 * 1024


class RedactingStream(io.TextIOBase):
    """A text stream that writes whole lines, each redacted, to ``target``."""

    def __init__(self, target: TextIO, redact: Callable[[str], str]) -> None:
        super().__init__()
        self._target = target
        self._redact = redact
        self._pending = ""
        self._lock = threading.Lock()

    @property
    def target(self) -> TextIO:
        return self._target

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._target, "errors", None)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._target.fileno()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._pending += text
            cut = self._pending.rfind("\n") + 1
            if cut == 0 and len(self._pending) > MAX_PENDING:
                cut = len(self._pending)
            if cut:
                ready, self._pending = self._pending[:cut], self._pending[cut:]
                self._emit(ready)
        return len(text)

    def flush(self) -> None:
        """Flush the target; an unfinished line stays pending (see the module doc)."""
        with contextlib.suppress(OSError, ValueError):
            self._target.flush()

    def drain(self) -> None:
        """Write whatever is pending, finished or not, and flush."""
        with self._lock:
            ready, self._pending = self._pending, ""
            if ready:
                self._emit(ready)
        self.flush()

    def _emit(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError, UnicodeError):
            self._target.write(self._redact(text))


@contextlib.contextmanager
def redacted_std_streams(
    redact: Callable[[str], str], *, stdout: bool = True
) -> Iterator[RedactingStream]:
    """``sys.stderr`` (and ``sys.stdout`` unless told not to: a discovery pod's stdout is
    its framed answer) redacted by ``redact`` until the block ends; yields the stderr one.

    ``redact`` is called for every line, so it may look up a redactor that grows during
    the run (credentials are read after the streams are installed)."""
    saved_err, saved_out = sys.stderr, sys.stdout
    err = RedactingStream(saved_err, redact)
    out = RedactingStream(saved_out, redact) if stdout else None
    sys.stderr = err
    if out is not None:
        sys.stdout = out
    try:
        yield err
    finally:
        if out is not None:
            out.drain()
        err.drain()
        if sys.stderr is err:
            sys.stderr = saved_err
        if out is not None and sys.stdout is out:
            sys.stdout = saved_out
