"""Issue 10, data integrity: the runner as a real process on real DuckDB files.

A NULL watermark never appends the same rows twice (case 1), rows an append cannot take
are counted and warned about (case 1), a new metadata column is added to an existing
target (case 4), a timestamp column that changes type family recreates the target
(case 5), and a typo in SQL the user wrote is query-rejected (case 11).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.runner.test_runner_process import query, run, task

from rocky_runner.contract import decode_result

TARGET = "acme_wh.staging.orders"


def _count(warehouse: Path) -> int:
    return int(query(warehouse, f"SELECT count(*) FROM {TARGET}")[0][0])


def test_all_null_timestamps_never_append_the_same_rows_twice(
    warehouse: Path, tmp_path: Path
) -> None:
    query(warehouse, "UPDATE src__acme.orders SET _fivetran_synced = NULL")
    reasons = []
    for _ in range(3):
        result = run(task(warehouse), tmp_path)
        assert result.code == 0, result.stderr
        assert result.result["rows_copied"] == 5
        assert result.result["metadata"]["write_mode"] == "replace"
        assert result.result["metadata"]["watermark"] is None
        reasons.append(result.result["metadata"]["reason"])
        assert _count(warehouse) == 5
    assert reasons[0] == "target did not exist"
    assert all("no watermark" in r for r in reasons[1:])
    # New rows (still without timestamps) arrive by the same replace: nothing lost.
    query(warehouse, "INSERT INTO src__acme.orders VALUES (7, 'new', NULL)")
    assert run(task(warehouse), tmp_path).result["rows_copied"] == 6
    assert _count(warehouse) == 6


def test_rows_an_append_cannot_take_are_counted_and_warned(warehouse: Path, tmp_path: Path) -> None:
    assert run(task(warehouse), tmp_path).code == 0  # watermark 2024-01-01 04:00
    query(
        warehouse,
        "INSERT INTO src__acme.orders VALUES "
        "(10, 'no timestamp', NULL), (11, 'same instant', TIMESTAMP '2024-01-01 04:00:00'), "
        "(12, 'late', TIMESTAMP '2023-06-01'), (13, 'late too', TIMESTAMP '2023-07-01'), "
        "(14, 'new', TIMESTAMP '2024-03-01')",
    )
    second = run(task(warehouse), tmp_path)
    assert second.code == 0, second.stderr
    assert second.result["rows_copied"] == 1
    meta: dict[str, Any] = second.result["metadata"]
    assert meta["write_mode"] == "append"
    assert meta["rows_not_copied"] == {
        "null_timestamp": 1,
        "at_watermark": 1,
        "older_than_watermark": 2,
    }
    assert len(meta["warnings"]) == 1
    assert "left 4 source row(s) behind" in meta["warnings"][0]
    assert "warning: incremental append left 4" in second.stderr
    decode_result(second.raw)
    # Nothing new: the same rows are still behind, none appended twice.
    third = run(task(warehouse), tmp_path)
    assert third.result["rows_copied"] == 0
    # (the watermark moved on: the row that was at it is now older than it)
    assert third.result["metadata"]["rows_not_copied"] == {
        "null_timestamp": 1,
        "at_watermark": 0,
        "older_than_watermark": 3,
    }
    assert _count(warehouse) == 6
    # A full refresh takes them all, and says nothing is behind.
    full = run(task(warehouse, strategy="full_refresh"), tmp_path)
    assert full.result["rows_copied"] == 10
    assert "rows_not_copied" not in full.result["metadata"]
    assert "warnings" not in full.result["metadata"]


def test_clean_append_reports_zero_rows_behind_and_no_warning(
    warehouse: Path, tmp_path: Path
) -> None:
    assert run(task(warehouse), tmp_path).code == 0
    query(warehouse, "INSERT INTO src__acme.orders VALUES (20, 'new', TIMESTAMP '2025-01-01')")
    second = run(task(warehouse), tmp_path)
    assert second.result["rows_copied"] == 1
    assert second.result["metadata"]["rows_not_copied"] == {
        "null_timestamp": 0,
        "at_watermark": 0,
        "older_than_watermark": 0,
    }
    assert "warnings" not in second.result["metadata"]
    assert "warning:" not in second.stderr


def test_metadata_column_added_to_an_existing_target_is_added(
    warehouse: Path, tmp_path: Path
) -> None:
    assert run(task(warehouse), tmp_path).code == 0
    query(warehouse, "INSERT INTO src__acme.orders VALUES (30, 'new', TIMESTAMP '2025-01-01')")
    doc = task(warehouse)
    doc["metadata_columns"] = [
        *doc["metadata_columns"],
        {"name": "_loaded_by", "type": "VARCHAR", "value": "'h3'"},
    ]
    second = run(doc, tmp_path)
    assert second.code == 0, second.stderr
    assert second.result["rows_copied"] == 1
    assert second.result["metadata"]["drift"] == ["add_column _loaded_by VARCHAR"]
    assert second.result["metadata"]["column_count"] == 5
    rows = query(warehouse, f"SELECT id, _loaded_by FROM {TARGET} ORDER BY id")
    assert rows[0] == (0, None)
    assert rows[-1] == (30, "h3")
    assert run(doc, tmp_path).result["rows_copied"] == 0


def test_timestamp_column_changing_to_varchar_recreates_the_target(
    warehouse: Path, tmp_path: Path
) -> None:
    assert run(task(warehouse), tmp_path).code == 0
    query(warehouse, "ALTER TABLE src__acme.orders ALTER COLUMN _fivetran_synced TYPE VARCHAR")
    # As text, '9' sorts after every ISO timestamp: a text comparison would take it.
    query(warehouse, "INSERT INTO src__acme.orders VALUES (40, 'text', '9 o''clock')")
    second = run(task(warehouse), tmp_path)
    assert second.code == 0, second.stderr
    meta = second.result["metadata"]
    assert meta["write_mode"] == "replace"
    assert "changed type family" in meta["reason"]
    assert "temporal" in meta["reason"]
    assert "string" in meta["reason"]
    assert meta["drift"] == ["recreate: _fivetran_synced TIMESTAMP -> VARCHAR is unsafe"]
    assert second.result["rows_copied"] == 6
    types = query(
        warehouse,
        "SELECT data_type FROM duckdb_columns() WHERE database_name = 'acme_wh' "
        "AND table_name = 'orders' AND column_name = '_fivetran_synced'",
    )
    assert types == [("VARCHAR",)]


def test_unknown_type_in_a_metadata_column_is_query_rejected(
    warehouse: Path, tmp_path: Path
) -> None:
    doc = task(warehouse)
    doc["metadata_columns"] = [{"name": "_x", "type": "VARCHARR", "value": "'x'"}]
    result = run(doc, tmp_path)
    assert result.code == 12, result.stderr
    assert result.result["failure_kind"] == "query-rejected"
    assert "VARCHARR" in result.result["error"]


def test_bad_memory_limit_is_query_rejected(warehouse: Path, tmp_path: Path) -> None:
    doc = task(warehouse)
    doc["adapter"]["duckdb"]["memoryLimit"] = "lots"
    result = run(doc, tmp_path)
    assert result.code == 12, result.stderr
    assert result.result["failure_kind"] == "query-rejected"
    assert "memoryLimit" in result.result["error"]
