"""Issue 10 cases 2 and 3 (runner side), issue 13 goal 8, issue 15 goal 5: the runner as a
real process on real DuckDB files, with a ``sitecustomize`` on its PYTHONPATH that hooks
one adapter method to make the moment under test happen (a stop signal during close, a
checkpoint that fails) exactly when the test needs it.

- A stop signal that arrives after COMMIT (during close / checkpoint) leaves the table
  copied, even when close does not finish within the grace period.
- A stop before COMMIT is failed / transient, exit 13, and says ``stopped_by``.
- A checkpoint that fails on close fails the table: a copy is reported only once durable.
- ``duration_ms`` counts from the process's start; ``copy_ms`` is the copy alone.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pytest
from tests.runner.test_runner_process import finish, query, start, task

from rocky_runner.contract import decode_result

# Waits until the runner's watchdog has taken the stop signal (it sets .reason).
_WAIT_FOR_WATCHDOG = """
import gc, os, signal, time
from rocky_runner.watchdog import Watchdog

def _stop_and_wait_for_watchdog():
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(o.reason for o in gc.get_objects() if isinstance(o, Watchdog)):
            return
        time.sleep(0.01)
    raise SystemExit("the watchdog never took SIGTERM")
"""


def _hook(tmp_path: Path, body: str) -> dict[str, str]:
    """Environment that loads ``body`` into the runner at start-up (``sitecustomize``)."""
    folder = tmp_path / "hook"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        _WAIT_FOR_WATCHDOG + "\nfrom rocky_runner.adapters import duckdb as adapter\n"
        "original_close = adapter.DuckDBAdapter.close\n"
        "from rocky_runner.adapters import duckdb_sql\n"
        "original_replace = duckdb_sql.replace\n" + textwrap.dedent(body)
    )
    return {"PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}


def _count(warehouse: Path) -> int:
    return int(query(warehouse, "SELECT count(*) FROM acme_wh.staging.orders")[0][0])


def test_sigterm_after_commit_during_close_reports_copied(warehouse: Path, tmp_path: Path) -> None:
    env = _hook(
        tmp_path,
        """
        def close(self):
            _stop_and_wait_for_watchdog()
            original_close(self)
        adapter.DuckDBAdapter.close = close
        """,
    )
    path = tmp_path / "result.json"
    result = finish(start(task(warehouse), path, **env), path)
    assert result.code == 0, result.stderr
    assert result.result["outcome"] == "copied"
    assert result.result["rows_copied"] == 5
    assert "stopped_by" not in result.result
    assert "SIGTERM arrived after the copy committed" in result.stderr
    assert _count(warehouse) == 5


@pytest.mark.slow
def test_close_stuck_after_commit_still_reports_copied(warehouse: Path, tmp_path: Path) -> None:
    env = _hook(
        tmp_path,
        """
        def close(self):
            _stop_and_wait_for_watchdog()
            time.sleep(120)  # a checkpoint that never ends: the grace period runs out
        adapter.DuckDBAdapter.close = close
        """,
    )
    path = tmp_path / "result.json"
    result = finish(start(task(warehouse), path, **env), path, timeout=90)
    assert result.code == 0, result.stderr
    assert result.result["outcome"] == "copied"
    assert "closing did not finish" in result.stderr
    # The commit is in DuckDB's write-ahead log: the next opener sees the rows.
    assert _count(warehouse) == 5


def test_stop_before_commit_is_transient_and_says_stopped_by(
    warehouse: Path, tmp_path: Path
) -> None:
    query(
        warehouse,
        "CREATE VIEW src__acme.slow AS SELECT a.range AS id, TIMESTAMP '2024-01-01' AS "
        "_fivetran_synced FROM range(100000) a, range(100000) b WHERE a.range * b.range = -1",
    )
    marker = tmp_path / "copy-started"
    env = _hook(
        tmp_path,
        f"""
        def replace(*args):
            open({str(marker)!r}, "w").close()
            return original_replace(*args)
        duckdb_sql.replace = replace
        """,
    )
    path = tmp_path / "result.json"
    proc = start(task(warehouse, "slow"), path, **env)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert marker.exists()
    proc.send_signal(signal.SIGTERM)
    result = finish(proc, path, timeout=30)
    assert result.code == 13, result.stderr
    assert result.result["failure_kind"] == "transient"
    assert result.result["stopped_by"] == "SIGTERM"
    assert decode_result(result.raw).stopped_by == "SIGTERM"


def test_failed_checkpoint_on_close_fails_the_table(warehouse: Path, tmp_path: Path) -> None:
    # A real DuckDB checkpoint error: CHECKPOINT refuses while a transaction has changes.
    env = _hook(
        tmp_path,
        """
        def close(self):
            if self._conn_handle is not None:
                self._conn_handle.execute("BEGIN TRANSACTION")
                self._conn_handle.execute("CREATE TABLE acme_wh.main.pending (i INTEGER)")
            original_close(self)
        adapter.DuckDBAdapter.close = close
        """,
    )
    path = tmp_path / "result.json"
    result = finish(start(task(warehouse), path, **env), path)
    assert result.code == 13, result.stderr
    assert result.result["outcome"] == "failed"
    assert result.result["failure_kind"] == "transient"
    assert "closing the connection (checkpoint) failed" in result.result["error"]
    assert "Cannot CHECKPOINT" in result.result["error"]
    assert "stopped_by" not in result.result


def test_duration_counts_from_process_start_and_copy_ms_is_the_copy(
    warehouse: Path, tmp_path: Path
) -> None:
    # The runner's import of duckdb alone takes a good part of a second here; a hook that
    # sleeps at start-up makes the difference unmistakable.
    env = _hook(tmp_path, "time.sleep(1.0)\n")
    path = tmp_path / "result.json"
    spawned = time.monotonic()
    proc = start(task(warehouse), path, **env)
    result = finish(proc, path)
    wall_ms = (time.monotonic() - spawned) * 1000
    assert result.code == 0, result.stderr
    duration, copy_ms = result.result["duration_ms"], result.result["metadata"]["copy_ms"]
    assert duration >= 1000  # the sleep before main() is part of the table's cost
    assert duration <= wall_ms + 50
    assert 0 < copy_ms < duration - 900
