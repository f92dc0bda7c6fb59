"""Classification of Python's own exceptions, the runner's ClassifiedErrors, and the
links libraries keep outside ``__cause__`` (``.cause``, ``.reason``, wrapped args)."""

from __future__ import annotations

import errno
import socket

import pytest

from rocky_runner.classify import classify_exception, walk_chain
from rocky_runner.contract import FailureKind
from rocky_runner.errors import (
    ClassifiedError,
    CopyTimeoutError,
    LockTimeoutError,
    MissingCredentialError,
    ReplicationError,
)


def _real_refused() -> OSError:
    """A real ECONNREFUSED from the kernel: connect to a loopback port nobody listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    with socket.socket() as client:
        try:
            client.connect(("127.0.0.1", port))
        except OSError as exc:
            return exc
    raise AssertionError("connect to a closed port succeeded")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TimeoutError("read timed out"), FailureKind.TRANSIENT),
        (ConnectionError("boom"), FailureKind.CONNECTION_FAILED),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "connection-failed"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), FailureKind.CONNECTION_FAILED),
        (OSError(errno.ETIMEDOUT, "Connection timed out"), FailureKind.TRANSIENT),
        (OSError(errno.ENOSPC, "No space left on device"), FailureKind.QUOTA_EXCEEDED),
        (OSError(errno.EINVAL, "Invalid argument"), FailureKind.UNKNOWN),
        (MemoryError(), FailureKind.QUOTA_EXCEEDED),
        (ValueError("bad"), FailureKind.UNKNOWN),
        (LockTimeoutError("lock"), FailureKind.TRANSIENT),
        (CopyTimeoutError("slow"), FailureKind.TRANSIENT),
        (MissingCredentialError("no token"), FailureKind.AUTH_FAILED),
        (ReplicationError("no ts"), FailureKind.QUERY_REJECTED),
        (ClassifiedError("x", kind=FailureKind.NOT_FOUND), FailureKind.NOT_FOUND),
    ],
)
def test_builtin_kinds(exc: BaseException, kind: str) -> None:
    assert classify_exception(exc) == FailureKind(kind)


def test_real_connection_refused_is_connection_failed() -> None:
    exc = _real_refused()
    assert isinstance(exc, ConnectionRefusedError)
    assert classify_exception(exc) is FailureKind.CONNECTION_FAILED


class RetryError(Exception):
    """Shaped like google.api_core's RetryError: the last error is in ``.cause``."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause


class MaxRetryError(Exception):
    """Shaped like urllib3's MaxRetryError: the underlying error is in ``.reason``."""

    def __init__(self, url: str, reason: BaseException | None) -> None:
        super().__init__(f"Max retries exceeded with url: {url}")
        self.reason = reason


def test_extra_links_are_followed() -> None:
    inner = TimeoutError("read timeout")
    outer = RetryError("Deadline exceeded", RetryError("again", inner))
    assert inner in list(walk_chain(outer))
    assert classify_exception(outer) is FailureKind.TRANSIENT


def test_requests_style_wrapping_in_args_is_followed() -> None:
    refused = _real_refused()
    wrapped = RuntimeError(MaxRetryError("http://127.0.0.1:1/", refused))
    assert classify_exception(wrapped) is FailureKind.CONNECTION_FAILED


def test_non_exception_reason_is_not_a_link() -> None:
    assert classify_exception(MaxRetryError("http://x/", None)) is FailureKind.UNKNOWN


def test_outermost_typed_error_wins() -> None:
    outer = LockTimeoutError("gave up")
    outer.__cause__ = ConnectionError("refused")  # what `raise ... from exc` records
    assert classify_exception(outer) is FailureKind.TRANSIENT


def test_cyclic_chain_terminates() -> None:
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert classify_exception(a) is FailureKind.UNKNOWN
