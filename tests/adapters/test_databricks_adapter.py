"""The Databricks adapter: its SQL in the Databricks dialect, and copies through the connector.

The statements of each strategy (full_refresh, incremental, drift add / widen,
recreate) are parsed back with sqlglot's Databricks dialect and their shape checked
(backtick quoting of awkward names, the watermark subquery, atomic replace). Then
the real connector runs the adapter's copies against the fake SQL warehouse (the
connector's own Thrift service over HTTPS, statements executed on DuckDB), so the
whole path — discovery, DESCRIBE, replace, append, drift, watermark — runs for real.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from fakes.databricks import CA_FILE, FakeWarehouse, databricks_warehouse
from fakes.http import RunningServer
from rocky_runner.adapters import databricks as dbx
from rocky_runner.adapters import sql_dialect as sql
from rocky_runner.adapters.base import Credentials
from rocky_runner.classify import classify_exception
from rocky_runner.contract import ENV_DATABRICKS_TOKEN, FailureKind, TableTask
from rocky_runner.drift import Column, DriftPlan
from rocky_runner.replication import ReplicationPlan, WriteMode

CREDS = Credentials({ENV_DATABRICKS_TOKEN: "dapi-not-a-real-token"})


def _task(strategy: str = "incremental", **extra: Any) -> TableTask:
    return TableTask.model_validate(
        {
            "asset_key": ["databricks", "acme", "us", "orders"],
            "source": {"catalog": "raw", "schema": "src__acme__us", "table": "orders"},
            "target": {"catalog": "wh", "schema": "staging__us", "table": "orders"},
            "strategy": strategy,
            "adapter": {"type": "databricks"},
            **extra,
        }
    )


# --- the dialect SQL, parsed back ----------------------------------------------------------

SOURCE = sql.QualifiedName("raw", "src__acme__us", "orders")
TARGET = sql.QualifiedName("wh", "staging`us", "order items")  # needs quoting


def _statements(mode: WriteMode, **kwargs: Any) -> list[exp.Expr]:
    task = _task(metadata_columns=[{"name": "_loaded_at", "type": "TIMESTAMP", "value": "now()"}])
    drift = DriftPlan(
        add=tuple(Column(name, type_) for name, type_ in kwargs.get("add", [])),
        widen=tuple((name, "", type_) for name, type_ in kwargs.get("widen", [])),
    )
    texts = sql.copy_statements(
        plan=ReplicationPlan(mode, "test", drift),
        source=SOURCE,
        target=TARGET,
        source_columns=["id", "amount", "_fivetran_synced"],
        timestamp_column="_fivetran_synced",
        metadata_columns=task.metadata_columns,
        dialect=dbx.DIALECT,
    )
    return [sqlglot.parse_one(t, read="databricks") for t in texts]


def test_full_refresh_is_one_atomic_create_or_replace() -> None:
    schema, replace = _statements(WriteMode.REPLACE)
    assert isinstance(schema, exp.Create)
    assert schema.args["kind"] == "SCHEMA"
    assert schema.args.get("exists")
    assert isinstance(replace, exp.Create)
    assert replace.args.get("replace")
    target = replace.this
    assert isinstance(target, exp.Table)
    assert (target.catalog, target.db, target.name) == ("wh", "staging`us", "order items")
    select = replace.expression
    assert isinstance(select, exp.Select)
    assert isinstance(select.expressions[0], exp.Star)
    assert select.expressions[1].alias == "_loaded_at"
    assert "`staging``us`.`order items`" in replace.sql(dialect="databricks")


def test_incremental_appends_rows_newer_than_the_target_watermark() -> None:
    _schema, insert = _statements(WriteMode.APPEND)
    assert isinstance(insert, exp.Insert)
    columns = [c.name for c in insert.this.expressions]
    assert columns == ["id", "amount", "_fivetran_synced", "_loaded_at"]
    select = insert.expression
    assert isinstance(select, exp.Select)
    where = select.args["where"]
    maxes = list(where.find_all(exp.Max))
    assert len(maxes) == 1
    assert all(m.this.name == "_fivetran_synced" for m in maxes)
    tables = {t.name for t in where.find_all(exp.Table)}
    assert tables == {"order items"}  # the watermark comes from the target
    assert isinstance(where.this, exp.Or)
    assert where.find(exp.GT) is not None
    # An empty target takes every row; a NULL watermark alone never does (issue 10.1).
    assert where.find(exp.Is) is None
    assert where.find(exp.Count) is not None


def test_drift_adds_and_widens_before_the_append() -> None:
    statements = _statements(
        WriteMode.APPEND, add=[("coupon code", "STRING")], widen=[("amount", "DECIMAL(20,2)")]
    )
    _schema, add, widen, insert = statements
    assert isinstance(add, exp.Alter)
    assert isinstance(widen, exp.Alter)
    column_def = add.args["actions"][0]
    assert isinstance(column_def, exp.ColumnDef)
    assert column_def.name == "coupon code"
    assert column_def.args["kind"].sql(dialect="databricks") == "STRING"
    alter_column = widen.args["actions"][0]
    assert isinstance(alter_column, exp.AlterColumn)
    assert alter_column.args["dtype"].sql(dialect="databricks") == "DECIMAL(20, 2)"
    assert isinstance(insert, exp.Insert)


def test_unsafe_change_recreates_with_create_or_replace() -> None:
    # An unsafe change is planned as REPLACE: the same single atomic statement.
    statements = _statements(WriteMode.REPLACE, add=[("ignored", "INT")])
    assert len(statements) == 2
    assert statements[1].args.get("replace")


def test_limits_replace_the_connector_defaults() -> None:
    # (runs under the short test limits of the autouse fixture below)
    kwargs = dbx.connect_kwargs(
        {"host": "https://adb-1.azuredatabricks.net/", "httpPath": "/sql/1.0/warehouses/a"},
        CREDS,
        timeout_seconds=30,
    )
    assert kwargs["server_hostname"] == "adb-1.azuredatabricks.net"
    assert kwargs["enable_telemetry"] is False
    assert kwargs["use_cloud_fetch"] is False
    assert kwargs["_retry_stop_after_attempts_count"] == dbx.LIMITS.retry_attempts
    assert kwargs["_retry_stop_after_attempts_duration"] == min(
        30, dbx.LIMITS.retry_duration_seconds
    )
    assert kwargs["_socket_timeout"] == 30


# --- copies through the connector and the fake warehouse ---------------------------------


@pytest.fixture(autouse=True)
def short_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        dbx,
        "LIMITS",
        dataclasses.replace(dbx.LIMITS, retry_attempts=1, retry_duration_seconds=2.0),
    )


@pytest.fixture
def warehouse() -> Iterator[tuple[RunningServer, FakeWarehouse]]:
    with databricks_warehouse() as (server, service):
        service.sql(
            "ATTACH ':memory:' AS raw; ATTACH ':memory:' AS wh; "
            "CREATE SCHEMA raw.src__acme__us; CREATE SCHEMA raw.src__acme__eu; "
            "CREATE TABLE raw.src__acme__us.orders "
            "(id INTEGER, amount DECIMAL(10,2), name VARCHAR, _fivetran_synced TIMESTAMP); "
            "INSERT INTO raw.src__acme__us.orders VALUES "
            "(1, 1.50, 'a', '2024-01-01'), (2, 2.50, 'b', '2024-01-02'); "
            "CREATE VIEW raw.src__acme__us.orders_v AS SELECT * FROM raw.src__acme__us.orders"
        )
        yield server, service


def _open(server: RunningServer) -> dbx.DatabricksAdapter:
    return dbx.open_adapter(
        {
            "host": "127.0.0.1",
            "httpPath": "/sql/1.0/warehouses/fake",
            "port": server.port,
            "catalog": "raw",
            "tokenSecretRef": {"name": "databricks", "key": "token"},
        },
        CREDS,
        timeout_seconds=30,
        connect_overrides={"_tls_trusted_ca_file": CA_FILE},
    )


def test_copy_full_refresh_incremental_and_drift(
    warehouse: tuple[RunningServer, FakeWarehouse],
) -> None:
    server, service = warehouse
    adapter = _open(server)
    try:
        task = _task(metadata_columns=[{"name": "_by", "type": "STRING", "value": "'rocky'"}])
        created = adapter.copy_table(task)
        service.sql(
            "INSERT INTO raw.src__acme__us.orders VALUES (3, 3.50, 'c', '2024-01-03'); "
            "ALTER TABLE raw.src__acme__us.orders ADD COLUMN coupon VARCHAR"
        )
        appended = adapter.copy_table(task)
        refreshed = adapter.copy_table(task.model_copy(update={"strategy": "full_refresh"}))
    finally:
        adapter.close()
    assert (created.write_mode, created.rows_copied) == ("replace", 2)
    assert created.target_table_full_name == "wh.staging__us.orders"
    assert (appended.write_mode, appended.rows_copied) == ("append", 1)
    assert [a.describe() for a in appended.drift] == ["add_column coupon VARCHAR"]
    assert appended.watermark is not None
    assert appended.watermark.startswith("2024-01-03")
    assert (refreshed.write_mode, refreshed.rows_copied) == ("replace", 3)
    rows = service.sql("SELECT id, _by, coupon FROM wh.staging__us.orders ORDER BY id")
    assert rows == [(1, "rocky", None), (2, "rocky", None), (3, "rocky", None)]
    assert any(s.startswith("INSERT INTO `wh`.`staging__us`.`orders`") for s in service.statements)


def test_discovery_through_information_schema(
    warehouse: tuple[RunningServer, FakeWarehouse],
) -> None:
    server, _service = warehouse
    adapter = _open(server)
    try:
        schemas = adapter.discover_schemas()
        tables = adapter.list_tables("raw", "SRC__ACME__US")  # case-insensitive, like UC
    finally:
        adapter.close()
    assert {s.schema for s in schemas} >= {"src__acme__us", "src__acme__eu"}
    assert {s.catalog for s in schemas} == {"raw"}
    assert tables == ["orders"]  # the view is not a table to replicate


def test_missing_source_table_is_not_found(
    warehouse: tuple[RunningServer, FakeWarehouse],
) -> None:
    server, _service = warehouse
    task = _task()
    task = task.model_copy(update={"source": task.source.model_copy(update={"table": "nope"})})
    adapter = _open(server)
    try:
        with pytest.raises(Exception) as info:  # noqa: PT011 - the connector's error
            adapter.copy_table(task)
    finally:
        adapter.close()
    assert type(info.value).__name__ == "ServerOperationError"
    assert classify_exception(info.value) is FailureKind.NOT_FOUND


def test_missing_token_is_auth_failed() -> None:
    with pytest.raises(Exception) as info:  # noqa: PT011
        dbx.open_adapter(
            {"host": "127.0.0.1", "httpPath": "/x", "port": 1}, Credentials({}), timeout_seconds=5
        )
    assert classify_exception(info.value) is FailureKind.AUTH_FAILED
