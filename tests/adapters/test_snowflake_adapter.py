"""The Snowflake adapter's copies through the real connector and fakesnow's server.

Checks full_refresh (replace, metadata columns), incremental (first run creates,
later runs append only rows newer than the target's watermark), drift (a new source
column is added; an unsafe type change recreates the target), discovery through
INFORMATION_SCHEMA, and the failures a copy meets: a missing source table
(not-found), a statement the warehouse rejects and a syntax error (query-rejected),
a missing credential (auth-failed).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from fakes.snowflake import fakesnow_adapter, fakesnow_server
from rocky_runner.adapters import snowflake as sf
from rocky_runner.adapters.base import Credentials, open_adapter
from rocky_runner.classify import classify_exception
from rocky_runner.contract import ENV_SNOWFLAKE_PASSWORD, FailureKind, TableTask
from rocky_runner.errors import MissingCredentialError

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

_counter = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, Any]]:
    with fakesnow_server() as kwargs:
        yield kwargs


class Warehouse:
    """A fresh source and target database on the shared fakesnow server."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        import snowflake.connector

        n = next(_counter)
        self.source_db = f"RAW{n}"
        self.target_db = f"wh{n}"  # lower case on purpose: resolved as Snowflake would
        self.kwargs = kwargs
        self.conn = snowflake.connector.connect(**kwargs)
        self.sql(f"CREATE DATABASE {self.source_db}")
        self.sql(f"CREATE SCHEMA {self.source_db}.SRC__ACME__US")
        self.sql(f"CREATE DATABASE {self.target_db}")

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.execute(statement)
        return list(cur.fetchall())

    def settings(self) -> dict[str, Any]:
        return fakesnow_adapter(self.kwargs["port"], self.source_db)

    def open(self) -> sf.SnowflakeAdapter:
        adapter = open_adapter(
            self.settings(),
            Credentials({ENV_SNOWFLAKE_PASSWORD: self.kwargs["password"]}),
            timeout_seconds=30,
        )
        assert isinstance(adapter, sf.SnowflakeAdapter)
        return adapter

    def task(self, strategy: str = "incremental", **extra: Any) -> TableTask:
        return TableTask.model_validate(
            {
                "asset_key": ["snowflake", "acme", "us", "orders"],
                "source": {"schema": "SRC__ACME__US", "table": "ORDERS"},
                "target": {"catalog": self.target_db, "schema": "staging__us", "table": "orders"},
                "strategy": strategy,
                "adapter": self.settings(),
                **extra,
            }
        )

    def target_rows(self) -> list[tuple[Any, ...]]:
        return self.sql(f"SELECT * FROM {self.target_db}.STAGING__US.ORDERS ORDER BY ID")


@pytest.fixture
def wh(server: dict[str, Any]) -> Iterator[Warehouse]:
    warehouse = Warehouse(server)
    warehouse.sql(
        f"CREATE TABLE {warehouse.source_db}.SRC__ACME__US.ORDERS "
        "(ID INT, AMOUNT NUMBER(10,2), NAME VARCHAR, _FIVETRAN_SYNCED TIMESTAMP)"
    )
    warehouse.sql(
        f"INSERT INTO {warehouse.source_db}.SRC__ACME__US.ORDERS VALUES "
        "(1, 1.50, 'a', '2024-01-01 00:00:00'), (2, 2.50, 'b', '2024-01-02 00:00:00')"
    )
    yield warehouse
    warehouse.conn.close()


def test_full_refresh_replaces_target_with_metadata_columns(wh: Warehouse) -> None:
    task = wh.task(
        "full_refresh",
        metadata_columns=[{"name": "_loaded_by", "type": "VARCHAR", "value": "'rocky'"}],
    )
    adapter = wh.open()
    try:
        first = adapter.copy_table(task)
        second = adapter.copy_table(task)
    finally:
        adapter.close()
    assert (first.rows_copied, second.rows_copied) == (2, 2)
    assert second.write_mode == "replace"
    assert second.target_table_full_name == f"{wh.target_db.upper()}.STAGING__US.ORDERS"
    assert second.column_count == 5
    rows = wh.target_rows()
    assert [(r[0], r[2], r[4]) for r in rows] == [(1, "a", "rocky"), (2, "b", "rocky")]


def test_incremental_appends_only_rows_newer_than_the_watermark(wh: Warehouse) -> None:
    adapter = wh.open()
    try:
        created = adapter.copy_table(wh.task())
        wh.sql(
            f"INSERT INTO {wh.source_db}.SRC__ACME__US.ORDERS VALUES "
            "(3, 3.50, 'c', '2024-01-03 00:00:00'), (0, 0.50, 'old', '2023-12-31 00:00:00')"
        )
        appended = adapter.copy_table(wh.task())
        again = adapter.copy_table(wh.task())
    finally:
        adapter.close()
    assert (created.write_mode, created.reason, created.rows_copied) == (
        "replace",
        "target did not exist",
        2,
    )
    assert (appended.write_mode, appended.rows_copied) == ("append", 1)
    assert appended.watermark == "2024-01-03T00:00:00"
    assert again.rows_copied == 0
    assert [r[0] for r in wh.target_rows()] == [1, 2, 3]


def test_drift_adds_a_new_source_column(wh: Warehouse) -> None:
    adapter = wh.open()
    try:
        adapter.copy_table(wh.task())
        wh.sql(f"ALTER TABLE {wh.source_db}.SRC__ACME__US.ORDERS ADD COLUMN COUPON VARCHAR")
        wh.sql(
            f"INSERT INTO {wh.source_db}.SRC__ACME__US.ORDERS VALUES "
            "(3, 3.50, 'c', '2024-01-03 00:00:00', 'SAVE10')"
        )
        stats = adapter.copy_table(wh.task())
    finally:
        adapter.close()
    assert stats.write_mode == "append"
    assert [a.describe() for a in stats.drift] == ["add_column COUPON VARCHAR"]
    assert stats.column_count == 5
    assert [(r[0], r[4]) for r in wh.target_rows()] == [(1, None), (2, None), (3, "SAVE10")]


def test_drift_unsafe_type_change_recreates_the_target(wh: Warehouse) -> None:
    adapter = wh.open()
    try:
        adapter.copy_table(wh.task())
        table = f"{wh.source_db}.SRC__ACME__US.ORDERS"
        wh.sql(
            f"CREATE OR REPLACE TABLE {table} "
            "(ID INT, AMOUNT BOOLEAN, NAME VARCHAR, _FIVETRAN_SYNCED TIMESTAMP)"
        )
        wh.sql(f"INSERT INTO {table} VALUES (7, TRUE, 'g', '2024-02-01 00:00:00')")
        stats = adapter.copy_table(wh.task())
    finally:
        adapter.close()
    assert (stats.write_mode, stats.reason) == ("replace", "unsafe type change")
    assert [a.kind for a in stats.drift] == ["recreate"]
    assert [(r[0], r[1]) for r in wh.target_rows()] == [(7, True)]


def test_discovery_lists_schemas_and_base_tables_only(wh: Warehouse) -> None:
    wh.sql(f"CREATE SCHEMA {wh.source_db}.SRC__ACME__EU")
    wh.sql(f"CREATE TABLE {wh.source_db}.SRC__ACME__EU.CUSTOMERS (ID INT)")
    wh.sql(
        f"CREATE VIEW {wh.source_db}.SRC__ACME__US.ORDERS_V AS "
        f"SELECT * FROM {wh.source_db}.SRC__ACME__US.ORDERS"
    )
    adapter = wh.open()
    try:
        schemas = adapter.discover_schemas()
        tables = adapter.list_tables(None, "SRC__ACME__US")
    finally:
        adapter.close()
    assert {s.schema for s in schemas} >= {"SRC__ACME__US", "SRC__ACME__EU"}
    assert all(s.catalog == wh.source_db for s in schemas)
    assert "INFORMATION_SCHEMA" not in {s.schema for s in schemas}
    assert tables == ["ORDERS"]


def test_missing_source_table_is_not_found(wh: Warehouse) -> None:
    task = wh.task()
    task = task.model_copy(update={"source": task.source.model_copy(update={"table": "NOPE"})})
    adapter = wh.open()
    try:
        with pytest.raises(Exception) as info:  # noqa: PT011 - the connector's error
            adapter.copy_table(task)
    finally:
        adapter.close()
    assert type(info.value).__name__ == "ProgrammingError"
    assert classify_exception(info.value) is FailureKind.NOT_FOUND


def test_statement_rejected_by_the_warehouse_is_query_rejected(wh: Warehouse) -> None:
    # sqlglot accepts the expression; the warehouse rejects the unknown column in it.
    task = wh.task(metadata_columns=[{"name": "_x", "type": "INT", "value": "NO_SUCH_COLUMN + 1"}])
    adapter = wh.open()
    try:
        with pytest.raises(Exception) as info:  # noqa: PT011
            adapter.copy_table(task)
    finally:
        adapter.close()
    assert type(info.value).__module__.startswith("snowflake.connector")
    assert classify_exception(info.value) is FailureKind.QUERY_REJECTED


def test_syntax_error_is_rejected_before_running(wh: Warehouse) -> None:
    # Syntax errors the warehouse would answer with 001003 (see the classification
    # suite's syntax-error row) are caught earlier: the expression is parsed first.
    task = wh.task(metadata_columns=[{"name": "_x", "type": "INT", "value": "1 +* FROM"}])
    adapter = wh.open()
    try:
        with pytest.raises(Exception) as info:  # noqa: PT011
            adapter.copy_table(task)
    finally:
        adapter.close()
    assert classify_exception(info.value) is FailureKind.QUERY_REJECTED


def test_missing_password_is_auth_failed(wh: Warehouse) -> None:
    with pytest.raises(MissingCredentialError) as info:
        open_adapter(wh.settings(), Credentials({}), timeout_seconds=30)
    assert classify_exception(info.value) is FailureKind.AUTH_FAILED


def test_limits_bound_every_connector_timeout() -> None:
    kwargs = sf.connect_kwargs(
        {"account": "a", "user": "u", "passwordSecretRef": {"name": "s", "key": "k"}},
        Credentials({ENV_SNOWFLAKE_PASSWORD: "pw"}),
        timeout_seconds=45,
    )
    assert kwargs["network_timeout"] == 45  # capped by the task's timeout
    assert kwargs["login_timeout"] == 45
    assert kwargs["socket_timeout"] == 45
    assert kwargs["platform_detection_timeout_seconds"] == 0.0
    assert kwargs["session_parameters"]["STATEMENT_TIMEOUT_IN_SECONDS"] == 45
    assert kwargs["session_parameters"]["CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED"] is False


def test_key_pair_credential_is_converted_and_a_bad_key_is_auth_failed() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from rocky_runner.contract import ENV_SNOWFLAKE_PRIVATE_KEY

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    settings = {"account": "a", "user": "u", "privateKeySecretRef": {"name": "s", "key": "k"}}
    kwargs = sf.connect_kwargs(
        settings, Credentials({ENV_SNOWFLAKE_PRIVATE_KEY: pem}), timeout_seconds=30
    )
    assert kwargs["authenticator"] == "SNOWFLAKE_JWT"
    loaded = serialization.load_der_private_key(kwargs["private_key"], password=None)
    assert loaded.private_numbers() == key.private_numbers()
    with pytest.raises(Exception) as info:  # noqa: PT011
        sf.connect_kwargs(
            settings, Credentials({ENV_SNOWFLAKE_PRIVATE_KEY: "not a key"}), timeout_seconds=30
        )
    assert classify_exception(info.value) is FailureKind.AUTH_FAILED
    assert "not a key" not in str(info.value)


def test_key_pair_login_sends_a_jwt_signed_with_the_key() -> None:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from fakes.snowflake import snowflake_stub
    from rocky_runner.contract import ENV_SNOWFLAKE_PRIVATE_KEY

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with snowflake_stub() as stub:
        adapter = sf.open_adapter(
            {
                "account": "rocky",
                "user": "loader",
                "host": "127.0.0.1",
                "port": stub.port,
                "protocol": "http",
                "privateKeySecretRef": {"name": "snowflake", "key": "rsa_key.p8"},
            },
            Credentials({ENV_SNOWFLAKE_PRIVATE_KEY: pem}),
            timeout_seconds=10,
        )
        adapter.close()
        login = next(r for r in stub.requests if r.path.endswith("/login-request"))
    data = login.json()["data"]
    assert data["AUTHENTICATOR"] == "SNOWFLAKE_JWT"
    claims = jwt.decode(data["TOKEN"], key.public_key(), algorithms=["RS256"])
    assert claims["sub"] == "ROCKY.LOADER"
    assert pem not in login.body.decode()
