"""Snowflake (snowflake-connector-python 4.x): classify by ``errno`` and ``sqlstate``.

Every Snowflake exception derives from ``snowflake.connector.errors.Error`` and
carries ``errno`` (Snowflake's error number, or the connector's own 25xxxx / 29xxxx
codes) and ``sqlstate``. The HTTP error classes (``TooManyRequests``,
``ServiceUnavailableError``, ...) derive from ``Error`` directly, not from
``DatabaseError``, so they are recognised by class name. The library is never
imported here: a class's module and the names on its MRO are enough.

The table this implements, with the test proving each row, is in
``docs/classification.md``.
"""

from __future__ import annotations

from rocky_runner.classify import transport
from rocky_runner.contract import FailureKind

_MODULE_PREFIX = "snowflake.connector"

# Connector-side error numbers (snowflake.connector.errorcode).
ER_FAILED_TO_CONNECT_TO_DB = 250001
ER_FAILED_TO_REQUEST = 250003
ER_CONNECTION_TIMEOUT = 251011
ER_RETRYABLE_CODE = 251012
#: The connector adds this to the HTTP status (or to its own errno) for HTTP errors.
ER_HTTP_GENERAL_ERROR = 290000

#: Snowflake server error numbers with a fixed meaning.
_BY_ERRNO: dict[int, FailureKind] = {
    2003: FailureKind.NOT_FOUND,  # object does not exist or not authorized
    1003: FailureKind.QUERY_REJECTED,  # SQL compilation error: syntax error
    904: FailureKind.QUERY_REJECTED,  # invalid identifier (missing column)
    # "Object does not exist, or operation cannot be performed" (02000). fakesnow
    # answers a missing column with it; real Snowflake uses it for operations on
    # objects in the wrong state, which a retry does not fix either.
    2043: FailureKind.QUERY_REJECTED,
    100035: FailureKind.QUERY_REJECTED,  # numeric / timestamp value not recognized
    3001: FailureKind.QUERY_REJECTED,  # insufficient privileges to operate on an object
    630: FailureKind.TRANSIENT,  # statement reached its timeout and was cancelled
    604: FailureKind.TRANSIENT,  # statement cancelled
    390100: FailureKind.AUTH_FAILED,  # incorrect username or password
    390144: FailureKind.AUTH_FAILED,  # JWT token invalid (key-pair auth)
    390318: FailureKind.AUTH_FAILED,  # OAuth access token expired
    390114: FailureKind.AUTH_FAILED,  # authentication token expired, renewal refused
    ER_FAILED_TO_REQUEST: FailureKind.CONNECTION_FAILED,  # non-retryable TLS error
    ER_CONNECTION_TIMEOUT: FailureKind.CONNECTION_FAILED,
    ER_RETRYABLE_CODE: FailureKind.TRANSIENT,  # login got a retryable HTTP status
}

#: HTTP error classes: the status the connector saw, by class.
_HTTP_CLASSES: dict[str, FailureKind] = {
    "TooManyRequests": FailureKind.QUOTA_EXCEEDED,
    "InternalServerError": FailureKind.TRANSIENT,
    "ServiceUnavailableError": FailureKind.TRANSIENT,
    "GatewayTimeoutError": FailureKind.TRANSIENT,
    "BadGatewayError": FailureKind.TRANSIENT,
    "RequestTimeoutError": FailureKind.TRANSIENT,
    "OtherHTTPRetryableError": FailureKind.TRANSIENT,
    "ForbiddenError": FailureKind.AUTH_FAILED,
    "NonRetryableTlsError": FailureKind.CONNECTION_FAILED,
}

#: SQLSTATE classes (first two characters) when the errno says nothing more.
_BY_SQLSTATE_CLASS: dict[str, FailureKind] = {
    "28": FailureKind.AUTH_FAILED,  # invalid authorization specification
    "08": FailureKind.CONNECTION_FAILED,  # connection exception
    "57": FailureKind.TRANSIENT,  # operator intervention (cancel, timeout)
    "42": FailureKind.QUERY_REJECTED,  # syntax error or access rule violation
    "22": FailureKind.QUERY_REJECTED,  # data exception
    "23": FailureKind.QUERY_REJECTED,  # integrity constraint violation
    "0A": FailureKind.QUERY_REJECTED,  # feature not supported
}


def _errno(exc: BaseException) -> int:
    value = getattr(exc, "errno", None)
    return value if isinstance(value, int) else -1


def _links(exc: BaseException) -> list[BaseException]:
    """The exceptions below ``exc`` (cause, then context), bounded."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(found) < 16:
        current = current.__cause__ or current.__context__
        if current is not None:
            found.append(current)
    return found


def _is_snowflake_error(names: list[str], exc: BaseException) -> bool:
    return "Error" in names and hasattr(exc, "errno") and hasattr(exc, "sqlstate")


def classify(exc: BaseException) -> FailureKind | None:
    """The failure_kind of a Snowflake connector exception; None for anything else."""
    module = type(exc).__module__ or ""
    if not module.startswith(_MODULE_PREFIX):
        return None
    if module.startswith(_MODULE_PREFIX + ".vendored."):
        return transport.classify(exc)
    names = transport.mro_names(exc)
    if not _is_snowflake_error(names, exc):
        return None
    errno = _errno(exc)
    sqlstate = str(getattr(exc, "sqlstate", "") or "")

    for name in names:
        if name in _HTTP_CLASSES:
            return _HTTP_CLASSES[name]
    if "HttpError" in names and errno > ER_HTTP_GENERAL_ERROR:
        # Plain HttpError: errno = 290000 + HTTP status (401 on login or query).
        return transport.kind_for_http_status(errno - ER_HTTP_GENERAL_ERROR)

    if errno == ER_FAILED_TO_CONNECT_TO_DB:
        # Login gave up. If an attempt on the way got a retryable HTTP status (429,
        # 5xx) the service was reachable but busy; otherwise it never answered.
        below = {_errno(link) for link in _links(exc)}
        if ER_RETRYABLE_CODE in below:
            return FailureKind.TRANSIENT
        return FailureKind.CONNECTION_FAILED
    if errno in _BY_ERRNO:
        return _BY_ERRNO[errno]
    if sqlstate == "42S02":
        return FailureKind.NOT_FOUND
    if 390000 <= errno < 391000:
        # Snowflake's 390xxx numbers are login / session / token errors.
        return FailureKind.AUTH_FAILED
    if sqlstate[:2] in _BY_SQLSTATE_CLASS:
        return _BY_SQLSTATE_CLASS[sqlstate[:2]]
    if "ProgrammingError" in names or "DataError" in names or "IntegrityError" in names:
        return FailureKind.QUERY_REJECTED
    return None
