"""Issue 15 goal 1: the watchdog waits for the deadline or a stop signal in one
``sigtimedwait`` call (no 200 ms polling) and leaving it wakes its thread at once."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest

from rocky_runner import watchdog as watchdog_module
from rocky_runner.watchdog import Watchdog


def _counting_waits(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    timeouts: list[float | None] = []
    real = signal.sigtimedwait

    def counted(sigset: Any, timeout: float) -> Any:
        if timeout > 0:
            timeouts.append(timeout)
        return real(sigset, timeout)

    monkeypatch.setattr(watchdog_module.signal, "sigtimedwait", counted)
    return timeouts


def test_one_wait_until_the_deadline_and_exit_wakes_the_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits = _counting_waits(monkeypatch)
    copy_done = threading.Event()
    dog = Watchdog(3600)
    with dog:
        # The "copy": long enough for a polling watchdog to wake several times.
        copy_done.wait(1.0)
    assert not dog._thread.is_alive()  # woken and joined by __exit__
    assert dog.reason is None
    assert len(waits) == 1, waits  # one wait, not one every 0.2 s
    assert waits[0] > 3000


def _in_child(body: Callable[[], None]) -> None:
    """Run ``body`` in a forked child: it signals its own process, and in the pytest process
    another thread (which has not blocked the signal) could take it and end the session."""
    pid = os.fork()
    if pid == 0:  # the child: one thread, the signals land here
        code = 1
        try:
            body()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_stop_signal_is_still_taken_during_the_wait() -> None:
    _in_child(_stop_signal_is_still_taken_during_the_wait)


def _stop_signal_is_still_taken_during_the_wait() -> None:
    cancelled = threading.Event()
    dog = Watchdog(3600, grace_seconds=30)
    with dog:
        dog.set_cancel(cancelled.set)
        os.kill(os.getpid(), signal.SIGTERM)
        assert cancelled.wait(30)
    assert dog.reason == "SIGTERM"


def test_timeout_still_fires_without_a_signal() -> None:
    cancelled = threading.Event()
    dog = Watchdog(0.3, grace_seconds=30)
    with dog:
        dog.set_cancel(cancelled.set)
        assert cancelled.wait(30)
    assert dog.reason == "timeout"


def test_an_outside_wake_signal_does_not_end_the_watch() -> None:
    _in_child(_an_outside_wake_signal_does_not_end_the_watch)


def _an_outside_wake_signal_does_not_end_the_watch() -> None:
    cancelled = threading.Event()
    dog = Watchdog(3600, grace_seconds=30)
    with dog:
        dog.set_cancel(cancelled.set)
        os.kill(os.getpid(), watchdog_module.WAKE_SIGNAL)  # not from __exit__: ignored
        os.kill(os.getpid(), signal.SIGTERM)
        assert cancelled.wait(30)
    assert dog.reason == "SIGTERM"
