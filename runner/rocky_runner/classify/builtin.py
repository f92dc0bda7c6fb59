"""Python's own exceptions and the runner's :class:`ClassifiedError` -> failure_kind.

Consulted after every connector classifier, so a connector's typed error always wins
over the OS error it wraps. Also finds the links that libraries keep outside
``__cause__`` (google's ``RetryError.cause``, urllib3's ``MaxRetryError.reason``) with a
generic attribute walk, so the classifier reaches the typed error underneath.
"""

from __future__ import annotations

import errno
import socket
import ssl

from rocky_runner.contract import FailureKind
from rocky_runner.errors import ClassifiedError

#: Attributes that hold the underlying exception in common client libraries.
_LINK_ATTRIBUTES = ("cause", "reason", "original_exception", "orig", "inner_exception", "error")

#: OS error numbers that mean the warehouse could not be reached at all.
_UNREACHABLE = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.EADDRNOTAVAIL,
    }
)
#: OS error numbers that mean a storage cap was reached.
_STORAGE_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def classify(exc: BaseException) -> FailureKind | None:
    if isinstance(exc, ClassifiedError):
        return exc.failure_kind
    # TimeoutError first: it is an OSError too (and socket.timeout is TimeoutError).
    if isinstance(exc, TimeoutError):
        return FailureKind.TRANSIENT
    if isinstance(exc, ConnectionError | socket.gaierror | socket.herror | ssl.SSLError):
        return FailureKind.CONNECTION_FAILED
    if isinstance(exc, MemoryError):
        # The process hit its memory cap: a configured limit, as DuckDB's memory_limit.
        return FailureKind.QUOTA_EXCEEDED
    if isinstance(exc, OSError):
        if exc.errno in _UNREACHABLE:
            return FailureKind.CONNECTION_FAILED
        if exc.errno == errno.ETIMEDOUT:
            return FailureKind.TRANSIENT
        if exc.errno in _STORAGE_FULL:
            return FailureKind.QUOTA_EXCEEDED
    return None


def extra_link(exc: BaseException) -> BaseException | None:
    """The exception a library stored on ``exc`` outside ``__cause__``, if any.

    Looks at well-known attribute names, then at the arguments (requests wraps
    urllib3's MaxRetryError as ``ConnectionError(MaxRetryError(...))``).
    """
    for name in _LINK_ATTRIBUTES:
        try:
            value = getattr(exc, name, None)
        except Exception:  # a property that fails has no link to give
            continue
        if isinstance(value, BaseException) and value is not exc:
            return value
    for arg in getattr(exc, "args", ()):
        if isinstance(arg, BaseException) and arg is not exc:
            return arg
    return None
