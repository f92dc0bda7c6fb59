"""Snowflake fakes: fakesnow's server for real SQL, and an HTTP stub for failures.

fakesnow (``fakesnow.server``) answers the connector's REST protocol and runs the SQL
on DuckDB after translating it, so copies, missing tables and syntax errors go
through the real connector end to end. What fakesnow cannot produce (login refusals,
HTTP 401/403/429/5xx, Snowflake's own error numbers for privileges, cancels and
expired sessions) comes from :func:`snowflake_stub`, which answers the same
endpoints the way Snowflake does (``/session/v1/login-request``,
``/queries/v1/query-request``, ``/session/token-request``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fakes.http import Reply, Request, RunningServer, serve

_FAKESNOW_LOCK = threading.Lock()


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
) -> Iterator[RunningServer]:
    """An HTTP endpoint answering login, queries and token renewal with fixed replies."""
    login_reply = login or login_ok()
    query_reply = query or query_ok()
    renew_reply = renew or gs_error("390114", "Authentication token has expired.", "08001")

    def handle(request: Request) -> Reply:
        path = request.path
        if path.endswith("/login-request"):
            return login_reply
        if path.endswith("/token-request"):
            return renew_reply
        if path.endswith("/query-request"):
            return query_reply
        # abort-request, session delete, heartbeat: accept.
        return Reply.json({"data": None, "success": True})

    with serve(handle) as server:
        yield server
