"""The Databricks adapter, through ``databricks-sql-connector`` (Thrift over HTTPS).

Unity Catalog stores names in lower case and compares them case-insensitively,
so names are looked up case-insensitively and quoted with backticks by sqlglot's
Databricks dialect (:mod:`.sql_dialect`). Catalog literals in the discovery
queries are rendered by sqlglot too (no server-side parameters: every statement is
one self-contained string, which is also what the log shows).

Replacing a target is one ``CREATE OR REPLACE TABLE .. AS SELECT`` (atomic on
Delta); an append is one ``INSERT .. SELECT`` reading the watermark in the same
statement. Widening a column uses ``ALTER COLUMN .. TYPE``, which Delta accepts on
tables with type widening enabled; elsewhere the warehouse rejects it
(query-rejected) and a ``full_refresh`` rebuilds the table.

Call-outs are off (``enable_telemetry=False``, no cloud fetch of results from
object storage) and the connector's retry budget (30 attempts / 900 s, each sleep
at least 5 s) is replaced by :class:`DatabricksLimits`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from rocky_runner.adapters import sql_dialect as sql
from rocky_runner.adapters.base import (
    RELATION_TABLE,
    RELATION_VIEW,
    CopyStats,
    Credentials,
    Relation,
    SchemaName,
    table_names,
)
from rocky_runner.adapters.lean_import import quiet_logger, without_modules
from rocky_runner.contract import ENV_DATABRICKS_TOKEN, TableTask
from rocky_runner.drift import Column
from rocky_runner.errors import AdapterConfigError
from rocky_runner.replication import WriteMode

#: What ``databricks.sql.client`` imports only because it is installed: pyarrow (Arrow
#: fetch APIs and cloud fetch, both unused; without it the warehouse answers in Thrift
#: columns, supported since connector 4.0). pandas stays: the client imports it
#: unconditionally. See :mod:`.lean_import`.
UNUSED_EXTRAS = ("pyarrow",)

# The client and its Thrift backend now, with pyarrow hidden (``connect`` would import
# them at the first login, when pyarrow is visible again); the fork server's preload then
# covers them too. The client's "pyarrow is not installed" warning is expected.
with without_modules(*UNUSED_EXTRAS), quiet_logger("databricks.sql.client"):
    import databricks.sql.backend.thrift_backend
    import databricks.sql.client  # noqa: F401  (loaded now, for its side effect)
    from databricks import sql as databricks_sql

DIALECT: sql.DialectName = "databricks"


@dataclass(frozen=True)
class DatabricksLimits:
    """Timeouts and retry bounds the adapter sets on the connector.

    Each duration is also capped by the task's ``timeout_seconds``. The connector's
    defaults are not used: 30 attempts over up to 900 s, sleeping 5..60 s each.
    """

    socket_timeout_seconds: float = 60.0
    """Connect and read timeout of one HTTP request (connector default 900 s)."""
    retry_attempts: int = 4
    """Attempts per request, the first included (connector default 30)."""
    retry_duration_seconds: float = 120.0
    """Time budget per request, retries included (connector default 900 s)."""
    retry_delay_min_seconds: float = 1.0
    """Smallest sleep between attempts."""
    retry_delay_max_seconds: float = 5.0
    """Largest sleep between attempts; the connector does not allow less than 5 s."""


#: The limits in force; tests replace them with shorter ones.
LIMITS = DatabricksLimits()


def _literal(text: str) -> str:
    return exp.Literal.string(text).sql(dialect=DIALECT)


class DatabricksAdapter:
    """One Databricks SQL session."""

    type_name = "databricks"

    def __init__(self, connection: Any, *, default_catalog: str | None) -> None:
        self._conn = connection
        self._default_catalog = default_catalog
        self._lock = threading.Lock()
        self._running: Any = None

    # --- plumbing ---------------------------------------------------------------------

    def _query(self, statement: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        cursor = self._conn.cursor()
        with self._lock:
            self._running = cursor
        try:
            cursor.execute(statement)
            names = [d[0] for d in cursor.description or []]
            rows = [tuple(r) for r in cursor.fetchall()] if cursor.description else []
            return names, rows
        finally:
            with self._lock:
                self._running = None
            with contextlib.suppress(Exception):
                cursor.close()

    def _rows(self, statement: str) -> list[tuple[Any, ...]]:
        return self._query(statement)[1]

    def _catalog(self, catalog: str | None) -> str:
        if catalog:
            return catalog
        if self._default_catalog:
            return self._default_catalog
        rows = self._rows("SELECT current_catalog()")
        if not rows or not rows[0][0]:
            raise AdapterConfigError("no catalog: set adapter.databricks.catalog")
        return str(rows[0][0])

    def _info_schema(self, catalog: str, view: str) -> str:
        return f"{sql.quote(catalog, DIALECT)}.information_schema.{view}"

    # --- discovery --------------------------------------------------------------------

    def discover_schemas(self, catalog: str | None = None) -> list[SchemaName]:
        name = self._catalog(catalog)
        rows = self._rows(
            f"SELECT catalog_name, schema_name FROM {self._info_schema(name, 'schemata')} "
            f"WHERE lower(catalog_name) = lower({_literal(name)}) "
            "AND schema_name <> 'information_schema' ORDER BY schema_name"
        )
        return [SchemaName(str(r[0]), str(r[1])) for r in rows]

    def list_tables(self, catalog: str | None, schema: str) -> list[str]:
        return table_names(self.list_relations(catalog, schema))

    def list_relations(self, catalog: str | None, schema: str) -> list[Relation]:
        name = self._catalog(catalog)
        rows = self._rows(
            f"SELECT table_name, table_type FROM {self._info_schema(name, 'tables')} "
            f"WHERE lower(table_catalog) = lower({_literal(name)}) "
            f"AND lower(table_schema) = lower({_literal(schema)}) ORDER BY table_name"
        )
        # Unity Catalog's VIEW and MATERIALIZED_VIEW are views; every other type
        # (MANAGED, EXTERNAL, STREAMING_TABLE, ...) reads like a table.
        return [
            Relation(
                str(r[0]), RELATION_VIEW if str(r[1]).upper().endswith("VIEW") else RELATION_TABLE
            )
            for r in rows
        ]

    # --- the copy ---------------------------------------------------------------------

    def _exists(self, name: sql.QualifiedName) -> bool:
        catalog = self._catalog(name.catalog)
        rows = self._rows(
            f"SELECT count(*) FROM {self._info_schema(catalog, 'tables')} "
            f"WHERE lower(table_catalog) = lower({_literal(catalog)}) "
            f"AND lower(table_schema) = lower({_literal(name.schema)}) "
            f"AND lower(table_name) = lower({_literal(name.table or '')})"
        )
        return bool(rows and rows[0][0])

    def _schema_exists(self, name: sql.QualifiedName) -> bool:
        catalog = self._catalog(name.catalog)
        rows = self._rows(
            f"SELECT count(*) FROM {self._info_schema(catalog, 'schemata')} "
            f"WHERE lower(catalog_name) = lower({_literal(catalog)}) "
            f"AND lower(schema_name) = lower({_literal(name.schema)})"
        )
        return bool(rows and rows[0][0])

    def _columns(self, name: sql.QualifiedName) -> list[Column]:
        """The table's columns from ``DESCRIBE TABLE`` (full types, e.g. ``decimal(10,2)``)."""
        columns: list[Column] = []
        for row in self._rows(f"DESCRIBE TABLE {sql.table_sql(name, DIALECT)}"):
            col_name = str(row[0] or "").strip()
            if not col_name or col_name.startswith("#"):
                break  # partitioning / clustering sections follow the columns
            columns.append(Column(col_name, str(row[1])))
        return columns

    def copy_table(self, task: TableTask) -> CopyStats:
        source = sql.QualifiedName(
            task.source.catalog or self._default_catalog, task.source.schema_, task.source.table
        )
        target = sql.QualifiedName(
            task.target.catalog or self._default_catalog, task.target.schema_, task.target.table
        )
        source_columns = self._columns(source)  # a missing source fails here: not-found
        target_columns = self._columns(target) if self._exists(target) else None
        plan, statements, timestamp, not_copied = sql.plan_copy(
            task,
            source=source,
            target=target,
            source_columns=source_columns,
            target_columns=target_columns,
            rows=self._rows,
            dialect=DIALECT,
        )
        rows = 0
        # CREATE SCHEMA IF NOT EXISTS answers nothing either way: look first. Two copies
        # racing to create one schema may both say so; the RunOutput counts it once.
        created = not self._schema_exists(target)
        for statement in statements[:-1]:
            self._rows(statement)
        names, result = self._query(statements[-1])
        if plan.mode is WriteMode.REPLACE:
            rows = int(self._rows(sql.count_sql(target, DIALECT))[0][0])
        elif result:
            column = names.index("num_inserted_rows") if "num_inserted_rows" in names else 0
            rows = int(result[0][column] or 0)
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
        with self._lock:
            cursor = self._running
        if cursor is not None:
            with contextlib.suppress(Exception):
                cursor.cancel()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()


def connect_kwargs(
    settings: Mapping[str, Any],
    credentials: Credentials,
    *,
    timeout_seconds: float,
    limits: DatabricksLimits | None = None,
) -> dict[str, Any]:
    """The connector's keyword arguments for the ``databricks`` settings block."""
    limits = limits or LIMITS
    host = settings.get("host")
    http_path = settings.get("httpPath")
    if not isinstance(host, str) or not host:
        raise AdapterConfigError("adapter.databricks.host must be a non-empty string")
    if not isinstance(http_path, str) or not http_path:
        raise AdapterConfigError("adapter.databricks.httpPath must be a non-empty string")
    cap = max(1.0, float(timeout_seconds))
    duration = max(1.0, min(limits.retry_duration_seconds, cap))
    return {
        "server_hostname": host.removeprefix("https://").rstrip("/"),
        "http_path": http_path,
        "access_token": credentials.require(ENV_DATABRICKS_TOKEN),
        "_port": int(settings.get("port") or 443),
        "catalog": settings.get("catalog") or None,
        "enable_telemetry": False,
        "use_cloud_fetch": False,
        "user_agent_entry": "rocky-operator",
        "_socket_timeout": min(limits.socket_timeout_seconds, cap),
        "_retry_stop_after_attempts_count": max(1, limits.retry_attempts),
        "_retry_stop_after_attempts_duration": duration,
        "_retry_delay_min": limits.retry_delay_min_seconds,
        "_retry_delay_max": max(5.0, limits.retry_delay_max_seconds),
    }


def open_adapter(
    settings: Mapping[str, Any],
    credentials: Credentials,
    *,
    timeout_seconds: float,
    connect: Callable[..., Any] | None = None,
    connect_overrides: Mapping[str, Any] | None = None,
) -> DatabricksAdapter:
    """Open a session with the ``databricks`` block (camelCase keys) and the token.

    ``connect_overrides`` adds connector arguments (tests: the CA file of a local
    HTTPS endpoint, ``_tls_trusted_ca_file``).
    """
    kwargs = connect_kwargs(settings, credentials, timeout_seconds=timeout_seconds)
    kwargs.update(connect_overrides or {})
    connection = (connect or databricks_sql.connect)(**kwargs)
    return DatabricksAdapter(connection, default_catalog=kwargs.get("catalog"))
