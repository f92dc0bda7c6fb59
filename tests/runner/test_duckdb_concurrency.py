"""DuckDB locking across real processes: the main file is opened read-only unless a task
writes into it, so runners copying into different sibling target files run side by side, a
runner waits only for the lock of its own target, and discovery never takes a write lock."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from rocky_runner.adapters.duckdb import DuckDBAdapter
from rocky_runner.classify import classify_exception
from rocky_runner.contract import FailureKind, TableTask
from rocky_runner.errors import LockTimeoutError


def _task(catalog: str | None) -> TableTask:
    return TableTask.model_validate(
        {
            "asset_key": ["duckdb", "acme", "orders"],
            "source": {"schema": "src__acme", "table": "orders"},
            "target": {"catalog": catalog, "schema": "staging", "table": "orders"},
            "strategy": "full_refresh",
            "adapter": {"type": "duckdb", "duckdb": {"path": "unused"}},
        }
    )


def _hold(path: Path, *, read_only: bool) -> subprocess.Popen[str]:
    """Another real process with ``path`` open (read-only or writable) until released."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys\n"
            f"c = duckdb.connect({str(path)!r}, read_only={read_only!r})\n"
            "print('open', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "open"
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)


def _copy(warehouse: Path, catalog: str | None, timeout: float = 0.5) -> int:
    adapter = DuckDBAdapter(str(warehouse), lock_timeout_seconds=timeout)
    try:
        return adapter.copy_table(_task(catalog)).rows_copied
    finally:
        adapter.close()


def test_copy_into_a_sibling_target_runs_beside_another_reader(warehouse: Path) -> None:
    """A runner reading the warehouse (another table's copy) does not block this one."""
    reader = _hold(warehouse, read_only=True)
    try:
        assert _copy(warehouse, "acme_a") == 5
    finally:
        _release(reader)
    with duckdb.connect(str(warehouse.with_name("acme_a.duckdb")), read_only=True) as c:
        assert c.execute("SELECT count(*) FROM staging.orders").fetchone() == (5,)


def test_only_the_runner_of_the_same_target_waits(warehouse: Path) -> None:
    """Another process writing target file A: a copy into B goes ahead, a copy into A times
    out as transient after lockTimeoutSeconds."""
    _copy(warehouse, "acme_a")  # create the sibling file A
    writer = _hold(warehouse.with_name("acme_a.duckdb"), read_only=False)
    try:
        assert _copy(warehouse, "acme_b") == 5
        started = time.monotonic()
        with pytest.raises(LockTimeoutError) as info:
            _copy(warehouse, "acme_a", timeout=0.5)
        waited = time.monotonic() - started
    finally:
        _release(writer)
    assert 0.4 <= waited < 5
    assert classify_exception(info.value) is FailureKind.TRANSIENT


def test_writing_into_the_main_file_still_takes_its_write_lock(warehouse: Path) -> None:
    """A target in the main catalog needs the main file's write lock: a reader blocks it."""
    reader = _hold(warehouse, read_only=True)
    try:
        with pytest.raises(LockTimeoutError):
            _copy(warehouse, None, timeout=0.5)
    finally:
        _release(reader)
    assert _copy(warehouse, None) == 5


def test_discovery_is_read_only(warehouse: Path) -> None:
    """Discovery (the operator's, or the local executor's) never blocks readers."""
    reader = _hold(warehouse, read_only=True)
    try:
        adapter = DuckDBAdapter(str(warehouse), lock_timeout_seconds=0.5)
        try:
            assert "src__acme" in [s.schema for s in adapter.discover_schemas()]
            assert adapter.list_tables(None, "src__acme") == ["orders"]
        finally:
            adapter.close()
    finally:
        _release(reader)


def test_two_discoveries_in_one_process(warehouse: Path) -> None:
    """The operator discovers for several runs at once, in one process: DuckDB refuses a second
    connection to a file with a different configuration, so both must open it alike."""
    first = DuckDBAdapter(str(warehouse), lock_timeout_seconds=0.5)
    second = DuckDBAdapter(str(warehouse), lock_timeout_seconds=0.5)
    try:
        assert first.list_tables(None, "src__acme") == ["orders"]
        assert second.list_tables(None, "src__acme") == ["orders"]
    finally:
        first.close()
        second.close()
