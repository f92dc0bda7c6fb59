"""The copy's deadline and the stop signals, watched from one background thread.

The copy runs in the main thread, usually inside a C call (DuckDB, a connector) where
Python signal handlers cannot run. So SIGTERM and SIGINT are blocked for the process
and a watchdog thread takes them with ``sigtimedwait``, which also serves as the
timeout's clock. On either it asks the adapter to cancel the running statement; the
interrupted call then raises in the main thread, which asks :attr:`Watchdog.reason`
why. If the main thread does not come back within ``grace_seconds``, ``on_stuck``
runs (the runner writes its result and exits hard).

The thread waits in one ``sigtimedwait`` call until the deadline, without polling; leaving
the ``with`` block wakes it at once with :data:`WAKE_SIGNAL` sent to that thread alone, so
the runner exits as soon as its copy is done (issue 15: no 200 ms join).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from types import TracebackType

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
#: Sent by the runner to its own watchdog thread (``pthread_kill``) to end its wait.
WAKE_SIGNAL = signal.SIGUSR1
_WAITED = STOP_SIGNALS | {WAKE_SIGNAL}


class Watchdog:
    def __init__(
        self,
        timeout_seconds: float,
        *,
        grace_seconds: float = 30.0,
        on_stuck: Callable[[str], None] | None = None,
    ) -> None:
        self._timeout = timeout_seconds
        self._grace = grace_seconds
        self._on_stuck = on_stuck
        self._cancel: Callable[[], None] | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        #: Why the copy was stopped: "timeout", "SIGTERM", "SIGINT"; None while it was not.
        self.reason: str | None = None
        self._thread = threading.Thread(target=self._watch, name="rocky-watchdog", daemon=True)
        self._old_mask: set[int | signal.Signals] | None = None

    def set_cancel(self, cancel: Callable[[], None] | None) -> None:
        """What to call to stop the running statement (the open adapter's ``cancel``)."""
        with self._lock:
            self._cancel = cancel
            stopped = self.reason is not None
        if stopped and cancel is not None:
            cancel()

    def __enter__(self) -> Watchdog:
        self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        ident = self._thread.ident
        if ident is not None and self._thread.is_alive():
            with contextlib.suppress(OSError):  # the thread ended on its own meanwhile
                signal.pthread_kill(ident, WAKE_SIGNAL)
        self._thread.join(timeout=5)
        if self._old_mask is not None:
            # Drop a stop signal that arrived too late to matter, then unblock.
            while signal.sigtimedwait(_WAITED, 0) is not None:
                pass
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)

    def _watch(self) -> None:
        deadline = time.monotonic() + self._timeout
        while not self._done.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._stop("timeout")
                return
            info = signal.sigtimedwait(_WAITED, remaining)
            if info is None or info.si_signo == WAKE_SIGNAL:
                continue  # woken by __exit__ (done is set), or the deadline: look again
            self._stop(signal.Signals(info.si_signo).name)
            return

    def _stop(self, reason: str) -> None:
        with self._lock:
            self.reason = reason
            cancel = self._cancel
        if cancel is not None:
            cancel()
        if not self._done.wait(self._grace) and self._on_stuck is not None:
            self._on_stuck(reason)
