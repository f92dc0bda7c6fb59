"""DuckDB failure classification: one test per row of docs/classification-duckdb.md's DuckDB
table, each error raised by the real DuckDB engine (real files, a second real process
holding the lock, conn.interrupt, a tiny memory_limit), then classified."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from rocky_runner.adapters.duckdb import DuckDBAdapter
from rocky_runner.classify import classify_exception
from rocky_runner.contract import FailureKind
from rocky_runner.errors import LockTimeoutError

NO_EXTENSIONS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def raised_by(conn: duckdb.DuckDBPyConnection, sql: str) -> BaseException:
    with pytest.raises(duckdb.Error) as info:
        conn.execute(sql).fetchall()
    return info.value


@pytest.fixture
def conn(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect(str(warehouse), config=NO_EXTENSIONS)
    yield c
    c.close()


@pytest.mark.parametrize(
    ("sql", "exc_type", "kind"),
    [
        pytest.param(
            "SELECT * FROM src__acme.nope", "CatalogException", "not-found", id="missing-table"
        ),
        pytest.param(
            "SELECT * FROM nope.orders", "CatalogException", "not-found", id="missing-schema"
        ),
        pytest.param(
            "SELECT * FROM nocat.src__acme.orders",
            "CatalogException",
            "not-found",
            id="missing-catalog",
        ),
        pytest.param(
            "SELECT no_such_fn(1)", "CatalogException", "query-rejected", id="unknown-function"
        ),
        pytest.param(
            "CREATE SCHEMA src__acme", "CatalogException", "query-rejected", id="already-exists"
        ),
        pytest.param("SELEC 1", "ParserException", "query-rejected", id="syntax"),
        pytest.param(
            "SELECT missing FROM src__acme.orders",
            "BinderException",
            "query-rejected",
            id="missing-column",
        ),
        pytest.param("SELECT 'x'::INTEGER", "ConversionException", "query-rejected", id="bad-cast"),
        pytest.param(
            "SELECT 2147483647::INTEGER + 1::INTEGER",
            "OutOfRangeException",
            "query-rejected",
            id="out-of-range",
        ),
    ],
)
def test_sql_errors(conn: duckdb.DuckDBPyConnection, sql: str, exc_type: str, kind: str) -> None:
    exc = raised_by(conn, sql)
    assert type(exc).__name__ == exc_type
    assert classify_exception(exc) == FailureKind(kind)


def test_constraint_violation_is_query_rejected(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("CREATE TABLE k (id INTEGER PRIMARY KEY)")
    exc = raised_by(conn, "INSERT INTO k VALUES (1), (1)")
    assert isinstance(exc, duckdb.ConstraintException)
    assert classify_exception(exc) is FailureKind.QUERY_REJECTED


def test_write_to_read_only_database_is_query_rejected(warehouse: Path) -> None:
    with duckdb.connect(str(warehouse), read_only=True, config=NO_EXTENSIONS) as ro:
        exc = raised_by(ro, "INSERT INTO src__acme.orders (id) VALUES (99)")
    assert isinstance(exc, duckdb.InvalidInputException)
    assert "read-only" in str(exc)
    assert classify_exception(exc) is FailureKind.QUERY_REJECTED


def test_permission_denied_by_configuration_is_query_rejected(tmp_path: Path) -> None:
    csv = tmp_path / "x.csv"
    csv.write_text("a\n1\n")
    with duckdb.connect(config={**NO_EXTENSIONS, "enable_external_access": False}) as c:
        exc = raised_by(c, f"SELECT * FROM read_csv('{csv}')")
    assert isinstance(exc, duckdb.PermissionException)
    assert classify_exception(exc) is FailureKind.QUERY_REJECTED


def _hold_lock(path: Path) -> subprocess.Popen[str]:
    """A second real process that opens the file for writing and keeps it until killed."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time\n"
            f"c = duckdb.connect({str(path)!r})\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)


def test_lock_held_by_another_process_is_transient(warehouse: Path) -> None:
    holder = _hold_lock(warehouse)
    try:
        with pytest.raises(duckdb.IOException) as info:
            duckdb.connect(str(warehouse), config=NO_EXTENSIONS)
    finally:
        _release(holder)
    assert "lock" in str(info.value)
    assert classify_exception(info.value) is FailureKind.TRANSIENT


def test_lock_never_obtained_by_the_adapter_is_transient(warehouse: Path) -> None:
    holder = _hold_lock(warehouse)
    try:
        started = time.monotonic()
        with pytest.raises(LockTimeoutError) as info:
            # The connection opens on first use (read-only for discovery): a writer holding
            # the file still blocks it.
            DuckDBAdapter(str(warehouse), lock_timeout_seconds=0.5).discover_schemas()
        waited = time.monotonic() - started
    finally:
        _release(holder)
    assert 0.4 <= waited < 5
    assert isinstance(info.value.__cause__, duckdb.IOException)
    assert classify_exception(info.value) is FailureKind.TRANSIENT


def test_missing_directory_is_connection_failed(tmp_path: Path) -> None:
    with pytest.raises(duckdb.IOException) as info:
        duckdb.connect(str(tmp_path / "no" / "such" / "dir.duckdb"), config=NO_EXTENSIONS)
    assert classify_exception(info.value) is FailureKind.CONNECTION_FAILED


def test_not_a_duckdb_file_is_connection_failed(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.duckdb"
    bogus.write_bytes(b"this is not a database " * 200)
    with pytest.raises(duckdb.IOException) as info:
        duckdb.connect(str(bogus), config=NO_EXTENSIONS)
    assert classify_exception(info.value) is FailureKind.CONNECTION_FAILED


def test_out_of_memory_is_quota_exceeded() -> None:
    with duckdb.connect(config={**NO_EXTENSIONS, "memory_limit": "10MB", "threads": 1}) as c:
        exc = raised_by(c, "SELECT list(range) FROM range(10000000)")
    assert isinstance(exc, duckdb.OutOfMemoryException)
    assert classify_exception(exc) is FailureKind.QUOTA_EXCEEDED


def test_interrupted_query_is_transient() -> None:
    with duckdb.connect(config=NO_EXTENSIONS) as c:
        caught: list[BaseException] = []

        def run() -> None:
            try:
                c.execute("SELECT count(*) FROM range(100000000000) a").fetchall()
            except duckdb.Error as exc:
                caught.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(0.3)
        c.interrupt()
        worker.join(timeout=30)
    assert caught, "the query was not interrupted"
    assert isinstance(caught[0], duckdb.InterruptException)
    assert classify_exception(caught[0]) is FailureKind.TRANSIENT


def test_write_write_conflict_is_transient(conn: duckdb.DuckDBPyConnection) -> None:
    first, second = conn.cursor(), conn.cursor()
    first.begin()
    second.begin()
    first.execute("UPDATE src__acme.orders SET name = 'a' WHERE id = 1")
    with pytest.raises(duckdb.TransactionException) as info:
        second.execute("UPDATE src__acme.orders SET name = 'b' WHERE id = 1")
    first.rollback()
    assert "onflict" in str(info.value)
    assert classify_exception(info.value) is FailureKind.TRANSIENT


def test_use_after_close_is_unknown(warehouse: Path) -> None:
    c = duckdb.connect(str(warehouse), config=NO_EXTENSIONS)
    c.close()
    with pytest.raises(duckdb.ConnectionException) as info:
        c.execute("SELECT 1")
    assert classify_exception(info.value) is FailureKind.UNKNOWN


def test_error_that_arrives_as_a_string_is_unknown(conn: duckdb.DuckDBPyConnection) -> None:
    exc = raised_by(conn, "SELECT * FROM src__acme.nope")
    stringified = RuntimeError(str(exc))  # the type is gone: only the text survives
    assert "does not exist" in str(stringified)
    assert classify_exception(stringified) is FailureKind.UNKNOWN


def test_wrapped_error_is_classified_through_the_chain(conn: duckdb.DuckDBPyConnection) -> None:
    original = raised_by(conn, "SELECT * FROM src__acme.nope")

    def copy() -> None:
        try:
            raise original
        except duckdb.Error as exc:
            raise RuntimeError("copy failed") from exc

    with pytest.raises(RuntimeError) as info:
        copy()
    assert classify_exception(info.value) is FailureKind.NOT_FOUND
