"""The DuckDB adapter in-process on real files: drift corner cases (target already
wider, dropped source column, DECIMAL widening), empty targets, sibling catalogs,
identifier quoting, and that a failed write leaves the target as it was (one transaction)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from rocky_runner.adapters.duckdb import DuckDBAdapter
from rocky_runner.classify import classify_exception
from rocky_runner.contract import FailureKind, TableTask


@pytest.fixture
def adapter(warehouse: Path) -> Iterator[DuckDBAdapter]:
    a = DuckDBAdapter(str(warehouse), lock_timeout_seconds=5)
    yield a
    a.close()


def make_task(table: str = "orders", **extra: Any) -> TableTask:
    doc: dict[str, Any] = {
        "asset_key": ["duckdb", table],
        "source": {"schema": "src__acme", "table": table},
        "target": {"schema": "staging", "table": table},
        "adapter": {"type": "duckdb", "duckdb": {"path": "unused"}},
        **extra,
    }
    return TableTask.model_validate(doc)


def sql(adapter: DuckDBAdapter, text: str) -> list[tuple[Any, ...]]:
    # Set-up and checks may write into the main file: open it writable.
    return adapter._open(write_main=True).execute(text).fetchall()


def test_target_already_wider_takes_rows_without_drift(adapter: DuckDBAdapter) -> None:
    adapter.copy_table(make_task())
    sql(adapter, "ALTER TABLE staging.orders ALTER COLUMN id SET DATA TYPE VARCHAR")
    sql(adapter, "INSERT INTO src__acme.orders VALUES (7, 'n', TIMESTAMP '2030-01-01')")
    stats = adapter.copy_table(make_task())
    assert (stats.rows_copied, stats.drift) == (1, ())
    assert sql(adapter, "SELECT max(id) FROM staging.orders WHERE name = 'n'") == [("7",)]


def test_dropped_source_column_is_kept_in_target_as_null(adapter: DuckDBAdapter) -> None:
    adapter.copy_table(make_task())
    sql(adapter, "ALTER TABLE src__acme.orders DROP COLUMN name")
    sql(adapter, "INSERT INTO src__acme.orders VALUES (8, TIMESTAMP '2030-01-01')")
    stats = adapter.copy_table(make_task())
    assert stats.rows_copied == 1
    assert stats.column_count == 3
    assert sql(adapter, "SELECT name FROM staging.orders WHERE id = 8") == [(None,)]


def test_decimal_and_varchar_widening(adapter: DuckDBAdapter) -> None:
    sql(adapter, "ALTER TABLE src__acme.orders ADD COLUMN amount DECIMAL(10,2)")
    sql(adapter, "ALTER TABLE src__acme.orders ALTER COLUMN name SET DATA TYPE VARCHAR(10)")
    adapter.copy_table(make_task())
    sql(adapter, "ALTER TABLE src__acme.orders ALTER COLUMN amount SET DATA TYPE DECIMAL(14,4)")
    sql(adapter, "INSERT INTO src__acme.orders VALUES (9, 'w', TIMESTAMP '2030-01-01', 12345.6789)")
    stats = adapter.copy_table(make_task())
    assert [a.describe() for a in stats.drift] == [
        "widen_column amount DECIMAL(10,2) -> DECIMAL(14,4)"
    ]
    assert sql(adapter, "SELECT amount::VARCHAR FROM staging.orders WHERE id = 9") == [
        ("12345.6789",)
    ]


def test_empty_target_takes_every_row(adapter: DuckDBAdapter) -> None:
    adapter.copy_table(make_task())
    sql(adapter, "DELETE FROM staging.orders")
    stats = adapter.copy_table(make_task())
    assert (stats.write_mode, stats.rows_copied) == ("append", 5)


def test_failed_write_leaves_target_untouched(adapter: DuckDBAdapter) -> None:
    adapter.copy_table(make_task())
    sql(adapter, "ALTER TABLE src__acme.orders ADD COLUMN extra INTEGER")
    sql(adapter, "INSERT INTO src__acme.orders VALUES (10, 'x', TIMESTAMP '2030-01-01', 1)")
    sql(adapter, "ALTER TABLE staging.orders ADD COLUMN _bad VARCHAR")
    failing = make_task(
        metadata_columns=[{"name": "_bad", "type": "INTEGER", "value": "error('boom')"}]
    )
    with pytest.raises(duckdb.Error) as info:
        adapter.copy_table(failing)
    assert classify_exception(info.value) is FailureKind.QUERY_REJECTED
    columns = [r[0] for r in sql(adapter, "DESCRIBE staging.orders")]
    assert "extra" not in columns  # the ADD COLUMN was rolled back with the insert
    assert sql(adapter, "SELECT count(*) FROM staging.orders") == [(5,)]


def test_sibling_catalog_is_created_for_a_target(adapter: DuckDBAdapter, warehouse: Path) -> None:
    task = make_task().model_copy(
        update={"target": make_task().target.model_copy(update={"catalog": "Tenant WH"})}
    )
    stats = adapter.copy_table(task)
    assert stats.target_table_full_name == "Tenant WH.staging.orders"
    assert warehouse.with_name("Tenant WH.duckdb").exists()


def test_odd_identifiers_are_quoted(adapter: DuckDBAdapter) -> None:
    sql(adapter, 'CREATE TABLE src__acme."we""ird name" ("sel ect" INTEGER, "ts" TIMESTAMP)')
    sql(adapter, 'INSERT INTO src__acme."we""ird name" VALUES (1, TIMESTAMP \'2024-01-01\')')
    stats = adapter.copy_table(make_task('we"ird name', timestamp_column="ts"))
    assert stats.rows_copied == 1
    assert sql(adapter, 'SELECT "sel ect" FROM staging."we""ird name"') == [(1,)]


def test_missing_source_catalog_is_not_created(adapter: DuckDBAdapter, warehouse: Path) -> None:
    task = make_task().model_copy(
        update={"source": make_task().source.model_copy(update={"catalog": "nowhere"})}
    )
    with pytest.raises(duckdb.CatalogException) as info:
        adapter.copy_table(task)
    assert classify_exception(info.value) is FailureKind.NOT_FOUND
    assert not warehouse.with_name("nowhere.duckdb").exists()
