"""The BigQuery adapter's copies through the real client and the fake REST API.

The client authenticates with a service-account key whose token endpoint is the
fake's ``/token`` (never application-default credentials) and runs query jobs
(jobs.insert, getQueryResults) that the fake executes on DuckDB. Checks
full_refresh, incremental with the watermark read from the target, drift (add
column, unsafe change recreates), discovery through the listing API (views left
out), a missing source table (not-found), and a bad key (auth-failed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from fakes.bigquery import FakeBigQuery, bigquery_adapter, bigquery_server, service_account_json
from fakes.http import RunningServer
from rocky_runner.adapters import bigquery as bq
from rocky_runner.adapters.base import Credentials, open_adapter
from rocky_runner.classify import classify_exception
from rocky_runner.contract import ENV_BIGQUERY_CREDENTIALS, FailureKind, TableTask

PROJECT = "rocky-test"
SOURCE = f'"{PROJECT}".src__acme__us.orders'
TARGET = f'"{PROJECT}".staging__us.orders'


@pytest.fixture(autouse=True)
def short_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        bq,
        "LIMITS",
        dataclasses.replace(
            bq.LIMITS, request_timeout_seconds=2.0, retry_seconds=1.0, job_retry_seconds=1.0
        ),
    )


@pytest.fixture
def api() -> Iterator[tuple[RunningServer, FakeBigQuery]]:
    with bigquery_server(PROJECT) as (server, service):
        service.sql(
            f'CREATE SCHEMA "{PROJECT}".src__acme__us; CREATE SCHEMA "{PROJECT}".src__acme__eu; '
            f"CREATE TABLE {SOURCE} "
            "(id BIGINT, amount DECIMAL(10,2), name VARCHAR, _fivetran_synced TIMESTAMP); "
            f"INSERT INTO {SOURCE} VALUES "
            "(1, 1.50, 'a', '2024-01-01'), (2, 2.50, 'b', '2024-01-02'); "
            f'CREATE VIEW "{PROJECT}".src__acme__us.orders_v AS SELECT * FROM {SOURCE}'
        )
        yield server, service


def _settings(server: RunningServer) -> dict[str, Any]:
    return bigquery_adapter(server.url, PROJECT, location="US")


def _open(server: RunningServer) -> bq.BigQueryAdapter:
    key = service_account_json(f"{server.url}/token", PROJECT)
    adapter = open_adapter(
        _settings(server), Credentials({ENV_BIGQUERY_CREDENTIALS: key}), timeout_seconds=30
    )
    assert isinstance(adapter, bq.BigQueryAdapter)
    return adapter


def _task(strategy: str = "incremental", **extra: Any) -> TableTask:
    return TableTask.model_validate(
        {
            "asset_key": ["bigquery", "acme", "us", "orders"],
            "source": {"schema": "src__acme__us", "table": "orders"},
            "target": {"catalog": PROJECT, "schema": "staging__us", "table": "orders"},
            "strategy": strategy,
            "adapter": {"type": "bigquery"},
            **extra,
        }
    )


def test_full_refresh_then_incremental_then_drift(api: tuple[RunningServer, FakeBigQuery]) -> None:
    server, service = api
    adapter = _open(server)
    try:
        task = _task(metadata_columns=[{"name": "_by", "type": "STRING", "value": "'rocky'"}])
        refreshed = adapter.copy_table(task.model_copy(update={"strategy": "full_refresh"}))
        service.sql(
            f"INSERT INTO {SOURCE} VALUES (3, 3.50, 'c', '2024-01-03'), "
            "(0, 0.5, 'z', '2023-01-01'); "
            f"ALTER TABLE {SOURCE} ADD COLUMN coupon VARCHAR"
        )
        appended = adapter.copy_table(task)
        again = adapter.copy_table(task)
    finally:
        adapter.close()
    assert (refreshed.write_mode, refreshed.rows_copied) == ("replace", 2)
    assert refreshed.target_table_full_name == f"{PROJECT}.staging__us.orders"
    assert (appended.write_mode, appended.rows_copied) == ("append", 1)
    assert [a.describe() for a in appended.drift] == ["add_column coupon STRING"]
    assert appended.watermark == "2024-01-03T00:00:00+00:00"
    assert again.rows_copied == 0
    assert service.sql(f"SELECT id, _by, coupon FROM {TARGET} ORDER BY id") == [
        (1, "rocky", None),
        (2, "rocky", None),
        (3, "rocky", None),
    ]
    assert any(
        q.startswith("INSERT INTO `rocky-test`.`staging__us`.`orders`") for q in service.queries
    )


def test_unsafe_type_change_recreates_the_target(api: tuple[RunningServer, FakeBigQuery]) -> None:
    server, service = api
    adapter = _open(server)
    try:
        adapter.copy_table(_task())
        service.sql(
            f'DROP VIEW "{PROJECT}".src__acme__us.orders_v; DROP TABLE {SOURCE}; '
            f"CREATE TABLE {SOURCE} (id BIGINT, amount BOOLEAN, name VARCHAR, "
            "_fivetran_synced TIMESTAMP); "
            f"INSERT INTO {SOURCE} VALUES (9, TRUE, 'n', '2024-05-01')"
        )
        stats = adapter.copy_table(_task())
    finally:
        adapter.close()
    assert (stats.write_mode, stats.reason) == ("replace", "unsafe type change")
    assert [a.kind for a in stats.drift] == ["recreate"]
    assert service.sql(f"SELECT id, amount FROM {TARGET}") == [(9, True)]


def test_discovery_uses_the_listing_api(api: tuple[RunningServer, FakeBigQuery]) -> None:
    server, _service = api
    adapter = _open(server)
    try:
        schemas = adapter.discover_schemas()
        tables = adapter.list_tables(None, "src__acme__us")
    finally:
        adapter.close()
    assert [s.schema for s in schemas] == ["src__acme__eu", "src__acme__us"]
    assert {s.catalog for s in schemas} == {PROJECT}
    assert tables == ["orders"]
    paths = [r.path for r in server.requests]
    assert f"/bigquery/v2/projects/{PROJECT}/datasets" in paths
    assert paths[0] == "/token"  # the service account's own token endpoint, nothing else
    api_calls = [r for r in server.requests if r.path.startswith("/bigquery/")]
    assert {r.headers.get("authorization") for r in api_calls} == {"Bearer fake-token"}


def test_missing_source_table_is_not_found(api: tuple[RunningServer, FakeBigQuery]) -> None:
    server, _service = api
    task = _task()
    task = task.model_copy(update={"source": task.source.model_copy(update={"table": "nope"})})
    adapter = _open(server)
    try:
        with pytest.raises(Exception) as info:  # noqa: PT011 - the client's error
            adapter.copy_table(task)
    finally:
        adapter.close()
    assert type(info.value).__name__ == "NotFound"
    assert classify_exception(info.value) is FailureKind.NOT_FOUND


def test_key_that_is_not_a_service_account_is_auth_failed(
    api: tuple[RunningServer, FakeBigQuery],
) -> None:
    server, _service = api
    secret = '{"type": "authorized_user", "private_key": "SECRET-MATERIAL"}'
    with pytest.raises(Exception) as info:  # noqa: PT011
        open_adapter(
            _settings(server), Credentials({ENV_BIGQUERY_CREDENTIALS: secret}), timeout_seconds=5
        )
    assert classify_exception(info.value) is FailureKind.AUTH_FAILED
    assert "SECRET-MATERIAL" not in str(info.value)


def test_missing_key_is_auth_failed(api: tuple[RunningServer, FakeBigQuery]) -> None:
    server, _service = api
    with pytest.raises(Exception) as info:  # noqa: PT011
        open_adapter(_settings(server), Credentials({}), timeout_seconds=5)
    assert classify_exception(info.value) is FailureKind.AUTH_FAILED
