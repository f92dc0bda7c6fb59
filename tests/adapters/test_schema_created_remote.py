"""Issue 10 case 13 on the remote warehouses: each copy reports whether it created its
target schema (``metadata.created``), read from what the warehouse itself answers, and
the RunOutput's ``permissions.schemas_created`` counts each created schema once.

Through the real client libraries against the loopback fakes: Snowflake's status row
for ``CREATE SCHEMA IF NOT EXISTS`` ("Schema X successfully created." / "X already
exists, statement succeeded."), BigQuery's ``ddlOperationPerformed`` (CREATE / SKIP) of
the DDL job, and on Databricks (whose DDL answers nothing) a look at
``information_schema.schemata`` first. None of them creates a catalog: 0 catalogs.
A fresh target counts 1 schema for two tables copied into it; a second run counts 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.support.rocky_schema import check_run_output

from fakes.bigquery import bigquery_adapter, bigquery_server, service_account_json
from fakes.databricks import CA_FILE, databricks_warehouse
from fakes.snowflake import fakesnow_adapter, fakesnow_server
from rocky_operator.logic.decide import TableOutcome, TableState
from rocky_operator.logic.run_output import build_run_output
from rocky_operator.logic.tables import PlannedTable, table_key
from rocky_runner.adapters import bigquery as bq
from rocky_runner.adapters import databricks as dbx
from rocky_runner.adapters import snowflake as sf
from rocky_runner.adapters.base import CopyStats, Credentials, open_adapter
from rocky_runner.contract import (
    ENV_BIGQUERY_CREDENTIALS,
    ENV_DATABRICKS_TOKEN,
    ENV_SNOWFLAKE_PASSWORD,
    TableResult,
    TableTask,
)

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
TABLES = ("orders", "refunds")


def _task(adapter_type: str, source_schema: str, target: dict[str, str], table: str) -> TableTask:
    return TableTask.model_validate(
        {
            "asset_key": [adapter_type, "acme", "us", table],
            "source": {"schema": source_schema, "table": table},
            "target": {**target, "table": table},
            "strategy": "full_refresh",
            "adapter": {"type": adapter_type},
        }
    )


def permissions(copies: Sequence[tuple[TableTask, CopyStats]]) -> dict[str, int]:
    """The RunOutput of a run that copied these tables (as the runner reports them),
    validated against Rocky's schema and parsed with rocky-sdk; its permissions."""
    tables: list[PlannedTable] = []
    outcomes: dict[str, TableOutcome] = {}
    for task, stats in copies:
        key = table_key(task.asset_key)
        tables.append(PlannedTable(key, tuple(task.asset_key), task))
        result = TableResult(
            asset_key=task.asset_key,
            outcome="copied",
            rows_copied=stats.rows_copied,
            metadata=stats.metadata(task.strategy),
        )
        outcomes[key] = TableOutcome(
            key, TableState.COPIED, 1, result=result, started_at=T0, finished_at=T0
        )
    doc = build_run_output(
        tables, outcomes, started_at=T0, finished_at=T0 + timedelta(seconds=5), filter=""
    )
    parsed = check_run_output(doc)
    assert parsed.permissions.schemas_created == doc["permissions"]["schemas_created"]
    return dict(doc["permissions"])


def _created(stats: CopyStats) -> Any:
    return stats.metadata("full_refresh").get("created")


def _two_runs(adapter_factory: Any, tasks: Sequence[TableTask]) -> list[list[CopyStats]]:
    runs = []
    for _ in range(2):
        adapter = adapter_factory()
        try:
            runs.append([adapter.copy_table(t) for t in tasks])
        finally:
            adapter.close()
    return runs


def _assert_fresh_then_existing(tasks: Sequence[TableTask], runs: list[list[CopyStats]]) -> None:
    first, second = runs
    # The first copy into the fresh schema created it, the second found it.
    assert [_created(s) for s in first] == [
        {"catalog": False, "schema": True},
        {"catalog": False, "schema": False},
    ]
    assert [_created(s) for s in second] == [{"catalog": False, "schema": False}] * 2
    counts = {"grants_added": 0, "grants_revoked": 0, "catalogs_created": 0}
    assert permissions(list(zip(tasks, first, strict=True))) == {**counts, "schemas_created": 1}
    assert permissions(list(zip(tasks, second, strict=True))) == {**counts, "schemas_created": 0}


# --- Snowflake ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fakesnow() -> Iterator[dict[str, Any]]:
    with fakesnow_server() as kwargs:
        yield kwargs


def test_snowflake_reads_the_create_schema_status(fakesnow: dict[str, Any]) -> None:
    import snowflake.connector

    conn = snowflake.connector.connect(**fakesnow)
    try:
        for statement in (
            "CREATE DATABASE RAWC",
            "CREATE SCHEMA RAWC.SRC",
            "CREATE DATABASE WHC",
            *(f"CREATE TABLE RAWC.SRC.{t.upper()} (ID INT)" for t in TABLES),
            *(f"INSERT INTO RAWC.SRC.{t.upper()} VALUES (1), (2)" for t in TABLES),
        ):
            conn.cursor().execute(statement)
    finally:
        conn.close()
    settings = fakesnow_adapter(fakesnow["port"], "RAWC")
    target = {"catalog": "WHC", "schema": "staging__us"}
    tasks = [
        _task("snowflake", "SRC", target, t.upper()).model_copy(update={"adapter": settings})
        for t in TABLES
    ]
    credentials = Credentials({ENV_SNOWFLAKE_PASSWORD: fakesnow["password"]})
    runs = _two_runs(lambda: open_adapter(settings, credentials, timeout_seconds=30), tasks)
    _assert_fresh_then_existing(tasks, runs)


def test_snowflake_status_wording() -> None:
    assert sf.schema_created([("Schema STAGING successfully created.",)]) is True
    assert sf.schema_created([("STAGING already exists, statement succeeded.",)]) is False
    assert sf.schema_created([("Statement executed successfully.",)]) is None
    assert sf.schema_created([]) is None


# --- BigQuery ----------------------------------------------------------------------------

PROJECT = "rocky-created"


def test_bigquery_reads_the_ddl_operation_performed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        bq,
        "LIMITS",
        dataclasses.replace(
            bq.LIMITS, request_timeout_seconds=2.0, retry_seconds=1.0, job_retry_seconds=1.0
        ),
    )
    with bigquery_server(PROJECT) as (server, service):
        service.sql(f'CREATE SCHEMA "{PROJECT}".src')
        for t in TABLES:
            service.sql(f'CREATE TABLE "{PROJECT}".src.{t} AS SELECT 1 AS id UNION ALL SELECT 2')
        settings = bigquery_adapter(server.url, PROJECT, location="US")
        key = service_account_json(f"{server.url}/token", PROJECT)
        credentials = Credentials({ENV_BIGQUERY_CREDENTIALS: key})
        target = {"catalog": PROJECT, "schema": "staging__us"}
        tasks = [_task("bigquery", "src", target, t) for t in TABLES]
        runs = _two_runs(lambda: open_adapter(settings, credentials, timeout_seconds=30), tasks)
    _assert_fresh_then_existing(tasks, runs)


# --- Databricks --------------------------------------------------------------------------


def _databricks(server: Any) -> dbx.DatabricksAdapter:
    return dbx.open_adapter(
        {
            "host": "127.0.0.1",
            "httpPath": "/sql/1.0/warehouses/fake",
            "port": server.port,
            "catalog": "raw",
            "tokenSecretRef": {"name": "databricks", "key": "token"},
        },
        Credentials({ENV_DATABRICKS_TOKEN: "dapi-created"}),
        timeout_seconds=30,
        connect_overrides={"_tls_trusted_ca_file": CA_FILE},
    )


def test_databricks_looks_before_creating(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        dbx, "LIMITS", dataclasses.replace(dbx.LIMITS, retry_attempts=1, retry_duration_seconds=2.0)
    )
    with databricks_warehouse() as (server, service):
        service.sql("ATTACH ':memory:' AS raw; ATTACH ':memory:' AS wh; CREATE SCHEMA raw.src")
        for t in TABLES:
            service.sql(f"CREATE TABLE raw.src.{t} AS SELECT 1 AS id UNION ALL SELECT 2")
        target = {"catalog": "wh", "schema": "staging__us"}
        tasks = [_task("databricks", "src", target, t) for t in TABLES]
        runs = _two_runs(lambda: _databricks(server), tasks)
    _assert_fresh_then_existing(tasks, runs)
    # Two runners racing to create one schema may both say they did: counted once.
    first = runs[0]
    raced = [first[0], dataclasses.replace(first[1], schema_created=True)]
    assert [_created(s)["schema"] for s in raced] == [True, True]
    assert permissions(list(zip(tasks, raced, strict=True)))["schemas_created"] == 1
