"""BigQuery (google-cloud-bigquery 3.x): classify ``google.api_core`` errors by reason.

Every API error is a ``google.api_core.exceptions.GoogleAPICallError`` whose
``.code`` is the HTTP status and whose ``.errors[0]["reason"]`` is BigQuery's error
reason (``.reason`` is not filled in by this client). The reason decides first:
a 403 is ``rateLimitExceeded`` / ``quotaExceeded`` (quota) or ``accessDenied``
(auth). A job that ends with an ``errorResult`` is raised the same way, with the
result's reason. When the client's retries run out it raises ``RetryError``; the
error it gave up on is its ``.cause`` (followed by the chain walker through
``builtin.extra_link``), and with no cause the deadline itself ran out: transient.

google-auth (token refresh) and requests (transport) errors are classified in
:mod:`.transport`. The library is never imported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rocky_runner.classify import transport
from rocky_runner.contract import FailureKind

_API_MODULES = ("google.api_core.", "google.cloud.")

#: BigQuery error reasons (cloud.google.com/bigquery/docs/error-messages).
_BY_REASON: dict[str, FailureKind] = {
    "invalidQuery": FailureKind.QUERY_REJECTED,
    "invalid": FailureKind.QUERY_REJECTED,
    "duplicate": FailureKind.QUERY_REJECTED,
    "responseTooLarge": FailureKind.QUERY_REJECTED,
    "resourcesExceeded": FailureKind.QUERY_REJECTED,
    "accessDenied": FailureKind.AUTH_FAILED,
    "authError": FailureKind.AUTH_FAILED,
    "rateLimitExceeded": FailureKind.QUOTA_EXCEEDED,
    "quotaExceeded": FailureKind.QUOTA_EXCEEDED,
    "billingNotEnabled": FailureKind.QUOTA_EXCEEDED,
    "billingTierLimitExceeded": FailureKind.QUOTA_EXCEEDED,
    "notFound": FailureKind.NOT_FOUND,
    "backendError": FailureKind.TRANSIENT,
    "internalError": FailureKind.TRANSIENT,
    "jobRateLimitExceeded": FailureKind.TRANSIENT,
    "jobBackendError": FailureKind.TRANSIENT,
    "jobInternalError": FailureKind.TRANSIENT,
    "timeout": FailureKind.TRANSIENT,
    "stopped": FailureKind.TRANSIENT,
    "badGateway": FailureKind.TRANSIENT,
}


def error_reason(exc: BaseException) -> str | None:
    """``errors[0]["reason"]`` of a GoogleAPICallError, if it has one."""
    errors = getattr(exc, "errors", None)
    if isinstance(errors, Sequence) and errors:
        first = errors[0]
        if isinstance(first, Mapping):
            reason = first.get("reason")
            if isinstance(reason, str):
                return reason
    return None


def classify(exc: BaseException) -> FailureKind | None:
    """The failure_kind of a google-cloud-bigquery / google-auth / requests exception."""
    module = type(exc).__module__ or ""
    if module.startswith(("google.auth.", "requests.")):
        return transport.classify(exc)
    if not module.startswith(_API_MODULES):
        return None
    names = transport.mro_names(exc)
    if "RetryError" in names:
        # The cause (if any) is what the retries gave up on: let the walker reach it.
        return None if getattr(exc, "cause", None) is not None else FailureKind.TRANSIENT
    if "GoogleAPICallError" not in names:
        return None
    reason = error_reason(exc)
    if reason is not None and reason in _BY_REASON:
        return _BY_REASON[reason]
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return transport.kind_for_http_status(code)
    return None
