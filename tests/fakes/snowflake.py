"""Snowflake fakes: fakesnow's server for real SQL, and an HTTP stub for failures.

fakesnow (``fakesnow.server``) answers the connector's REST protocol and runs the SQL
on DuckDB after translating it, so copies, missing tables and syntax errors go
through the real connector end to end. What fakesnow cannot produce (login refusals,
HTTP 401/403/429/5xx, Snowflake's own error numbers for privileges, cancels and
expired sessions) comes from :func:`snowflake_stub`, which answers the same
endpoints the way Snowflake does (``/session/v1/login-request``,
``/queries/v1/query-request``, ``/session/token-request``). With ``echo_login`` the
stub refuses every login with a message that echoes the login request body, the JSON
the connector sent (the password JSON-escaped in it), the way a misbehaving proxy or
an over-helpful error page would: the redaction tests need the secret in the error.

fakesnow answers every ``CREATE SCHEMA`` with "Schema X successfully created.";
Snowflake answers ``CREATE SCHEMA IF NOT EXISTS`` of a schema that exists with
"X already exists, statement succeeded." (and creates nothing). The server here
answers as Snowflake does (:func:`_answer_existing_schemas_as_snowflake`): the runner
reads that status to report whether its copy created the target schema.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from fakes.http import Reply, Request, RunningServer, serve

_FAKESNOW_LOCK = threading.Lock()
_SCHEMA_EXISTS_STATUS = "SELECT '{name} already exists, statement succeeded.' AS status"


def _answer_existing_schemas_as_snowflake() -> None:
    """Make fakesnow's cursor answer ``CREATE SCHEMA IF NOT EXISTS`` of an existing schema
    with Snowflake's "X already exists, statement succeeded." status (once per process)."""
    import sqlglot
    from fakesnow.cursor import FakeSnowflakeCursor
    from sqlglot import exp

    if getattr(FakeSnowflakeCursor, "_rocky_schema_status", False):
        return
    original = FakeSnowflakeCursor._execute

    def existing_schema(cursor: Any, transformed: Any) -> str | None:
        if not (
            isinstance(transformed, exp.Create)
            and str(transformed.args.get("kind") or "").upper() == "SCHEMA"
            and transformed.args.get("exists")
        ):
            return None
        table = transformed.find(exp.Table)
        if table is None or not table.db:
            return None
        database = table.catalog or cursor._conn.database
        row = cursor._duck_conn.execute(
            "SELECT count(*) FROM duckdb_schemas() WHERE lower(database_name) = lower(?) "
            "AND lower(schema_name) = lower(?)",
            [database, table.db],
        ).fetchone()
        return str(table.db) if row and row[0] else None

    def execute(cursor: Any, transformed: Any, params: Any = None) -> None:
        existing = existing_schema(cursor, transformed)
        original(cursor, transformed, params)
        if existing is not None:
            status = _SCHEMA_EXISTS_STATUS.format(name=existing.replace("'", "''"))
            original(cursor, sqlglot.parse_one(status, read="duckdb"), None)

    FakeSnowflakeCursor._execute = execute  # type: ignore[method-assign]
    FakeSnowflakeCursor._rocky_schema_status = True  # type: ignore[attr-defined]


@contextmanager
def fakesnow_server() -> Iterator[dict[str, Any]]:
    """fakesnow's server on 127.0.0.1: yields host / port / user / password settings.

    Started here rather than with ``fakesnow.server()``: that function imports the
    ``fakesnow.server`` module, which then shadows the function itself, so a second
    call in the same process fails.
    """
    import importlib

    import uvicorn

    app = importlib.import_module("fakesnow.server").app
    _answer_existing_schemas_as_snowflake()
    # One server at a time per process: fakesnow keeps its databases in module state.
    with _FAKESNOW_LOCK:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, name="fakesnow", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not server.started:
            raise RuntimeError("fakesnow server did not start")
        try:
            yield {
                "user": "fake",
                "password": "snow",
                "account": "fakesnow",
                "host": "127.0.0.1",
                "port": port,
                "protocol": "http",
                "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
                "network_timeout": 1,
            }
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def fakesnow_adapter(
    port: int, database: str, secret: tuple[str, str] = ("snowflake", "password")
) -> dict[str, Any]:
    """A task's ``adapter`` settings for the fakesnow server on ``port`` (see
    :func:`fakesnow_server`): ``database`` as the source database, the password read from
    the Secret ``secret`` (name, key)."""
    name, key = secret
    return {
        "type": "snowflake",
        "snowflake": {
            "account": "fakesnow",
            "user": "fake",
            "database": database,
            "host": "127.0.0.1",
            "port": port,
            "protocol": "http",
            "passwordSecretRef": {"name": name, "key": key},
        },
    }


def login_ok() -> Reply:
    """A successful login answer (the fields the connector reads)."""
    return Reply.json(
        {
            "data": {
                "token": "session-token",
                "masterToken": "master-token",
                "serverVersion": "9.0.0",
                "parameters": [],
                "sessionInfo": {},
            },
            "success": True,
        }
    )


def gs_error(code: str, message: str, sqlstate: str | None = None) -> Reply:
    """Snowflake's answer to a failed request: HTTP 200 with ``success: false``."""
    data: dict[str, Any] | None = (
        {"errorCode": code, "sqlState": sqlstate} if sqlstate is not None else None
    )
    return Reply.json({"data": data, "code": code, "message": message, "success": False})


def echo_login_refusal(request: Request) -> Reply:
    """Snowflake's 390100 login refusal (HTTP 200, ``success: false``), its message
    echoing the login request: the body as sent (JSON, so a password appears
    JSON-escaped) and the request URL's query string (URL-encoded)."""
    body = request.body.decode("utf-8", "replace")
    query = urlencode(request.query, doseq=True)
    return gs_error(
        "390100",
        f"Incorrect username or password was specified. Request: {body} ?{query}",
        "28000",
    )


def rowset(names: Sequence[str], rows: Sequence[Sequence[str]]) -> Reply:
    """A query result of text columns in JSON format, as Snowflake answers a query."""
    return Reply.json(
        {
            "data": {
                "parameters": [],
                "rowtype": [
                    {
                        "name": name,
                        "type": "text",
                        "nullable": True,
                        "precision": None,
                        "scale": None,
                        "length": 16777216,
                        "byteLength": 16777216,
                    }
                    for name in names
                ],
                "rowset": [list(row) for row in rows],
                "total": len(rows),
                "queryResultFormat": "json",
                "queryId": "01-fake",
            },
            "success": True,
        }
    )


def query_ok() -> Reply:
    """A one-row, one-column result (``SELECT 1``) in JSON format."""
    return Reply.json(
        {
            "data": {
                "parameters": [],
                "rowtype": [
                    {
                        "name": "1",
                        "type": "fixed",
                        "nullable": False,
                        "precision": 1,
                        "scale": 0,
                        "length": None,
                        "byteLength": None,
                    }
                ],
                "rowset": [["1"]],
                "total": 1,
                "queryResultFormat": "json",
                "queryId": "01-fake",
            },
            "success": True,
        }
    )


@contextmanager
def snowflake_stub(
    *,
    login: Reply | None = None,
    query: Reply | None = None,
    renew: Reply | None = None,
    echo_login: bool = False,
) -> Iterator[RunningServer]:
    """An HTTP endpoint answering login, queries and token renewal with fixed replies
    (``echo_login``: every login refused with its own request body in the message)."""
    login_reply = login or login_ok()
    query_reply = query or query_ok()
    renew_reply = renew or gs_error("390114", "Authentication token has expired.", "08001")

    def handle(request: Request) -> Reply:
        path = request.path
        if path.endswith("/login-request"):
            return echo_login_refusal(request) if echo_login else login_reply
        if path.endswith("/token-request"):
            return renew_reply
        if path.endswith("/query-request"):
            return query_reply
        # abort-request, session delete, heartbeat: accept.
        return Reply.json({"data": None, "success": True})

    with serve(handle) as server:
        yield server


@contextmanager
def snowflake_echo_stub(
    *, database: str = "DB", tables: Mapping[str, Sequence[str]], logins_before_echo: int = 0
) -> Iterator[RunningServer]:
    """A Snowflake endpoint whose first ``logins_before_echo`` logins succeed (and see
    ``tables``, schema -> base tables, in ``database`` through ``INFORMATION_SCHEMA``),
    and every later login is refused echoing its request (:func:`echo_login_refusal`).
    So a discovery pod can plan a table whose copy pod then fails with the echo."""
    logins = itertools.count()
    lock = threading.Lock()

    def answer(sql_text: str) -> Reply:
        if "SCHEMATA" in sql_text:
            return rowset(["CATALOG_NAME", "SCHEMA_NAME"], [[database, s] for s in sorted(tables)])
        if "TABLE_TYPE" in sql_text:
            return rowset(
                ["TABLE_NAME", "TABLE_TYPE"],
                [[t, "BASE TABLE"] for names in tables.values() for t in names],
            )
        return query_ok()

    def handle(request: Request) -> Reply:
        path = request.path
        if path.endswith("/login-request"):
            with lock:
                seen = next(logins)
            return login_ok() if seen < logins_before_echo else echo_login_refusal(request)
        if path.endswith("/query-request"):
            return answer(str((request.json() or {}).get("sqlText", "")))
        return Reply.json({"data": None, "success": True})

    with serve(handle) as server:
        yield server
