"""Errors the runner raises itself, each carrying the failure_kind it stands for.

Connector exceptions are classified by their type (``rocky_runner.classify``); the
runner's own conditions (a lock never obtained, a copy that ran out of time, a
credential that is not there) have no connector type to look at, so they say their
kind themselves. Adapters of every warehouse may raise these too.
"""

from __future__ import annotations

from rocky_runner.contract import FailureKind


class ClassifiedError(Exception):
    """An error whose failure_kind is known where it is raised."""

    failure_kind: FailureKind = FailureKind.UNKNOWN

    def __init__(self, message: str, *, kind: FailureKind | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.failure_kind = kind


class LockTimeoutError(ClassifiedError):
    """The database's write lock was held by someone else for longer than we may wait.

    Transient: the other writer finishes, and a retry then gets the lock.
    """

    failure_kind = FailureKind.TRANSIENT


class CopyTimeoutError(ClassifiedError):
    """The copy did not finish within the task's ``timeout_seconds``.

    Transient: a busy warehouse is the usual cause, and the retry policy bounds the cost.
    """

    failure_kind = FailureKind.TRANSIENT


class MissingCredentialError(ClassifiedError):
    """A credential the adapter needs is not in the runner's environment."""

    failure_kind = FailureKind.AUTH_FAILED


class ReplicationError(ClassifiedError):
    """The source and target cannot be replicated as asked (e.g. no timestamp column).

    Query-rejected: retrying the same statements gives the same answer.
    """

    failure_kind = FailureKind.QUERY_REJECTED


class AdapterConfigError(ClassifiedError):
    """The adapter block of the task is unusable (unknown type, missing field).

    Unknown: it is a bug in whoever built the task, not a warehouse condition.
    """

    failure_kind = FailureKind.UNKNOWN


class NotDurableError(ClassifiedError):
    """The copy committed, but closing the connection (which checkpoints) failed: the
    runner cannot say the rows are durable, so the table is not reported copied.

    Its kind is what the close error says, transient when that says nothing (a retry
    copies the table again: a replace rewrites it, an append finds the watermark).
    """

    failure_kind = FailureKind.TRANSIENT
