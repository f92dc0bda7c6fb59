"""Rocky's schema-pattern discovery (``rocky_runner.discovery``) on the remote adapters.

``discover_tables`` opens the adapter from the RockyRun adapter block, lists the
schemas, keeps those matching the pattern and lists their base tables. Checked on
Snowflake (fakesnow: names stored upper case), BigQuery (datasets through the
listing API) and Databricks (information_schema through the Thrift fake).
"""

from __future__ import annotations

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
from rocky_runner.discovery import discover_tables

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")


def test_snowflake_discovery() -> None:
    with fakesnow_server() as kwargs:
        import snowflake.connector

        conn = snowflake.connector.connect(**kwargs)
        cur = conn.cursor()
        for statement in (
            "CREATE DATABASE DISC",
            "CREATE SCHEMA DISC.SRC__ACME__US",
            "CREATE SCHEMA DISC.SRC__GLOBEX__EU",
            "CREATE SCHEMA DISC.OTHER",
            "CREATE TABLE DISC.SRC__ACME__US.ORDERS (ID INT)",
            "CREATE TABLE DISC.SRC__ACME__US.CUSTOMERS (ID INT)",
            "CREATE TABLE DISC.SRC__GLOBEX__EU.ORDERS (ID INT)",
            "CREATE TABLE DISC.OTHER.ORDERS (ID INT)",
        ):
            cur.execute(statement)
        conn.close()
        found = discover_tables(
            fakesnow_adapter(kwargs["port"], "DISC", ("s", "k")),
            prefix="SRC__",
            separator="__",
            components=["tenant", "region"],
            tables=["orders"],
            credentials=Credentials({ENV_SNOWFLAKE_PASSWORD: kwargs["password"]}),
        )
    assert [(t.catalog, t.schema, t.table, t.components) for t in found] == [
        ("DISC", "SRC__ACME__US", "ORDERS", {"tenant": "ACME", "region": "US"}),
        ("DISC", "SRC__GLOBEX__EU", "ORDERS", {"tenant": "GLOBEX", "region": "EU"}),
    ]


def test_bigquery_discovery() -> None:
    with bigquery_server("rocky-test") as (server, service):
        service.sql(
            'CREATE SCHEMA "rocky-test".src__acme__us; CREATE SCHEMA "rocky-test".misc; '
            'CREATE TABLE "rocky-test".src__acme__us.orders (id BIGINT); '
            'CREATE TABLE "rocky-test".misc.orders (id BIGINT)'
        )
        found = discover_tables(
            bigquery_adapter(server.url, "rocky-test", ("s", "k")),
            prefix="src__",
            separator="__",
            components=["tenant", "region"],
            credentials=Credentials(
                {ENV_BIGQUERY_CREDENTIALS: service_account_json(f"{server.url}/token")}
            ),
        )
    assert [(t.catalog, t.schema, t.table) for t in found] == [
        ("rocky-test", "src__acme__us", "orders")
    ]


def test_databricks_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    from fakes.databricks import CA_FILE
    from rocky_runner.adapters import databricks as dbx

    # discover_tables goes through base.open_adapter: trust the fake's CA that way.
    original = dbx.connect_kwargs

    def with_ca(*args: object, **kwargs: object) -> dict[str, object]:
        found = original(*args, **kwargs)
        return {**found, "_tls_trusted_ca_file": CA_FILE}

    monkeypatch.setattr(dbx, "connect_kwargs", with_ca)
    with databricks_warehouse() as (server, service):
        service.sql(
            "ATTACH ':memory:' AS raw; CREATE SCHEMA raw.src__acme__us; "
            "CREATE TABLE raw.src__acme__us.orders (id INT)"
        )
        found = discover_tables(
            {
                "type": "databricks",
                "databricks": {
                    "host": "127.0.0.1",
                    "httpPath": "/sql/1.0/warehouses/fake",
                    "port": server.port,
                    "catalog": "raw",
                    "tokenSecretRef": {"name": "s", "key": "k"},
                },
            },
            prefix="src__",
            separator="__",
            components=["tenant", "region"],
            credentials=Credentials({ENV_DATABRICKS_TOKEN: "dapi-fake"}),
        )
    assert [(t.catalog, t.schema, t.table) for t in found] == [("raw", "src__acme__us", "orders")]
