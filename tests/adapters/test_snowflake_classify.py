"""Snowflake failure classification, one case per row of docs/classification.md.

Every error is produced by the real snowflake-connector-python code: SQL errors by
fakesnow's server (real SQL run on DuckDB behind Snowflake's REST protocol), and
what fakesnow cannot say (login refusals, HTTP statuses, Snowflake error numbers for
privileges, cancels and expired sessions) by an HTTP stub answering the same
endpoints with Snowflake's own reply format. The exception the connector raised is
then classified by the runner's chain walker.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

from fakes.http import Reply, closed_port, serve
from fakes.snowflake import fakesnow_server, gs_error, snowflake_stub
from rocky_runner.adapters import snowflake as sf
from rocky_runner.adapters.base import Credentials
from rocky_runner.classify import classify_exception
from rocky_runner.contract import ENV_SNOWFLAKE_PASSWORD, FailureKind

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

CREDS = Credentials({ENV_SNOWFLAKE_PASSWORD: "not-a-real-password"})


def _no_sleep() -> Iterator[int]:
    while True:
        yield 0


@pytest.fixture(autouse=True)
def short_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries end after 1 s (the connector's smallest network_timeout), never sleeping."""
    monkeypatch.setattr(
        sf,
        "LIMITS",
        dataclasses.replace(
            sf.LIMITS, login_timeout_seconds=2, network_timeout_seconds=1, socket_timeout_seconds=2
        ),
    )


def _settings(port: int, protocol: str = "http", **extra: Any) -> dict[str, Any]:
    return {
        "account": "rocky",
        "user": "rocky",
        "host": "127.0.0.1",
        "port": port,
        "protocol": protocol,
        "passwordSecretRef": {"name": "snowflake", "key": "password"},
        **extra,
    }


def _open(port: int, protocol: str = "http") -> sf.SnowflakeAdapter:
    return sf.open_adapter(
        _settings(port, protocol), CREDS, timeout_seconds=30, backoff_policy=_no_sleep
    )


def _raised_by_login(port: int, protocol: str = "http") -> BaseException:
    with pytest.raises(Exception) as info:  # noqa: PT011 - any connector error; classified below
        _open(port, protocol).close()
    return info.value


def _raised_by_query(port: int, statement: str = "SELECT 1") -> BaseException:
    adapter = _open(port)
    try:
        with pytest.raises(Exception) as info:  # noqa: PT011
            adapter._rows(statement)
    finally:
        adapter.close()
    return info.value


@pytest.fixture(scope="module")
def fakesnow_port() -> Iterator[int]:
    with fakesnow_server() as kwargs:
        import snowflake.connector

        conn = snowflake.connector.connect(**kwargs)
        cur = conn.cursor()
        cur.execute("CREATE DATABASE CLS")
        cur.execute("CREATE SCHEMA CLS.S")
        cur.execute("CREATE TABLE CLS.S.T (ID INT, NAME VARCHAR)")
        conn.close()
        yield int(kwargs["port"])


# --- SQL errors, from fakesnow's server --------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "errno", "kind"),
    [
        pytest.param("SELECT * FROM CLS.S.NOPE", 2003, FailureKind.NOT_FOUND, id="missing-table"),
        pytest.param("SELECT * FROM CLS.NOPE.T", 2003, FailureKind.NOT_FOUND, id="missing-schema"),
        pytest.param("SELECT * FROM NOPE.S.T", 2003, FailureKind.NOT_FOUND, id="missing-database"),
        pytest.param("SELEC 1", 1003, FailureKind.QUERY_REJECTED, id="syntax-error"),
        pytest.param(
            "SELECT NOPE FROM CLS.S.T", 2043, FailureKind.QUERY_REJECTED, id="missing-column"
        ),
        pytest.param("SELECT 'x'::INT", 100035, FailureKind.QUERY_REJECTED, id="bad-cast"),
    ],
)
def test_sql_error_from_fakesnow(
    fakesnow_port: int, statement: str, errno: int, kind: FailureKind
) -> None:
    exc = _raised_by_query(fakesnow_port, statement)
    assert type(exc).__name__ == "ProgrammingError"
    assert getattr(exc, "errno", None) == errno
    assert classify_exception(exc) is kind


# --- Snowflake error numbers fakesnow does not produce, from the stub -------------------


@pytest.mark.parametrize(
    ("code", "sqlstate", "kind"),
    [
        pytest.param("000904", "42000", FailureKind.QUERY_REJECTED, id="invalid-identifier-904"),
        pytest.param("003001", "42501", FailureKind.QUERY_REJECTED, id="insufficient-privileges"),
        pytest.param("000630", "57014", FailureKind.TRANSIENT, id="statement-timeout-630"),
        pytest.param("000604", "57014", FailureKind.TRANSIENT, id="statement-cancelled-604"),
    ],
)
def test_query_error_number(code: str, sqlstate: str, kind: FailureKind) -> None:
    with snowflake_stub(query=gs_error(code, "from the stub", sqlstate)) as stub:
        exc = _raised_by_query(stub.port)
    assert getattr(exc, "errno", None) == int(code)
    assert getattr(exc, "sqlstate", None) == sqlstate
    assert classify_exception(exc) is kind


@pytest.mark.parametrize(
    ("code", "sqlstate", "message"),
    [
        pytest.param(
            "390100", "28000", "Incorrect username or password was specified.", id="bad-password"
        ),
        pytest.param("390144", "28000", "JWT token is invalid.", id="bad-jwt"),
        pytest.param("390318", "08001", "OAuth access token expired.", id="oauth-expired"),
    ],
)
def test_login_refused(code: str, sqlstate: str, message: str) -> None:
    with snowflake_stub(login=gs_error(code, message)) as stub:
        exc = _raised_by_login(stub.port)
    assert type(exc).__name__ == "DatabaseError"
    assert (getattr(exc, "errno", None), getattr(exc, "sqlstate", None)) == (int(code), sqlstate)
    assert classify_exception(exc) is FailureKind.AUTH_FAILED


def test_session_expired_and_renewal_refused() -> None:
    expired = gs_error("390112", "Your session has expired. Please login again.")
    with snowflake_stub(query=expired) as stub:  # the stub refuses renewal with 390114
        exc = _raised_by_query(stub.port)
    assert getattr(exc, "errno", None) == 390114
    assert classify_exception(exc) is FailureKind.AUTH_FAILED


# --- HTTP statuses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "class_name", "kind"),
    [
        pytest.param(401, "HttpError", FailureKind.AUTH_FAILED, id="login-401"),
        pytest.param(403, "ForbiddenError", FailureKind.AUTH_FAILED, id="login-403"),
        pytest.param(429, "OperationalError", FailureKind.TRANSIENT, id="login-429"),
        pytest.param(503, "OperationalError", FailureKind.TRANSIENT, id="login-503"),
    ],
)
def test_login_http_status(status: int, class_name: str, kind: FailureKind) -> None:
    with snowflake_stub(login=Reply(status)) as stub:
        exc = _raised_by_login(stub.port)
    assert type(exc).__name__ == class_name
    assert classify_exception(exc) is kind


@pytest.mark.parametrize(
    ("status", "class_name", "kind"),
    [
        pytest.param(401, "HttpError", FailureKind.AUTH_FAILED, id="query-401"),
        pytest.param(403, "ForbiddenError", FailureKind.AUTH_FAILED, id="query-403"),
        pytest.param(429, "TooManyRequests", FailureKind.QUOTA_EXCEEDED, id="query-429"),
        pytest.param(500, "InternalServerError", FailureKind.TRANSIENT, id="query-500"),
        pytest.param(503, "ServiceUnavailableError", FailureKind.TRANSIENT, id="query-503"),
    ],
)
def test_query_http_status(status: int, class_name: str, kind: FailureKind) -> None:
    with snowflake_stub(query=Reply(status)) as stub:
        exc = _raised_by_query(stub.port)
    assert type(exc).__name__ == class_name
    assert classify_exception(exc) is kind


# --- transport --------------------------------------------------------------------------


def test_connection_refused() -> None:
    exc = _raised_by_login(closed_port())
    assert (type(exc).__name__, getattr(exc, "errno", None)) == ("OperationalError", 250001)
    assert classify_exception(exc) is FailureKind.CONNECTION_FAILED


def test_tls_certificate_not_trusted() -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with serve(lambda _request: Reply(200), tls=context) as server:
        exc = _raised_by_login(server.port, protocol="https")
    assert (type(exc).__name__, getattr(exc, "errno", None)) == ("NonRetryableTlsError", 250003)
    assert classify_exception(exc) is FailureKind.CONNECTION_FAILED


def test_tls_against_plain_http() -> None:
    with snowflake_stub() as stub:
        exc = _raised_by_login(stub.port, protocol="https")
    assert type(exc).__name__ == "NonRetryableTlsError"
    assert classify_exception(exc) is FailureKind.CONNECTION_FAILED


# --- what stays unknown -----------------------------------------------------------------


def test_stringified_error_is_unknown(fakesnow_port: int) -> None:
    exc = _raised_by_query(fakesnow_port, "SELECT * FROM CLS.S.NOPE")
    assert classify_exception(exc) is FailureKind.NOT_FOUND
    assert classify_exception(RuntimeError(str(exc))) is FailureKind.UNKNOWN


def test_classifier_ignores_other_libraries() -> None:
    from rocky_runner.classify import snowflake_errors

    assert snowflake_errors.classify(ValueError("002003 (42S02): does not exist")) is None
