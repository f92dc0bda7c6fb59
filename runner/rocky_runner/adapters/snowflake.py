"""The Snowflake adapter, through ``snowflake-connector-python``.

Names: discovery returns names exactly as Snowflake stores them (unquoted names are
upper case). A task's source and target names are looked up in
``INFORMATION_SCHEMA`` case-insensitively, preferring an exact match, so a target
template written in lower case finds the table Snowflake stored in upper case. A
target that does not exist yet is created under the name Snowflake would give the
same unquoted identifier (upper case) when the name is a plain identifier, and
verbatim otherwise. Every identifier is then quoted (see :mod:`.sql_dialect`).
Target schemas are created when missing; a missing target database is not (that
needs account-level privileges), so the copy fails as not-found. Whether a copy
created its schema is read from the status row Snowflake answers
``CREATE SCHEMA IF NOT EXISTS`` with ("Schema X successfully created." or "X already
exists, statement succeeded."): of two copies racing to create it, one is told so.

The connector's call-outs are switched off (cloud platform detection, out-of-band
telemetry, session keep-alive) and every timeout is bounded by
:class:`SnowflakeLimits` and the task's ``timeout_seconds``: the connector's own
``network_timeout`` is infinite by default, which retries a 503 for ever.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rocky_runner.adapters import sql_dialect as sql
from rocky_runner.adapters.base import (
    CopyStats,
    Credentials,
    Relation,
    SchemaName,
    relation_kind,
    table_names,
)
from rocky_runner.adapters.lean_import import without_modules
from rocky_runner.contract import (
    ENV_SNOWFLAKE_PASSWORD,
    ENV_SNOWFLAKE_PRIVATE_KEY,
    FailureKind,
    TableTask,
)
from rocky_runner.drift import Column
from rocky_runner.errors import AdapterConfigError, ClassifiedError
from rocky_runner.replication import WriteMode

#: What ``snowflake.connector`` imports only because it is installed (pandas / pyarrow for
#: the DataFrame and Arrow fetch APIs, boto3 / botocore for AWS detection and workload
#: identity, numpy for binding numpy values): the copy uses none of them. See
#: :mod:`.lean_import`.
UNUSED_EXTRAS = ("pandas", "pyarrow", "numpy", "boto3", "botocore")

with without_modules(*UNUSED_EXTRAS):
    import snowflake.connector
    from snowflake.connector.errors import Error as SnowflakeError

DIALECT: sql.DialectName = "snowflake"
_PLAIN_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
#: Snowflake's VARCHAR without a length is VARCHAR(16777216): treat it as unbounded.
_MAX_VARCHAR = 16_777_216


@dataclass(frozen=True)
class SnowflakeLimits:
    """Timeouts and retry bounds the adapter sets on the connector.

    Each is also capped by the task's ``timeout_seconds``. The connector's defaults
    are not used: its ``network_timeout`` is infinite (a 503 is retried for ever).
    """

    login_timeout_seconds: int = 60
    """Whole login, retries included (connector default 120 s)."""
    network_timeout_seconds: int = 120
    """Each REST request with its retries (connector default: no bound). Long
    queries are not cut by it: the connector polls for their results."""
    socket_timeout_seconds: int = 60
    """Connect and read timeout of one HTTP attempt."""
    platform_detection_timeout_seconds: float = 0.0
    """Probing cloud metadata addresses at login: off."""


#: The limits in force; tests replace them with shorter ones.
LIMITS = SnowflakeLimits()


def _type_text(data_type: str, precision: Any, scale: Any, length: Any) -> str:
    """A column type from ``INFORMATION_SCHEMA.COLUMNS`` as Snowflake DDL spells it."""
    name = data_type.upper()
    if name in ("NUMBER", "DECIMAL", "NUMERIC") and precision is not None:
        return f"NUMBER({int(precision)},{int(scale or 0)})"
    if name in ("TEXT", "VARCHAR", "STRING"):
        if length is None or int(length) >= _MAX_VARCHAR:
            return "VARCHAR"
        return f"VARCHAR({int(length)})"
    return name


def schema_created(status: Sequence[Sequence[Any]]) -> bool | None:
    """Whether ``CREATE SCHEMA IF NOT EXISTS`` created the schema, from the status row
    Snowflake answers it with; None for a status worded otherwise."""
    text = str(status[0][0]).strip() if status and status[0] else ""
    if text.endswith("successfully created."):
        return True
    if text.endswith("already exists, statement succeeded."):
        return False
    return None


def target_identifier(name: str) -> str:
    """The name Snowflake gives ``name`` as an unquoted identifier, when it is plain."""
    return name.upper() if _PLAIN_IDENTIFIER.fullmatch(name) else name


class SnowflakeAdapter:
    """One Snowflake session."""

    type_name = "snowflake"

    def __init__(self, connection: Any, *, default_database: str | None) -> None:
        self._conn = connection
        self._default_database = default_database

    # --- plumbing ---------------------------------------------------------------------

    def _rows(self, statement: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with contextlib.closing(self._conn.cursor()) as cur:
            cur.execute(statement, params)
            return list(cur.fetchall())

    def _execute(self, statement: str) -> int:
        with contextlib.closing(self._conn.cursor()) as cur:
            cur.execute(statement)
            return int(cur.rowcount or 0)

    def _database(self, catalog: str | None) -> str:
        """The database to use: Snowflake resolves a plain name as upper case."""
        if catalog:
            return target_identifier(catalog)
        if self._default_database:
            return target_identifier(self._default_database)
        row = self._rows("SELECT CURRENT_DATABASE()")
        if not row or not row[0][0]:
            raise AdapterConfigError(
                "no database: set adapter.snowflake.database or the task's catalog"
            )
        return str(row[0][0])

    def _info_schema(self, database: str, view: str) -> str:
        return f"{sql.quote(database, DIALECT)}.INFORMATION_SCHEMA.{view}"

    # --- discovery --------------------------------------------------------------------

    def discover_schemas(self, catalog: str | None = None) -> list[SchemaName]:
        database = self._database(catalog)
        rows = self._rows(
            f"SELECT CATALOG_NAME, SCHEMA_NAME FROM {self._info_schema(database, 'SCHEMATA')} "
            "WHERE SCHEMA_NAME <> 'INFORMATION_SCHEMA' ORDER BY SCHEMA_NAME"
        )
        return [SchemaName(str(r[0]), str(r[1])) for r in rows]

    def list_tables(self, catalog: str | None, schema: str) -> list[str]:
        return table_names(self.list_relations(catalog, schema))

    def list_relations(self, catalog: str | None, schema: str) -> list[Relation]:
        database = self._database(catalog)
        rows = self._rows(
            f"SELECT TABLE_NAME, TABLE_TYPE FROM {self._info_schema(database, 'TABLES')} "
            "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
            (schema,),
        )
        # BASE TABLE is a table; VIEW and MATERIALIZED VIEW are views; anything else
        # (EXTERNAL TABLE, EVENT TABLE, ...) is reported by its own type.
        return [Relation(str(r[0]), relation_kind(str(r[1]), tables={"BASE TABLE"})) for r in rows]

    # --- the copy ---------------------------------------------------------------------

    def _resolve(self, database: str, schema: str, table: str) -> sql.QualifiedName | None:
        """The table's exact stored name (case-insensitive lookup), or None if absent."""
        rows = self._rows(
            f"SELECT TABLE_SCHEMA, TABLE_NAME FROM {self._info_schema(database, 'TABLES')} "
            "WHERE UPPER(TABLE_SCHEMA) = UPPER(%s) AND UPPER(TABLE_NAME) = UPPER(%s)",
            (schema, table),
        )
        if not rows:
            return None
        exact = [r for r in rows if r[0] == schema and r[1] == table]
        found = (exact or rows)[0]
        return sql.QualifiedName(database, str(found[0]), str(found[1]))

    def _columns(self, name: sql.QualifiedName) -> list[Column]:
        rows = self._rows(
            "SELECT COLUMN_NAME, DATA_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE, "
            "CHARACTER_MAXIMUM_LENGTH FROM "
            f"{self._info_schema(name.catalog or '', 'COLUMNS')} "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (name.schema, name.table),
        )
        return [Column(str(r[0]), _type_text(str(r[1]), r[2], r[3], r[4])) for r in rows]

    def copy_table(self, task: TableTask) -> CopyStats:
        source_db = self._database(task.source.catalog)
        source = self._resolve(source_db, task.source.schema_, task.source.table)
        if source is None:
            # Let Snowflake say it (002003 / 42S02, not-found) in its own words.
            missing = sql.QualifiedName(source_db, task.source.schema_, task.source.table)
            self._rows(f"SELECT * FROM {sql.table_sql(missing, DIALECT)} LIMIT 0")
            raise ClassifiedError(
                f"source table {missing.dotted()} is not in INFORMATION_SCHEMA",
                kind=FailureKind.NOT_FOUND,
            )
        source_columns = self._columns(source)

        target_db = self._database(task.target.catalog)
        target = self._resolve(target_db, task.target.schema_, task.target.table)
        target_columns = self._columns(target) if target is not None else None
        if target is None:
            target = sql.QualifiedName(
                target_db,
                target_identifier(task.target.schema_),
                target_identifier(task.target.table),
            )
        plan, statements, timestamp, not_copied = sql.plan_copy(
            task,
            source=source,
            target=target,
            source_columns=source_columns,
            target_columns=target_columns,
            rows=self._rows,
            dialect=DIALECT,
        )
        created = schema_created(self._rows(statements[0]))  # CREATE SCHEMA IF NOT EXISTS
        for statement in statements[1:-1]:
            self._execute(statement)
        rows = self._execute(statements[-1])
        if plan.mode is WriteMode.REPLACE:
            rows = int(self._rows(sql.count_sql(target, DIALECT))[0][0])
        return sql.copy_stats(
            plan,
            target=target,
            rows=rows,
            final_columns=[c.name for c in self._columns(target)],
            timestamp_column=timestamp,
            scalar=lambda query: self._rows(query)[0][0],
            dialect=DIALECT,
            not_copied=not_copied,
            schema_created=created,
        )

    # --- lifecycle --------------------------------------------------------------------

    def cancel(self) -> None:
        # Best effort from the watchdog thread: abort the session's running queries.
        with contextlib.suppress(Exception):
            self._conn.cursor().execute("SELECT SYSTEM$CANCEL_ALL_QUERIES(CURRENT_SESSION())")

    def close(self) -> None:
        with contextlib.suppress(SnowflakeError, OSError):
            self._conn.close()


def _private_key_der(pem: str) -> bytes:
    """A PEM private key (unencrypted PKCS#8 / PKCS#1) as the DER bytes the connector takes."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError) as exc:
        # Never echo the key: only what is wrong with it.
        raise ClassifiedError(
            f"{ENV_SNOWFLAKE_PRIVATE_KEY} is not an unencrypted PEM private key "
            f"({type(exc).__name__})",
            kind=FailureKind.AUTH_FAILED,
        ) from None
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _setting(settings: Mapping[str, Any], key: str, *, required: bool = False) -> Any:
    value = settings.get(key)
    if required and (not isinstance(value, str) or not value):
        raise AdapterConfigError(f"adapter.snowflake.{key} must be a non-empty string")
    return value


def connect_kwargs(
    settings: Mapping[str, Any],
    credentials: Credentials,
    *,
    timeout_seconds: float,
    limits: SnowflakeLimits | None = None,
) -> dict[str, Any]:
    """The connector's keyword arguments for the ``snowflake`` settings block."""
    limits = limits or LIMITS
    cap = max(1, int(timeout_seconds))
    kwargs: dict[str, Any] = {
        "account": _setting(settings, "account", required=True),
        "user": _setting(settings, "user", required=True),
        "login_timeout": min(limits.login_timeout_seconds, cap),
        "network_timeout": min(limits.network_timeout_seconds, cap),
        "socket_timeout": min(limits.socket_timeout_seconds, cap),
        "platform_detection_timeout_seconds": limits.platform_detection_timeout_seconds,
        "client_session_keep_alive": False,
        "application": "rocky-operator",
        "session_parameters": {
            "CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False,
            "CLIENT_TELEMETRY_ENABLED": False,
            "STATEMENT_TIMEOUT_IN_SECONDS": cap,
            "QUOTED_IDENTIFIERS_IGNORE_CASE": False,
        },
    }
    for key in ("warehouse", "role", "database", "host"):
        if settings.get(key):
            kwargs[key] = settings[key]
    if settings.get("port"):
        kwargs["port"] = int(settings["port"])
    protocol = settings.get("protocol", "https")
    if protocol not in ("https", "http"):
        raise AdapterConfigError("adapter.snowflake.protocol must be https or http")
    kwargs["protocol"] = protocol
    if settings.get("privateKeySecretRef"):
        kwargs["authenticator"] = "SNOWFLAKE_JWT"
        kwargs["private_key"] = _private_key_der(credentials.require(ENV_SNOWFLAKE_PRIVATE_KEY))
    else:
        kwargs["password"] = credentials.require(ENV_SNOWFLAKE_PASSWORD)
    return kwargs


def open_adapter(
    settings: Mapping[str, Any],
    credentials: Credentials,
    *,
    timeout_seconds: float,
    connect: Callable[..., Any] | None = None,
    backoff_policy: Callable[[], Iterator[int]] | None = None,
) -> SnowflakeAdapter:
    """Log in to Snowflake with the ``snowflake`` block (camelCase keys) and the credentials.

    ``backoff_policy`` replaces the connector's sleeps between retries (tests pass one
    without sleeps); the retry budget itself stays bounded by :data:`LIMITS`.
    """
    # The connector also reads this at login: no probing of cloud metadata addresses.
    os.environ.setdefault("SNOWFLAKE_DISABLE_PLATFORM_DETECTION", "true")
    kwargs = connect_kwargs(settings, credentials, timeout_seconds=timeout_seconds)
    if backoff_policy is not None:
        kwargs["backoff_policy"] = backoff_policy
    connection = (connect or snowflake.connector.connect)(**kwargs)
    return SnowflakeAdapter(connection, default_database=kwargs.get("database"))
