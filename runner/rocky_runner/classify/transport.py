"""HTTP transport errors shared by the connectors: urllib3, requests, google-auth.

Databricks raises raw ``urllib3`` errors when its retry budget ends, BigQuery's
client raises ``requests`` errors and google-auth wraps token-endpoint failures;
Snowflake vendors its own copies of requests and urllib3 under
``snowflake.connector.vendored``. They are all classified here, by class name along
the MRO (so the vendored copies match too) and by their typed fields, without
importing any of these libraries.

The only text read is urllib3's own ``ResponseError`` wording ("too many 503 error
responses"): when urllib3 gives up on retried statuses, that sentence is the one
place the status survives, and it is produced by the library, not by the server.
"""

from __future__ import annotations

import re

from rocky_runner.contract import FailureKind

_TRANSPORT_MODULES = ("urllib3.", "requests.", "google.auth.", "snowflake.connector.vendored.")

#: urllib3's ``ResponseError.SPECIFIC_ERROR`` ("too many {status_code} error responses").
_TOO_MANY_STATUS = re.compile(r"too many (\d{3}) error responses")


def mro_names(exc: BaseException) -> list[str]:
    """Class names along the MRO, most derived first."""
    return [cls.__name__ for cls in type(exc).__mro__]


def kind_for_http_status(status: int) -> FailureKind | None:
    """The failure_kind an HTTP status stands for when nothing more specific is known."""
    if status in (401, 403):
        return FailureKind.AUTH_FAILED
    if status == 404:
        return FailureKind.NOT_FOUND
    if status == 429:
        return FailureKind.QUOTA_EXCEEDED
    if status in (408, 409) or 500 <= status <= 599:
        return FailureKind.TRANSIENT
    if status in (400, 405, 411, 413, 414, 415, 422):
        return FailureKind.QUERY_REJECTED
    return None


def status_from_retry_text(text: str) -> int | None:
    """The status in urllib3's "too many N error responses", if the text has it."""
    match = _TOO_MANY_STATUS.search(text)
    return int(match.group(1)) if match else None


def _urllib3(exc: BaseException, names: list[str]) -> FailureKind | None:
    if "MaxRetryError" in names:
        reason = getattr(exc, "reason", None)
        if isinstance(reason, BaseException):
            inner = _urllib3(reason, mro_names(reason))
            if inner is not None:
                return inner
        status = status_from_retry_text(str(reason) if reason is not None else str(exc))
        if status is not None:
            return kind_for_http_status(status)
        return FailureKind.CONNECTION_FAILED
    # NameResolutionError < NewConnectionError < ConnectTimeoutError < TimeoutError.
    if "NewConnectionError" in names or "ConnectTimeoutError" in names:
        return FailureKind.CONNECTION_FAILED
    if "SSLError" in names or "CertificateError" in names or "ProxyError" in names:
        return FailureKind.CONNECTION_FAILED
    if "ReadTimeoutError" in names or "TimeoutError" in names:
        return FailureKind.TRANSIENT
    if "ProtocolError" in names or "IncompleteRead" in names:
        # The connection broke mid-request (reset, remote closed): try again.
        return FailureKind.TRANSIENT
    if "ResponseError" in names:
        status = status_from_retry_text(str(exc))
        return kind_for_http_status(status) if status is not None else FailureKind.TRANSIENT
    return None


def _requests(exc: BaseException, names: list[str]) -> FailureKind | None:
    # ConnectTimeout is both a ConnectionError and a Timeout: it never reached the server.
    if "ConnectTimeout" in names or "SSLError" in names or "ProxyError" in names:
        return FailureKind.CONNECTION_FAILED
    if "ReadTimeout" in names or "Timeout" in names:
        return FailureKind.TRANSIENT
    if "ChunkedEncodingError" in names or "ContentDecodingError" in names:
        return FailureKind.TRANSIENT
    if "ConnectionError" in names:
        # requests wraps the urllib3 error as args[0]: a connection reset after the
        # request went out is transient, anything that never connected is not.
        inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        if inner is not None:
            kind = _urllib3(inner, mro_names(inner))
            if kind is not None:
                return kind
        return FailureKind.CONNECTION_FAILED
    if "HTTPError" in names:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        return kind_for_http_status(status) if isinstance(status, int) else None
    return None


def _google_auth(exc: BaseException, names: list[str]) -> FailureKind | None:
    if "RefreshError" in names:
        # google-auth marks token-endpoint 5xx / 429 / connection trouble as retryable;
        # a refused grant (bad key, disabled account, 400/401) is not.
        return (
            FailureKind.TRANSIENT if getattr(exc, "retryable", False) else FailureKind.AUTH_FAILED
        )
    if "DefaultCredentialsError" in names or "MalformedError" in names:
        return FailureKind.AUTH_FAILED
    if "TransportError" in names:
        return FailureKind.CONNECTION_FAILED
    return None


def classify(exc: BaseException) -> FailureKind | None:
    """Classify a urllib3 / requests / google-auth exception; None for anything else."""
    module = type(exc).__module__ or ""
    if not module.startswith(_TRANSPORT_MODULES):
        return None
    names = mro_names(exc)
    if module.startswith("google.auth."):
        return _google_auth(exc, names)
    if ".requests." in f".{module}":
        return _requests(exc, names)
    return _urllib3(exc, names)
