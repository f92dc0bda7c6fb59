"""Views and listed names in discovery on the remote adapters (issue 10, cases 7 and 8).

Each adapter's own discovery query runs against its loopback fake: a view is left out
by default and reported as excluded (reason ``view``), planned like a table with
``include_views``, and a name of an explicit ``tables`` list the schema lacks is
excluded as ``missing_from_source`` (per matching schema). Snowflake through fakesnow,
BigQuery through the tables.list API of the fake, Databricks through information_schema
over the Thrift fake.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from fakes.bigquery import bigquery_adapter, bigquery_server, service_account_json
from fakes.databricks import databricks_warehouse
from fakes.snowflake import fakesnow_adapter, fakesnow_server
from rocky_runner.adapters.base import Credentials
from rocky_runner.contract import (
    ENV_BIGQUERY_CREDENTIALS,
    ENV_DATABRICKS_TOKEN,
    ENV_SNOWFLAKE_PASSWORD,
)
from rocky_runner.discovery import Discovery, discover

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

#: discover(**kwargs) against one warehouse holding schema S with table ORDERS and view
#: V_ORDERS (names in the warehouse's case), and an unrelated schema.
Discoverer = Callable[..., Discovery]

_DATABASES = itertools.count()


def _snowflake_tables_with_views(monkeypatch: pytest.MonkeyPatch) -> None:
    """Snowflake's INFORMATION_SCHEMA.TABLES lists views too (TABLE_TYPE ``VIEW``); the
    fakesnow release we use lists only base tables. Make its per-database TABLES view
    include DuckDB's views, so the adapter's real query is checked against the real
    shape (applies to databases created afterwards)."""
    from string import Template

    from fakesnow import info_schema

    original = info_schema.SQL_CREATE_INFORMATION_SCHEMA_TABLES_VIEW.template
    source = "from duckdb_tables tables"
    assert source in original
    assert "'BASE TABLE' AS \"TABLE_TYPE\"" in original
    patched = original.replace(
        source,
        "from (select database_name, schema_name, table_name, estimated_size, "
        "'BASE TABLE' as _kind from duckdb_tables() union all "
        "select database_name, schema_name, view_name, NULL, 'VIEW' "
        "from duckdb_views() where not internal) tables",
    ).replace("'BASE TABLE' AS \"TABLE_TYPE\"", 'tables._kind AS "TABLE_TYPE"')
    monkeypatch.setattr(info_schema, "SQL_CREATE_INFORMATION_SCHEMA_TABLES_VIEW", Template(patched))


@contextmanager
def snowflake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Discoverer]:
    _snowflake_tables_with_views(monkeypatch)
    db = f"VIEWDISC{next(_DATABASES)}"  # fakesnow keeps databases for the process
    with fakesnow_server() as kwargs:
        import snowflake.connector

        conn = snowflake.connector.connect(**kwargs)
        cur = conn.cursor()
        for statement in (
            f"CREATE DATABASE {db}",
            f"CREATE SCHEMA {db}.SRC__ACME__US",
            f"CREATE SCHEMA {db}.OTHER",
            f"CREATE TABLE {db}.SRC__ACME__US.ORDERS (ID INT)",
            f"CREATE VIEW {db}.SRC__ACME__US.V_ORDERS AS SELECT ID FROM {db}.SRC__ACME__US.ORDERS",
            f"CREATE VIEW {db}.OTHER.V_ORDERS AS SELECT 1 AS ID",
        ):
            cur.execute(statement)
        conn.close()
        settings = fakesnow_adapter(kwargs["port"], db, ("s", "k"))
        credentials = Credentials({ENV_SNOWFLAKE_PASSWORD: kwargs["password"]})
        yield lambda **kw: discover(settings, credentials=credentials, **_pattern("SRC__"), **kw)


@contextmanager
def bigquery() -> Iterator[Discoverer]:
    with bigquery_server("rocky-test") as (server, service):
        service.sql(
            'CREATE SCHEMA "rocky-test".src__acme__us; CREATE SCHEMA "rocky-test".other; '
            'CREATE TABLE "rocky-test".src__acme__us.orders (id BIGINT); '
            'CREATE VIEW "rocky-test".src__acme__us.v_orders AS '
            'SELECT id FROM "rocky-test".src__acme__us.orders; '
            'CREATE VIEW "rocky-test".other.v_orders AS SELECT 1 AS id'
        )
        settings = bigquery_adapter(server.url, "rocky-test", ("s", "k"))
        credentials = Credentials(
            {ENV_BIGQUERY_CREDENTIALS: service_account_json(f"{server.url}/token")}
        )
        yield lambda **kw: discover(settings, credentials=credentials, **_pattern("src__"), **kw)


@contextmanager
def databricks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Discoverer]:
    from fakes.databricks import CA_FILE
    from rocky_runner.adapters import databricks as dbx

    original = dbx.connect_kwargs

    def with_ca(*args: object, **kwargs: object) -> dict[str, object]:
        return {**original(*args, **kwargs), "_tls_trusted_ca_file": CA_FILE}

    monkeypatch.setattr(dbx, "connect_kwargs", with_ca)
    with databricks_warehouse() as (server, service):
        service.sql(
            "ATTACH ':memory:' AS raw; CREATE SCHEMA raw.src__acme__us; CREATE SCHEMA raw.other; "
            "CREATE TABLE raw.src__acme__us.orders (id INT); "
            "CREATE VIEW raw.src__acme__us.v_orders AS SELECT id FROM raw.src__acme__us.orders; "
            "CREATE VIEW raw.other.v_orders AS SELECT 1 AS id"
        )
        settings = {
            "type": "databricks",
            "databricks": {
                "host": "127.0.0.1",
                "httpPath": "/sql/1.0/warehouses/fake",
                "port": server.port,
                "catalog": "raw",
                "tokenSecretRef": {"name": "s", "key": "k"},
            },
        }
        credentials = Credentials({ENV_DATABRICKS_TOKEN: "dapi-fake"})
        yield lambda **kw: discover(settings, credentials=credentials, **_pattern("src__"), **kw)


def _pattern(prefix: str) -> dict[str, Any]:
    return {"prefix": prefix, "separator": "__", "components": ["tenant", "region"]}


@pytest.fixture(params=["snowflake", "bigquery", "databricks"])
def warehouse(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    opened = {
        "snowflake": lambda: snowflake(monkeypatch),
        "bigquery": bigquery,
        "databricks": lambda: databricks(monkeypatch),
    }[request.param]()
    with opened as discoverer:
        yield discoverer


def _tables(found: Discovery) -> list[str]:
    return [t.table.lower() for t in found.tables]


def _excluded(found: Discovery) -> list[tuple[str, str, str]]:
    return [(e.schema.lower(), e.table.lower(), e.reason) for e in found.excluded]


def test_views_are_skipped_by_default_and_reported(warehouse: Discoverer) -> None:
    """The default (as Rocky): the view is not planned; it is reported as excluded with
    reason ``view``, only in a schema the pattern matches."""
    found = warehouse()
    assert _tables(found) == ["orders"]
    assert _excluded(found) == [("src__acme__us", "v_orders", "view")]
    assert found.excluded[0].components == {
        "tenant": found.tables[0].components["tenant"],
        "region": found.tables[0].components["region"],
    }


def test_include_views_plans_views_like_tables(warehouse: Discoverer) -> None:
    found = warehouse(include_views=True)
    assert _tables(found) == ["orders", "v_orders"]
    assert found.excluded == []


def test_listed_names_missing_or_views_are_excluded_with_their_reason(
    warehouse: Discoverer,
) -> None:
    """An explicit list: the existing table is planned, the view and the unknown name are
    excluded (``view``, ``missing_from_source``) under the listed spelling."""
    found = warehouse(tables=["orders", "v_orders", "no_such_table"])
    assert _tables(found) == ["orders"]
    assert sorted(_excluded(found)) == [
        ("src__acme__us", "no_such_table", "missing_from_source"),
        ("src__acme__us", "v_orders", "view"),
    ]
