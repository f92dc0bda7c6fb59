"""BigQuery failure classification, one case per row of docs/classification.md.

Each error is raised by the real google-cloud-bigquery client (with google-auth
refreshing a service-account token) against the fake BigQuery REST API on
127.0.0.1: HTTP errors with BigQuery's error body and reason, query jobs that end
with an ``errorResult``, a closed port, a stalled reply, and a token endpoint that
refuses or fails. Retries are bounded to half a second so the retried rows end in
``RetryError``, as they do in production when the budget runs out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fakes.bigquery import FakeBigQuery, bigquery_server, error_body, service_account_json
from fakes.http import Reply, RunningServer, closed_port
from rocky_runner.adapters import bigquery as bq
from rocky_runner.adapters.base import Credentials
from rocky_runner.classify import classify_exception, walk_chain
from rocky_runner.contract import ENV_BIGQUERY_CREDENTIALS, FailureKind

LIMITS = dataclasses.replace(
    bq.LIMITS,
    request_timeout_seconds=0.5,
    retry_seconds=0.5,
    job_retry_seconds=0.5,
    retry_initial_delay_seconds=0.05,
    retry_max_delay_seconds=0.1,
)


@pytest.fixture
def api() -> Iterator[tuple[RunningServer, FakeBigQuery]]:
    with bigquery_server("rocky-test") as (server, service):
        service.sql('CREATE SCHEMA "rocky-test".d; CREATE TABLE "rocky-test".d.t (id BIGINT)')
        yield server, service


def _raised(
    api: tuple[RunningServer, FakeBigQuery],
    action: Callable[[bq.BigQueryAdapter], Any],
    *,
    endpoint: str | None = None,
    token_uri: str | None = None,
) -> BaseException:
    server, _service = api
    key = service_account_json(token_uri or f"{server.url}/token")
    adapter = bq.open_adapter(
        {"project": "rocky-test", "apiEndpoint": endpoint or server.url},
        Credentials({ENV_BIGQUERY_CREDENTIALS: key}),
        timeout_seconds=30,
        limits=LIMITS,
    )
    try:
        with pytest.raises(Exception) as info:  # noqa: PT011 - the client's error, classified
            action(adapter)
    finally:
        adapter.close()
    return info.value


def _list_tables(adapter: bq.BigQueryAdapter) -> Any:
    return adapter.list_tables(None, "d")


def _names(exc: BaseException) -> list[str]:
    return [type(e).__name__ for e in walk_chain(exc)]


# --- HTTP errors with a reason ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "outer", "kind"),
    [
        pytest.param(
            400, "invalidQuery", "BadRequest", FailureKind.QUERY_REJECTED, id="400-invalidQuery"
        ),
        pytest.param(400, "invalid", "BadRequest", FailureKind.QUERY_REJECTED, id="400-invalid"),
        pytest.param(
            403, "accessDenied", "Forbidden", FailureKind.AUTH_FAILED, id="403-accessDenied"
        ),
        pytest.param(401, "authError", "Unauthorized", FailureKind.AUTH_FAILED, id="401"),
        pytest.param(
            403, "quotaExceeded", "Forbidden", FailureKind.QUOTA_EXCEEDED, id="403-quotaExceeded"
        ),
        pytest.param(
            403,
            "rateLimitExceeded",
            "RetryError",
            FailureKind.QUOTA_EXCEEDED,
            id="403-rateLimitExceeded",
        ),
        pytest.param(429, "rateLimitExceeded", "RetryError", FailureKind.QUOTA_EXCEEDED, id="429"),
        pytest.param(404, "notFound", "NotFound", FailureKind.NOT_FOUND, id="404-notFound"),
        pytest.param(
            500, "backendError", "RetryError", FailureKind.TRANSIENT, id="500-backendError"
        ),
        pytest.param(503, "backendError", "RetryError", FailureKind.TRANSIENT, id="503"),
    ],
)
def test_http_error_with_reason(
    api: tuple[RunningServer, FakeBigQuery], status: int, reason: str, outer: str, kind: FailureKind
) -> None:
    api[1].fail(
        "GET", r"/datasets/d/tables$", error_body(status, reason, f"{reason} from the fake")
    )
    exc = _raised(api, _list_tables)
    assert type(exc).__name__ == outer
    api_error = next(e for e in walk_chain(exc) if hasattr(e, "errors"))
    assert getattr(api_error, "code", None) == status
    assert getattr(api_error, "errors", [{}])[0].get("reason") == reason
    assert classify_exception(exc) is kind


# --- query jobs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        pytest.param("backendError", FailureKind.TRANSIENT, id="job-backendError"),
        pytest.param("jobRateLimitExceeded", FailureKind.TRANSIENT, id="job-jobRateLimitExceeded"),
        pytest.param("timeout", FailureKind.TRANSIENT, id="job-timeout"),
        pytest.param("invalidQuery", FailureKind.QUERY_REJECTED, id="job-invalidQuery"),
        pytest.param("quotaExceeded", FailureKind.QUOTA_EXCEEDED, id="job-quotaExceeded"),
    ],
)
def test_job_error_result(
    api: tuple[RunningServer, FakeBigQuery], reason: str, kind: FailureKind
) -> None:
    api[1].fail_job("FAIL_THIS_JOB", reason)
    exc = _raised(api, lambda a: a._rows("SELECT 'FAIL_THIS_JOB'"))
    assert classify_exception(exc) is kind


def test_syntax_error(api: tuple[RunningServer, FakeBigQuery]) -> None:
    exc = _raised(api, lambda a: a._rows("SELEC 1"))
    assert type(exc).__name__ == "BadRequest"
    assert classify_exception(exc) is FailureKind.QUERY_REJECTED


def test_missing_table_in_a_query(api: tuple[RunningServer, FakeBigQuery]) -> None:
    exc = _raised(api, lambda a: a._rows("SELECT * FROM `rocky-test`.`d`.`nope`"))
    assert type(exc).__name__ == "NotFound"
    assert classify_exception(exc) is FailureKind.NOT_FOUND


# --- transport ----------------------------------------------------------------------------


def test_connection_refused(api: tuple[RunningServer, FakeBigQuery]) -> None:
    exc = _raised(api, _list_tables, endpoint=f"http://127.0.0.1:{closed_port()}")
    assert _names(exc)[:2] == ["RetryError", "ConnectionError"]
    assert classify_exception(exc) is FailureKind.CONNECTION_FAILED


def test_read_timeout(api: tuple[RunningServer, FakeBigQuery]) -> None:
    api[1].fail("GET", r"/datasets/d/tables$", Reply(200, delay=5.0))
    exc = _raised(api, _list_tables)
    assert "ReadTimeout" in _names(exc)
    assert classify_exception(exc) is FailureKind.TRANSIENT


def test_tls_to_a_plain_http_endpoint(api: tuple[RunningServer, FakeBigQuery]) -> None:
    server, _service = api
    exc = _raised(api, _list_tables, endpoint=f"https://127.0.0.1:{server.port}")
    assert "SSLError" in _names(exc)
    assert classify_exception(exc) is FailureKind.CONNECTION_FAILED


# --- the token endpoint -------------------------------------------------------------------


def test_token_refused(api: tuple[RunningServer, FakeBigQuery]) -> None:
    api[1].token_reply = Reply.json(
        {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, status=400
    )
    exc = _raised(api, _list_tables)
    assert type(exc).__name__ == "RefreshError"
    assert getattr(exc, "retryable", None) is False
    assert classify_exception(exc) is FailureKind.AUTH_FAILED


def test_token_endpoint_5xx(api: tuple[RunningServer, FakeBigQuery]) -> None:
    api[1].token_reply = Reply(503, b"unavailable")
    exc = _raised(api, _list_tables)
    assert type(exc).__name__ == "RefreshError"
    assert getattr(exc, "retryable", None) is True
    assert classify_exception(exc) is FailureKind.TRANSIENT


def test_token_endpoint_unreachable(api: tuple[RunningServer, FakeBigQuery]) -> None:
    exc = _raised(api, _list_tables, token_uri=f"http://127.0.0.1:{closed_port()}/token")
    assert "TransportError" in _names(exc)
    assert classify_exception(exc) is FailureKind.CONNECTION_FAILED


# --- what stays unknown -------------------------------------------------------------------


def test_stringified_error_is_unknown(api: tuple[RunningServer, FakeBigQuery]) -> None:
    exc = _raised(api, lambda a: a._rows("SELECT * FROM `rocky-test`.`d`.`nope`"))
    assert classify_exception(RuntimeError(str(exc))) is FailureKind.UNKNOWN


def test_retry_error_without_cause_is_transient() -> None:
    """Built by hand: a retry deadline that ran out before any attempt failed."""
    from google.api_core.exceptions import RetryError

    assert (
        classify_exception(RetryError("Deadline of 1.0s exceeded", None)) is FailureKind.TRANSIENT
    )
