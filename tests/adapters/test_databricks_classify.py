"""Databricks failure classification, one case per row of docs/classification.md.

Each error is raised by the real databricks-sql-connector: HTTP failures by an
HTTPS stub on 127.0.0.1 answering with the status (or stalling, or not listening),
statement errors by the fake SQL warehouse (a TCLIService built from the
connector's own Thrift classes) ending the operation in ERROR_STATE with the
warehouse's ``[ERROR_CLASS] ... SQLSTATE`` message, or with a TStatus ERROR_STATUS.
The retry budget is cut to one attempt / 1 s so each case takes about a second.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from fakes.databricks import (
    CA_FILE,
    FakeWarehouse,
    StatementError,
    databricks_http_stub,
    databricks_warehouse,
)
from fakes.http import Reply, RunningServer, closed_port, serve
from rocky_runner.adapters import databricks as dbx
from rocky_runner.adapters.base import Credentials
from rocky_runner.classify import classify_exception, databricks_errors
from rocky_runner.contract import ENV_DATABRICKS_TOKEN, FailureKind

CREDS = Credentials({ENV_DATABRICKS_TOKEN: "dapi-not-a-real-token"})


@pytest.fixture(autouse=True)
def short_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        dbx,
        "LIMITS",
        dataclasses.replace(
            dbx.LIMITS, socket_timeout_seconds=1.0, retry_attempts=1, retry_duration_seconds=1.0
        ),
    )


def _open(port: int) -> dbx.DatabricksAdapter:
    return dbx.open_adapter(
        {"host": "127.0.0.1", "httpPath": "/sql/1.0/warehouses/fake", "port": port},
        CREDS,
        timeout_seconds=30,
        connect_overrides={"_tls_trusted_ca_file": CA_FILE},
    )


def _raised_by_connect(port: int) -> BaseException:
    with pytest.raises(Exception) as info:  # noqa: PT011 - the connector's error, classified below
        _open(port).close()
    return info.value


def _chain_names(exc: BaseException) -> list[str]:
    from rocky_runner.classify import walk_chain

    return [type(e).__name__ for e in walk_chain(exc)]


# --- HTTP failures ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        pytest.param(400, FailureKind.QUERY_REJECTED, id="http-400"),
        pytest.param(401, FailureKind.AUTH_FAILED, id="http-401"),
        pytest.param(403, FailureKind.AUTH_FAILED, id="http-403"),
        pytest.param(404, FailureKind.NOT_FOUND, id="http-404"),
    ],
)
def test_http_status_with_code(status: int, kind: FailureKind) -> None:
    with databricks_http_stub(Reply(status, b"refused")) as stub:
        exc = _raised_by_connect(stub.port)
    assert type(exc).__name__ == "RequestError"
    assert getattr(exc, "context", {}).get("http-code") == status
    assert classify_exception(exc) is kind


@pytest.mark.parametrize("status", [429, 503], ids=["http-429", "http-503"])
def test_retried_status_until_the_budget_ends(status: int) -> None:
    with databricks_http_stub(Reply(status, b"busy")) as stub:
        exc = _raised_by_connect(stub.port)
    assert type(exc).__name__ == "RequestError"
    assert "MaxRetryDurationError" in _chain_names(exc)
    assert classify_exception(exc) is FailureKind.TRANSIENT


def test_execute_statement_http_500() -> None:
    """OpenSession succeeds, then the warehouse answers ExecuteStatement with 500."""
    service = FakeWarehouse()
    from fakes.databricks import thrift_handler, tls_context

    thrift = thrift_handler(service)
    calls = {"n": 0}

    def handle(request: Any) -> Reply:
        calls["n"] += 1
        return thrift(request) if calls["n"] == 1 else Reply(500, b"boom")

    with serve(handle, tls=tls_context()) as server:
        adapter = _open(server.port)
        try:
            with pytest.raises(Exception) as info:  # noqa: PT011
                adapter._rows("SELECT 1")
        finally:
            adapter.close()
    assert getattr(info.value, "context", {}).get("http-code") == 500
    assert classify_exception(info.value) is FailureKind.TRANSIENT


#: Budgets (attempts, seconds, first delay) for the transport rows: 1 attempt / 1 s
#: ends in the connector's MaxRetryDurationError (the failed attempt is its
#: __context__); 2 attempts / 2 s with a 0.1 s first delay lets urllib3 give up
#: first, and its raw MaxRetryError escapes the connector.
BUDGETS = [
    pytest.param((1, 1.0, 1.0), ["RequestError", "MaxRetryDurationError"], id="duration-budget"),
    pytest.param((2, 2.0, 0.1), ["MaxRetryError"], id="urllib3-budget"),
]


def _with_budget(monkeypatch: pytest.MonkeyPatch, budget: tuple[int, float, float]) -> None:
    attempts, duration, delay_min = budget
    monkeypatch.setattr(
        dbx,
        "LIMITS",
        dataclasses.replace(
            dbx.LIMITS,
            retry_attempts=attempts,
            retry_duration_seconds=duration,
            retry_delay_min_seconds=delay_min,
        ),
    )


@pytest.mark.parametrize(("budget", "outer"), BUDGETS)
def test_connection_refused(
    monkeypatch: pytest.MonkeyPatch, budget: tuple[int, float, float], outer: list[str]
) -> None:
    _with_budget(monkeypatch, budget)
    exc = _raised_by_connect(closed_port())
    names = _chain_names(exc)
    assert names[: len(outer)] == outer
    assert "NewConnectionError" in names
    assert classify_exception(exc) is FailureKind.CONNECTION_FAILED


@pytest.mark.parametrize(("budget", "outer"), BUDGETS)
def test_tls_handshake_fails(
    monkeypatch: pytest.MonkeyPatch, budget: tuple[int, float, float], outer: list[str]
) -> None:
    _with_budget(monkeypatch, budget)
    with serve(lambda _request: Reply(200)) as plain:  # plain HTTP where TLS is expected
        exc = _raised_by_connect(plain.port)
    names = _chain_names(exc)
    assert names[: len(outer)] == outer
    assert "SSLError" in names
    assert classify_exception(exc) is FailureKind.CONNECTION_FAILED


def test_read_timeout() -> None:
    with databricks_http_stub(Reply(200, delay=5.0)) as stub:
        exc = _raised_by_connect(stub.port)
    names = _chain_names(exc)
    assert names[:2] == ["RequestError", "MaxRetryDurationError"]
    assert "ReadTimeoutError" in names
    assert classify_exception(exc) is FailureKind.TRANSIENT


def test_raw_max_retry_error_with_retried_status() -> None:
    """Not reproduced locally with 4.9.0 (the duration check fires first); built by hand
    the way urllib3 raises it when its own retry count runs out on 429 / 503."""
    from urllib3.exceptions import MaxRetryError, ResponseError

    too_many_429 = MaxRetryError(None, "/sql", ResponseError("too many 429 error responses"))
    too_many_503 = MaxRetryError(None, "/sql", ResponseError("too many 503 error responses"))
    assert classify_exception(too_many_429) is FailureKind.QUOTA_EXCEEDED
    assert classify_exception(too_many_503) is FailureKind.TRANSIENT


# --- statement errors, from the fake SQL warehouse -----------------------------------------


@pytest.fixture(scope="module")
def warehouse() -> Iterator[tuple[RunningServer, FakeWarehouse]]:
    with databricks_warehouse() as (server, service):
        service.sql("CREATE SCHEMA s; CREATE TABLE s.t (id INTEGER, name VARCHAR)")
        yield server, service


def _statement_error(warehouse: tuple[RunningServer, FakeWarehouse], sql: str) -> BaseException:
    server, _service = warehouse
    adapter = _open(server.port)
    try:
        with pytest.raises(Exception) as info:  # noqa: PT011
            adapter._rows(sql)
    finally:
        adapter.close()
    return info.value


@pytest.mark.parametrize(
    ("statement", "error_class", "kind"),
    [
        pytest.param(
            "SELECT * FROM s.nope", "TABLE_OR_VIEW_NOT_FOUND", FailureKind.NOT_FOUND, id="no-table"
        ),
        pytest.param(
            "CREATE TABLE nope.t2 (id INT)",
            "SCHEMA_NOT_FOUND",
            FailureKind.NOT_FOUND,
            id="no-schema",
        ),
        pytest.param("SELEC 1", "PARSE_SYNTAX_ERROR", FailureKind.QUERY_REJECTED, id="syntax"),
        pytest.param(
            "SELECT nope FROM s.t",
            "UNRESOLVED_COLUMN",
            FailureKind.QUERY_REJECTED,
            id="missing-column",
        ),
        pytest.param(
            "SELECT CAST('x' AS INT)",
            "CAST_INVALID_INPUT",
            FailureKind.QUERY_REJECTED,
            id="bad-cast",
        ),
    ],
)
def test_statement_error(
    warehouse: tuple[RunningServer, FakeWarehouse],
    statement: str,
    error_class: str,
    kind: FailureKind,
) -> None:
    exc = _statement_error(warehouse, statement)
    assert type(exc).__name__ == "ServerOperationError"
    assert str(exc).startswith(f"[{error_class}")
    assert classify_exception(exc) is kind


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        pytest.param(
            StatementError("INSUFFICIENT_PERMISSIONS", "User does not have SELECT.", "42501"),
            FailureKind.QUERY_REJECTED,
            id="permissions",
        ),
        pytest.param(
            StatementError("OPERATION_CANCELED", "Query was cancelled.", "HY008"),
            FailureKind.TRANSIENT,
            id="cancelled",
        ),
        pytest.param(
            StatementError("SOME_NEW_CLASS", "Resource exhausted.", "53400"),
            FailureKind.QUOTA_EXCEEDED,
            id="sqlstate-class-53",
        ),
        pytest.param(
            StatementError("SOME_NEW_CLASS", "Relation gone.", "42P01"),
            FailureKind.NOT_FOUND,
            id="sqlstate-42P01",
        ),
    ],
)
def test_statement_error_by_class_or_sqlstate(
    warehouse: tuple[RunningServer, FakeWarehouse], error: StatementError, kind: FailureKind
) -> None:
    _server, service = warehouse
    service.fail_on["FAIL_HERE"] = error
    try:
        exc = _statement_error(warehouse, "SELECT 'FAIL_HERE'")
    finally:
        service.fail_on.clear()
    assert type(exc).__name__ == "ServerOperationError"
    assert classify_exception(exc) is kind


def test_error_status_is_query_rejected(warehouse: tuple[RunningServer, FakeWarehouse]) -> None:
    _server, service = warehouse
    service.reject_on["REJECT_HERE"] = "Invalid statement handle"
    try:
        exc = _statement_error(warehouse, "SELECT 'REJECT_HERE'")
    finally:
        service.reject_on.clear()
    assert type(exc).__name__ == "DatabaseError"
    assert classify_exception(exc) is FailureKind.QUERY_REJECTED


# --- what stays unknown -------------------------------------------------------------------


def test_stringified_server_error_is_unknown(
    warehouse: tuple[RunningServer, FakeWarehouse],
) -> None:
    exc = _statement_error(warehouse, "SELECT * FROM s.nope")
    assert classify_exception(exc) is FailureKind.NOT_FOUND
    assert classify_exception(RuntimeError(str(exc))) is FailureKind.UNKNOWN


def test_message_parsing() -> None:
    parsed = databricks_errors.parse_server_message(
        "[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column `x` cannot be resolved. SQLSTATE: 42703"
    )
    assert parsed == ("UNRESOLVED_COLUMN.WITH_SUGGESTION", "42703")
    assert databricks_errors.parse_server_message("no structure here") == (None, None)
    assert databricks_errors.classify(ValueError("[TABLE_OR_VIEW_NOT_FOUND] x")) is None


def test_dns_failure_is_connection_failed() -> None:
    """Built by hand: resolving a name that does not exist would send a query past
    127.0.0.1. This is what urllib3 raises (and requests wraps, for BigQuery)."""
    import socket

    import requests
    from urllib3.exceptions import MaxRetryError, NameResolutionError

    gaierror = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    raw = MaxRetryError(None, "/sql", NameResolutionError("nowhere.invalid", None, gaierror))
    assert classify_exception(raw) is FailureKind.CONNECTION_FAILED
    wrapped = requests.exceptions.ConnectionError(raw)
    assert classify_exception(wrapped) is FailureKind.CONNECTION_FAILED


def test_raw_max_retry_error_with_read_timeout() -> None:
    """Built by hand: the raw form of the read-timeout row (urllib3 gave up first)."""
    from urllib3.exceptions import MaxRetryError, ReadTimeoutError

    raw = MaxRetryError(None, "/sql", ReadTimeoutError(None, "/sql", "Read timed out."))
    assert classify_exception(raw) is FailureKind.TRANSIENT
