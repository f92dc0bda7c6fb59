"""Databricks (databricks-sql-connector 4.x, Thrift): classify ``databricks.sql.exc`` errors.

What the connector gives us, by case:

- A statement that ends in error raises ``ServerOperationError`` whose message is
  the warehouse's display message, ``[ERROR_CLASS] text SQLSTATE: xxxxx``. The Thrift
  status fields (sqlState, errorCode) do not reach the exception, so the error
  class and SQLSTATE are parsed from that message. This is the warehouse's own
  structured format, not free text, and only a ``ServerOperationError`` is read so.
- An HTTP failure raises ``RequestError`` with ``context["http-code"]``.
- When the retry budget ends on 429 / 503 the status is lost:
  ``RequestError`` wraps ``MaxRetryDurationError``. Both are worth retrying, so it
  is ``transient``.
- Connection failures escape as raw ``urllib3`` errors (``MaxRetryError`` with the
  cause in ``.reason``): see :mod:`.transport`.
- A ``TStatus`` of ``ERROR_STATUS`` raises a plain ``DatabaseError``: the warehouse
  refused the request itself, ``query-rejected``.

The library is never imported here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from rocky_runner.classify import transport
from rocky_runner.contract import FailureKind

_MODULE_PREFIX = "databricks.sql"

_ERROR_CLASS = re.compile(r"^\s*\[([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)*)\]")
_SQLSTATE = re.compile(r"SQLSTATE:\s*([0-9A-Z]{5})\b")

#: Databricks error classes (the part before the first '.') with a fixed meaning.
_BY_ERROR_CLASS: dict[str, FailureKind] = {
    "TABLE_OR_VIEW_NOT_FOUND": FailureKind.NOT_FOUND,
    "SCHEMA_NOT_FOUND": FailureKind.NOT_FOUND,
    "CATALOG_NOT_FOUND": FailureKind.NOT_FOUND,
    "NO_SUCH_CATALOG_EXCEPTION": FailureKind.NOT_FOUND,
    "PATH_NOT_FOUND": FailureKind.NOT_FOUND,
    "PARSE_SYNTAX_ERROR": FailureKind.QUERY_REJECTED,
    "UNRESOLVED_COLUMN": FailureKind.QUERY_REJECTED,
    "UNRESOLVED_ROUTINE": FailureKind.QUERY_REJECTED,
    "CAST_INVALID_INPUT": FailureKind.QUERY_REJECTED,
    "DATATYPE_MISMATCH": FailureKind.QUERY_REJECTED,
    "INSUFFICIENT_PERMISSIONS": FailureKind.QUERY_REJECTED,
    "PERMISSION_DENIED": FailureKind.QUERY_REJECTED,
    "DELTA_FAILED_TO_MERGE_FIELDS": FailureKind.QUERY_REJECTED,
    "OPERATION_CANCELED": FailureKind.TRANSIENT,
    "QUERY_EXECUTION_TIMEOUT_EXCEEDED": FailureKind.TRANSIENT,
    "TEMPORARILY_UNAVAILABLE": FailureKind.TRANSIENT,
    "DELTA_CONCURRENT_APPEND": FailureKind.TRANSIENT,
    "DELTA_CONCURRENT_WRITE": FailureKind.TRANSIENT,
}

#: SQLSTATEs and SQLSTATE classes when the error class says nothing more.
_BY_SQLSTATE: dict[str, FailureKind] = {
    "42P01": FailureKind.NOT_FOUND,  # undefined table
    "42704": FailureKind.NOT_FOUND,  # undefined object (schema, catalog)
    "42S02": FailureKind.NOT_FOUND,
    "3F000": FailureKind.NOT_FOUND,  # invalid schema name
}
_BY_SQLSTATE_CLASS: dict[str, FailureKind] = {
    "42": FailureKind.QUERY_REJECTED,
    "22": FailureKind.QUERY_REJECTED,
    "23": FailureKind.QUERY_REJECTED,
    "0A": FailureKind.QUERY_REJECTED,
    "57": FailureKind.TRANSIENT,  # operator intervention (cancel, timeout)
    "40": FailureKind.TRANSIENT,  # transaction rollback (concurrent write)
    "08": FailureKind.CONNECTION_FAILED,
    "28": FailureKind.AUTH_FAILED,
    "53": FailureKind.QUOTA_EXCEEDED,  # insufficient resources
}


def parse_server_message(message: str) -> tuple[str | None, str | None]:
    """``[ERROR_CLASS] ... SQLSTATE: xxxxx`` -> (error class, SQLSTATE), each None if absent."""
    error_class = _ERROR_CLASS.match(message)
    sqlstate = _SQLSTATE.search(message)
    return (
        error_class.group(1) if error_class else None,
        sqlstate.group(1) if sqlstate else None,
    )


def kind_for_server_error(error_class: str | None, sqlstate: str | None) -> FailureKind | None:
    """The failure_kind of a statement error from its error class and SQLSTATE."""
    if error_class is not None:
        head = error_class.split(".", 1)[0]
        if head in _BY_ERROR_CLASS:
            return _BY_ERROR_CLASS[head]
    if sqlstate is not None:
        if sqlstate in _BY_SQLSTATE:
            return _BY_SQLSTATE[sqlstate]
        if sqlstate[:2] in _BY_SQLSTATE_CLASS:
            return _BY_SQLSTATE_CLASS[sqlstate[:2]]
    return None


def _message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) else str(exc)


def _below_retry_budget(exc: BaseException) -> FailureKind | None:
    """What the last attempt before a spent retry budget failed with, if it was transport.

    ``MaxRetryDurationError`` is raised while urllib3 handles the attempt's error, so
    that error is its ``__context__`` (a refused connection, a TLS failure, a read
    timeout). After a retried HTTP status there is none.
    """
    current: BaseException | None = exc
    for _ in range(8):
        current = current.__cause__ or current.__context__ if current is not None else None
        if current is None:
            return None
        kind = transport.classify(current)
        if kind is not None:
            return kind
    return None


def _request_error(exc: BaseException, names: list[str]) -> FailureKind | None:
    budget_errors = [exc] if "MaxRetryDurationError" in names else []
    budget_errors += [
        a
        for a in exc.args
        if isinstance(a, BaseException) and "MaxRetryDurationError" in transport.mro_names(a)
    ]
    if budget_errors:
        # Retried until the budget ended. A transport error underneath says what
        # failed; otherwise it was a retried 429 / 503 whose status is lost.
        for err in budget_errors:
            kind = _below_retry_budget(err)
            if kind is not None:
                return kind
        return FailureKind.TRANSIENT
    context = getattr(exc, "context", None)
    status = context.get("http-code") if isinstance(context, Mapping) else None
    if isinstance(status, int) and status != 200:
        return transport.kind_for_http_status(status)
    if "NonRecoverableNetworkError" in names:  # HTTP 501
        return FailureKind.UNKNOWN
    # No status: the original exception (in args) tells; the chain walker goes there.
    return None


def classify(exc: BaseException) -> FailureKind | None:
    """The failure_kind of a databricks-sql-connector (or raw urllib3) exception."""
    module = type(exc).__module__ or ""
    if module.startswith(("urllib3.", "requests.")):
        return transport.classify(exc)
    if not module.startswith(_MODULE_PREFIX):
        return None
    names = transport.mro_names(exc)
    if "ServerOperationError" in names:
        return kind_for_server_error(*parse_server_message(_message(exc)))
    if "SessionAlreadyClosedError" in names or "CursorAlreadyClosedError" in names:
        return None
    if "RequestError" in names:
        return _request_error(exc, names)
    if type(exc).__name__ == "DatabaseError":
        # TStatus ERROR_STATUS: the warehouse refused the request as sent.
        return FailureKind.QUERY_REJECTED
    return None
