"""The runner end to end: ``rocky-runner`` as a real subprocess with ROCKY_TASK and a
result path, against real DuckDB files: full_refresh, incremental, drift, not-found,
concurrent runners waiting for the file lock, lock timeout, copy timeout, SIGTERM,
bad task, and secrets kept out of the result and the log."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from rocky_runner.contract import ENV_RESULT_PATH, ENV_TASK, decode_result

RUNNER = shutil.which("rocky-runner", path=str(Path(sys.executable).parent)) or "rocky-runner"


@dataclass
class Run:
    code: int
    result: dict[str, Any]
    stderr: str
    raw: bytes


def task(
    warehouse: Path,
    table: str = "orders",
    *,
    strategy: str = "incremental",
    lock_timeout: float = 30,
    target_table: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "asset_key": ["duckdb", "acme", table],
        "source": {"schema": "src__acme", "table": table},
        "target": {"catalog": "acme_wh", "schema": "staging", "table": target_table or table},
        "strategy": strategy,
        "metadata_columns": [{"name": "_rocky_loaded_by", "type": "VARCHAR", "value": "'rocky'"}],
        "adapter": {
            "type": "duckdb",
            "duckdb": {"path": str(warehouse), "lockTimeoutSeconds": lock_timeout},
        },
        **extra,
    }


def start(doc: dict[str, Any] | str, result_path: Path, **env: str) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ROCKY_")}
    environ[ENV_TASK] = doc if isinstance(doc, str) else json.dumps(doc)
    environ[ENV_RESULT_PATH] = str(result_path)
    environ.update(env)
    return subprocess.Popen([RUNNER], env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[bytes], result_path: Path, timeout: float = 60) -> Run:
    _, err = proc.communicate(timeout=timeout)
    raw = result_path.read_bytes()
    return Run(proc.returncode, json.loads(raw), err.decode("utf-8", "replace"), raw)


def run(doc: dict[str, Any] | str, tmp_path: Path, **env: str) -> Run:
    path = tmp_path / "results" / f"{time.monotonic_ns()}.json"
    return finish(start(doc, path, **env), path)


def query(warehouse: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute(f"ATTACH IF NOT EXISTS '{warehouse.with_name('acme_wh.duckdb')}' AS acme_wh")
        return conn.execute(sql).fetchall()


def test_full_refresh_replaces_the_target(warehouse: Path, tmp_path: Path) -> None:
    first = run(task(warehouse, strategy="full_refresh"), tmp_path)
    assert first.code == 0, first.stderr
    assert first.result["outcome"] == "copied"
    assert first.result["rows_copied"] == 5
    meta = first.result["metadata"]
    assert meta["strategy"] == "full_refresh"
    assert meta["target_table_full_name"] == "acme_wh.staging.orders"
    assert meta["column_count"] == 4  # id, name, _fivetran_synced, _rocky_loaded_by
    assert meta["watermark"] == "2024-01-01T04:00:00"
    decode_result(first.raw)

    query(warehouse, "DELETE FROM src__acme.orders WHERE id >= 3")
    second = run(task(warehouse, strategy="full_refresh"), tmp_path)
    assert second.code == 0, second.stderr
    assert second.result["rows_copied"] == 3
    assert query(
        warehouse, "SELECT count(*), min(_rocky_loaded_by) FROM acme_wh.staging.orders"
    ) == [(3, "rocky")]


def test_incremental_appends_only_newer_rows(warehouse: Path, tmp_path: Path) -> None:
    first = run(task(warehouse), tmp_path)
    assert first.code == 0, first.stderr
    assert (first.result["rows_copied"], first.result["metadata"]["write_mode"]) == (5, "replace")
    query(
        warehouse,
        "INSERT INTO src__acme.orders VALUES "
        "(10, 'new', TIMESTAMP '2024-02-01'), (11, 'newer', TIMESTAMP '2024-02-02'), "
        "(12, 'late but old', TIMESTAMP '2023-12-31')",
    )
    second = run(task(warehouse), tmp_path)
    assert second.code == 0, second.stderr
    assert second.result["rows_copied"] == 2
    assert second.result["metadata"]["write_mode"] == "append"
    assert second.result["metadata"]["watermark"] == "2024-02-02T00:00:00"
    ids = query(warehouse, "SELECT id FROM acme_wh.staging.orders ORDER BY id")
    assert [r[0] for r in ids] == [0, 1, 2, 3, 4, 10, 11]
    third = run(task(warehouse), tmp_path)
    assert third.result["rows_copied"] == 0


def test_drift_new_column_is_added(warehouse: Path, tmp_path: Path) -> None:
    assert run(task(warehouse), tmp_path).code == 0
    query(warehouse, "ALTER TABLE src__acme.orders ADD COLUMN amount DECIMAL(10,2)")
    query(warehouse, "INSERT INTO src__acme.orders VALUES (20, 'x', TIMESTAMP '2025-01-01', 9.5)")
    second = run(task(warehouse), tmp_path)
    assert second.code == 0, second.stderr
    assert second.result["rows_copied"] == 1
    assert second.result["metadata"]["drift"] == ["add_column amount DECIMAL(10,2)"]
    assert second.result["metadata"]["column_count"] == 5
    rows = query(warehouse, "SELECT id, amount FROM acme_wh.staging.orders ORDER BY id")
    assert rows[0] == (0, None)
    assert float(rows[-1][1]) == 9.5


def test_drift_safe_widening_alters_in_place(warehouse: Path, tmp_path: Path) -> None:
    assert run(task(warehouse), tmp_path).code == 0
    query(warehouse, "ALTER TABLE src__acme.orders ALTER COLUMN id SET DATA TYPE BIGINT")
    query(warehouse, "INSERT INTO src__acme.orders VALUES (2^40, 'big', TIMESTAMP '2025-01-01')")
    second = run(task(warehouse), tmp_path)
    assert second.code == 0, second.stderr
    assert second.result["metadata"]["drift"] == ["widen_column id INTEGER -> BIGINT"]
    assert second.result["rows_copied"] == 1
    assert query(warehouse, "SELECT count(*) FROM acme_wh.staging.orders") == [(6,)]


def test_drift_unsafe_type_change_recreates(warehouse: Path, tmp_path: Path) -> None:
    assert run(task(warehouse), tmp_path).code == 0
    query(warehouse, "ALTER TABLE src__acme.orders ALTER COLUMN id SET DATA TYPE DOUBLE")
    second = run(task(warehouse), tmp_path)
    assert second.code == 0, second.stderr
    meta = second.result["metadata"]
    assert meta["write_mode"] == "replace"
    assert meta["reason"] == "unsafe type change"
    assert meta["drift"] == ["recreate: id INTEGER -> DOUBLE is unsafe"]
    assert second.result["rows_copied"] == 5
    types = query(
        warehouse,
        "SELECT data_type FROM duckdb_columns() WHERE database_name = 'acme_wh' "
        "AND table_name = 'orders' AND column_name = 'id'",
    )
    assert types == [("DOUBLE",)]


def test_missing_table_is_not_found(warehouse: Path, tmp_path: Path) -> None:
    result = run(task(warehouse, "no_such_table"), tmp_path)
    assert result.code == 15
    assert result.result["failure_kind"] == "not-found"
    assert "no_such_table" in result.result["error"]
    assert "Traceback" in result.stderr


def test_bad_task_is_unknown_with_a_clear_error(tmp_path: Path) -> None:
    result = run('{"asset_key": ["duckdb", "x"], "strategy": "sometimes"}', tmp_path)
    assert result.code == 16
    assert result.result["failure_kind"] == "unknown"
    assert result.result["asset_key"] == ["duckdb", "x"]
    assert "strategy" in result.result["error"]
    assert "source: Field required" in result.result["error"]


def test_result_directory_is_created(warehouse: Path, tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "result.json"
    proc = start(task(warehouse), path)
    assert finish(proc, path).code == 0


def _hold_lock(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys\nc = duckdb.connect({str(path)!r})\n"
            "print('locked', flush=True)\nsys.stdin.read()\n",
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


def test_concurrent_runners_wait_for_the_lock_and_both_copy(
    warehouse: Path, tmp_path: Path
) -> None:
    holder = _hold_lock(warehouse)
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    try:
        procs = [start(task(warehouse, target_table=f"orders_{i}"), p) for i, p in enumerate(paths)]
        time.sleep(1.0)
        assert all(p.poll() is None for p in procs), "a runner did not wait for the lock"
    finally:
        released = time.time()
        _release(holder)
    runs = [finish(p, path) for p, path in zip(procs, paths, strict=True)]
    assert [r.code for r in runs] == [0, 0], [r.stderr for r in runs]
    assert [r.result["rows_copied"] for r in runs] == [5, 5]
    # Both copies happened after the holder let go: each waited for the lock.
    assert all(path.stat().st_mtime >= released - 0.05 for path in paths)
    assert query(warehouse, "SELECT count(*) FROM acme_wh.staging.orders_1") == [(5,)]


def test_lock_held_too_long_is_transient(warehouse: Path, tmp_path: Path) -> None:
    holder = _hold_lock(warehouse)
    try:
        result = run(task(warehouse, lock_timeout=0.5), tmp_path)
    finally:
        _release(holder)
    assert result.code == 13
    assert result.result["failure_kind"] == "transient"
    assert "LockTimeoutError" in result.result["error"]
    assert "Conflicting lock" in result.result["error"]


@pytest.fixture
def slow_view(warehouse: Path) -> str:
    query(
        warehouse,
        "CREATE VIEW src__acme.slow AS SELECT a.range AS id, TIMESTAMP '2024-01-01' AS "
        "_fivetran_synced FROM range(100000) a, range(100000) b WHERE a.range * b.range = -1",
    )
    return "slow"


def test_copy_timeout_is_transient(warehouse: Path, tmp_path: Path, slow_view: str) -> None:
    started = time.monotonic()
    result = run(task(warehouse, slow_view, timeout_seconds=1.0), tmp_path)
    assert time.monotonic() - started < 15
    assert result.code == 13, result.stderr
    assert result.result["failure_kind"] == "transient"
    assert "timeout_seconds=1" in result.result["error"]


def test_sigterm_stops_the_copy_as_transient(
    warehouse: Path, tmp_path: Path, slow_view: str
) -> None:
    path = tmp_path / "term.json"
    proc = start(task(warehouse, slow_view), path)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    result = finish(proc, path, timeout=20)
    assert result.code == 13, result.stderr
    assert "SIGTERM" in result.result["error"]


def test_secret_values_never_leave_the_runner(warehouse: Path, tmp_path: Path) -> None:
    secret = "s3cr3t-Pa55word"
    bq = json.dumps({"private_key": "-----BEGIN KEY-----\nAAAABBBBCCCCDDDD\n-----END KEY-----"})
    doc = task(warehouse, secret)  # the error message will name the "table": the secret
    doc["asset_key"] = ["duckdb", f"x{secret}y"]
    result = run(
        doc,
        tmp_path,
        ROCKY_SNOWFLAKE_PASSWORD=secret,
        ROCKY_BIGQUERY_CREDENTIALS_JSON=bq,
    )
    assert result.code == 15
    for shape in (secret, "AAAABBBBCCCCDDDD"):
        assert shape not in result.raw.decode()
        assert shape not in result.stderr
    assert "***" in result.result["error"]
    assert result.result["asset_key"] == ["duckdb", "x***y"]


def test_python_dash_m_is_the_same_entry_point(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ROCKY_")}
    environ.update({ENV_TASK: "not json", ENV_RESULT_PATH: str(path)})
    proc = subprocess.run(
        [sys.executable, "-m", "rocky_runner"], env=environ, capture_output=True, check=False
    )
    assert proc.returncode == 16
    assert json.loads(path.read_bytes())["failure_kind"] == "unknown"
    assert b"not a valid table task" in proc.stderr
