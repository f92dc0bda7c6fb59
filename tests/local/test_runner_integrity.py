"""Issue 10 cases 1, 4 and 5 through the local executor: real runner subprocesses on real
DuckDB files, the RunOutput validated against Rocky's schema and parsed by rocky-sdk."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import duckdb
from tests.local.helpers import build_warehouse, manifest_doc, run, validate_output, write_manifest

SCHEMAS = {"src__acme__shop": ["orders"]}


def _sql(path: Path, statement: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(duckdb.connect(str(path))) as conn:
        return conn.execute(statement).fetchall()


def _target_count(tmp_path: Path) -> int:
    return int(_sql(tmp_path / "acme_wh.duckdb", "SELECT count(*) FROM staging__shop.orders")[0][0])


def _materialization(doc: dict[str, Any]) -> dict[str, Any]:
    (only,) = doc["materializations"]
    found: dict[str, Any] = only
    return found


def test_all_null_timestamps_never_duplicate_rows_across_runs(tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "w.duckdb", SCHEMAS)
    _sql(warehouse, "UPDATE src__acme__shop.orders SET _fivetran_synced = NULL")
    manifest = write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse))
    counts = []
    for _ in range(3):
        result = run(manifest)
        assert result.code == 0, result.stderr
        validate_output(result.output)
        assert _materialization(result.output)["rows_copied"] == 20
        counts.append(_target_count(tmp_path))
    assert counts == [20, 20, 20]  # before the fix: 20, 40, 60


def test_rows_left_behind_are_in_the_materialization_metadata(tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "w.duckdb", SCHEMAS)
    manifest = write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse))
    assert run(manifest).code == 0
    _sql(
        warehouse,
        "INSERT INTO src__acme__shop.orders VALUES (100, 'late', TIMESTAMP '2025-01-01'), "
        "(101, 'no time', NULL), (102, 'new', TIMESTAMP '2027-01-01')",
    )
    result = run(manifest)
    assert result.code == 0, result.stderr
    parsed = validate_output(result.output)
    meta = _materialization(result.output)["metadata"]
    assert meta["rows_not_copied"] == {
        "null_timestamp": 1,
        "at_watermark": 0,
        "older_than_watermark": 1,
    }
    assert "left 2 source row(s) behind" in meta["warnings"][0]
    assert parsed.materializations[0].rows_copied == 1
    assert _target_count(tmp_path) == 21


def test_metadata_column_added_to_the_manifest_is_added_to_the_target(tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "w.duckdb", SCHEMAS)
    assert run(write_manifest(tmp_path / "a.yaml", manifest_doc(warehouse))).code == 0
    _sql(warehouse, "INSERT INTO src__acme__shop.orders VALUES (200, 'x', TIMESTAMP '2027-01-01')")
    column = {"name": "_loaded_by", "type": "VARCHAR", "value": "'local'"}
    result = run(
        write_manifest(tmp_path / "b.yaml", manifest_doc(warehouse, metadataColumns=[column]))
    )
    assert result.code == 0, result.stderr  # before the fix: Binder Error, every table failed
    validate_output(result.output)
    assert [d["action"] for d in result.output["drift"]["actions_taken"]] == ["add_column"]
    rows = _sql(
        tmp_path / "acme_wh.duckdb",
        "SELECT count(*), count(_loaded_by) FROM staging__shop.orders",
    )
    assert rows == [(21, 1)]


def test_timestamp_turned_varchar_recreates_the_target(tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "w.duckdb", SCHEMAS)
    manifest = write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse))
    assert run(manifest).code == 0
    _sql(warehouse, "ALTER TABLE src__acme__shop.orders ALTER _fivetran_synced TYPE VARCHAR")
    result = run(manifest)
    assert result.code == 0, result.stderr
    validate_output(result.output)
    assert [d["action"] for d in result.output["drift"]["actions_taken"]] == ["recreate"]
    types = _sql(
        tmp_path / "acme_wh.duckdb",
        "SELECT data_type FROM duckdb_columns() WHERE column_name = '_fivetran_synced'",
    )
    assert types == [("VARCHAR",)]
    assert _target_count(tmp_path) == 20
