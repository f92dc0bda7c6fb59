"""Issue 10 cases 1 and 4 on the remote adapters, through the real clients and the fakes.

Snowflake (fakesnow), BigQuery (the fake REST API) and Databricks (the fake Thrift
warehouse) each: a target whose timestamps are all NULL is replaced, never appended to
with the same rows again; rows an append cannot take (NULL, equal to the watermark,
older than it) are counted; a metadata column added to the spec is added to the target.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from fakes.bigquery import bigquery_adapter, bigquery_server, service_account_json
from fakes.databricks import CA_FILE, databricks_warehouse
from fakes.snowflake import fakesnow_adapter, fakesnow_server
from rocky_runner.adapters import bigquery as bq
from rocky_runner.adapters import databricks as dbx
from rocky_runner.adapters.base import Adapter, Credentials, open_adapter
from rocky_runner.contract import (
    ENV_BIGQUERY_CREDENTIALS,
    ENV_DATABRICKS_TOKEN,
    ENV_SNOWFLAKE_PASSWORD,
    TableTask,
)

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

_counter = itertools.count()
BQ_PROJECT = "rocky-wm"


@dataclasses.dataclass
class Remote:
    """One warehouse behind its fake: run SQL on it, open the adapter, name the tables."""

    sql: Callable[[str], list[tuple[Any, ...]]]
    open: Callable[[], Adapter]
    source: str
    target: str
    task: Callable[..., TableTask]
    #: Timestamp column as the warehouse spells it.
    ts: str = "_fivetran_synced"


@contextmanager
def _snowflake() -> Iterator[Remote]:
    import snowflake.connector

    with fakesnow_server() as kwargs:
        n = next(_counter)
        conn = snowflake.connector.connect(**kwargs)

        def run(statement: str) -> list[tuple[Any, ...]]:
            cur = conn.cursor()
            cur.execute(statement)
            return list(cur.fetchall())

        run(f"CREATE DATABASE WMRAW{n}")
        run(f"CREATE SCHEMA WMRAW{n}.SRC")
        run(f"CREATE DATABASE WMWH{n}")
        settings = fakesnow_adapter(kwargs["port"], f"WMRAW{n}")

        def task(**extra: Any) -> TableTask:
            return TableTask.model_validate(
                {
                    "asset_key": ["snowflake", "orders"],
                    "source": {"schema": "SRC", "table": "ORDERS"},
                    "target": {"catalog": f"WMWH{n}", "schema": "STAGING", "table": "ORDERS"},
                    "timestamp_column": "_FIVETRAN_SYNCED",
                    "adapter": settings,
                    **extra,
                }
            )

        try:
            yield Remote(
                sql=run,
                open=lambda: open_adapter(
                    settings,
                    Credentials({ENV_SNOWFLAKE_PASSWORD: kwargs["password"]}),
                    timeout_seconds=30,
                ),
                source=f"WMRAW{n}.SRC.ORDERS",
                target=f"WMWH{n}.STAGING.ORDERS",
                task=task,
                ts="_FIVETRAN_SYNCED",
            )
        finally:
            conn.close()


@contextmanager
def _bigquery() -> Iterator[Remote]:
    with bigquery_server(BQ_PROJECT) as (server, service):
        service.sql(f'CREATE SCHEMA "{BQ_PROJECT}".src')
        settings = bigquery_adapter(server.url, BQ_PROJECT, location="US")
        key = service_account_json(f"{server.url}/token", BQ_PROJECT)

        def task(**extra: Any) -> TableTask:
            return TableTask.model_validate(
                {
                    "asset_key": ["bigquery", "orders"],
                    "source": {"schema": "src", "table": "orders"},
                    "target": {"catalog": BQ_PROJECT, "schema": "staging", "table": "orders"},
                    "adapter": {"type": "bigquery"},
                    **extra,
                }
            )

        yield Remote(
            sql=service.sql,
            open=lambda: open_adapter(
                settings, Credentials({ENV_BIGQUERY_CREDENTIALS: key}), timeout_seconds=30
            ),
            source=f'"{BQ_PROJECT}".src.orders',
            target=f'"{BQ_PROJECT}".staging.orders',
            task=task,
        )


@contextmanager
def _databricks() -> Iterator[Remote]:
    with databricks_warehouse() as (server, service):
        service.sql("ATTACH ':memory:' AS raw; ATTACH ':memory:' AS wh; CREATE SCHEMA raw.src")

        def task(**extra: Any) -> TableTask:
            return TableTask.model_validate(
                {
                    "asset_key": ["databricks", "orders"],
                    "source": {"catalog": "raw", "schema": "src", "table": "orders"},
                    "target": {"catalog": "wh", "schema": "staging", "table": "orders"},
                    "adapter": {"type": "databricks"},
                    **extra,
                }
            )

        yield Remote(
            sql=service.sql,
            open=lambda: dbx.open_adapter(
                {
                    "host": "127.0.0.1",
                    "httpPath": "/sql/1.0/warehouses/fake",
                    "port": server.port,
                    "catalog": "raw",
                    "tokenSecretRef": {"name": "databricks", "key": "token"},
                },
                Credentials({ENV_DATABRICKS_TOKEN: "dapi-not-a-real-token"}),
                timeout_seconds=30,
                connect_overrides={"_tls_trusted_ca_file": CA_FILE},
            ),
            source="raw.src.orders",
            target="wh.staging.orders",
            task=task,
        )


REMOTES: dict[str, Callable[[], AbstractContextManager[Remote]]] = {
    "snowflake": _snowflake,
    "bigquery": _bigquery,
    "databricks": _databricks,
}


@pytest.fixture(autouse=True)
def short_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        bq,
        "LIMITS",
        dataclasses.replace(
            bq.LIMITS, request_timeout_seconds=5.0, retry_seconds=1.0, job_retry_seconds=1.0
        ),
    )
    monkeypatch.setattr(
        dbx, "LIMITS", dataclasses.replace(dbx.LIMITS, retry_attempts=1, retry_duration_seconds=5)
    )


@pytest.fixture(params=sorted(REMOTES))
def remote(request: pytest.FixtureRequest) -> Iterator[Remote]:
    with REMOTES[request.param]() as found:
        yield found


def _source(remote: Remote, rows: str) -> None:
    remote.sql(f"CREATE TABLE {remote.source} (id INTEGER, name VARCHAR, {remote.ts} TIMESTAMP)")
    remote.sql(f"INSERT INTO {remote.source} VALUES {rows}")


def _count(remote: Remote) -> int:
    return int(remote.sql(f"SELECT count(*) FROM {remote.target}")[0][0])


def test_all_null_timestamps_are_replaced_never_appended_twice(remote: Remote) -> None:
    _source(remote, "(1, 'a', NULL), (2, 'b', NULL), (3, 'c', NULL)")
    adapter = remote.open()
    try:
        runs = [adapter.copy_table(remote.task()) for _ in range(3)]
    finally:
        adapter.close()
    assert [r.rows_copied for r in runs] == [3, 3, 3]
    assert [r.write_mode for r in runs] == ["replace"] * 3
    assert all("no watermark" in r.reason for r in runs[1:])
    assert _count(remote) == 3


def test_rows_an_append_cannot_take_are_counted(remote: Remote) -> None:
    _source(remote, "(1, 'a', '2024-01-01 00:00:00'), (2, 'b', '2024-01-02 00:00:00')")
    adapter = remote.open()
    try:
        adapter.copy_table(remote.task())
        remote.sql(
            f"INSERT INTO {remote.source} VALUES (3, 'null', NULL), "
            "(4, 'same', '2024-01-02 00:00:00'), (5, 'late', '2023-01-01 00:00:00'), "
            "(6, 'new', '2024-02-01 00:00:00')"
        )
        appended = adapter.copy_table(remote.task())
    finally:
        adapter.close()
    assert (appended.write_mode, appended.rows_copied) == ("append", 1)
    meta = appended.metadata("incremental")
    assert meta["rows_not_copied"] == {
        "null_timestamp": 1,
        "at_watermark": 1,
        "older_than_watermark": 1,
    }
    assert "left 3 source row(s) behind" in meta["warnings"][0]
    assert _count(remote) == 3


def test_metadata_column_added_later_is_added_to_the_target(remote: Remote) -> None:
    _source(remote, "(1, 'a', '2024-01-01 00:00:00')")
    string_type = "STRING" if remote.task().adapter["type"] != "snowflake" else "VARCHAR"
    extra = {"metadata_columns": [{"name": "_loaded_by", "type": string_type, "value": "'h3'"}]}
    adapter = remote.open()
    try:
        adapter.copy_table(remote.task())
        remote.sql(f"INSERT INTO {remote.source} VALUES (2, 'b', '2024-02-01 00:00:00')")
        appended = adapter.copy_table(remote.task(**extra))
    finally:
        adapter.close()
    assert (appended.write_mode, appended.rows_copied) == ("append", 1)
    assert [a.describe() for a in appended.drift] == [f"add_column _loaded_by {string_type}"]
    rows = remote.sql(f"SELECT id, _loaded_by FROM {remote.target} ORDER BY id")
    assert [tuple(r) for r in rows] == [(1, None), (2, "h3")]
