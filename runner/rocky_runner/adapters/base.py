"""The adapter interface every warehouse implements, and how the runner picks one.

An adapter does two things: discovery (which schemas and tables exist) and the copy
of one table per :class:`~rocky_runner.contract.TableTask`. The copy's decisions
(replace or append, which columns to add or widen, when to drop and recreate) are
made by the pure :mod:`rocky_runner.replication` and :mod:`rocky_runner.drift`
modules so every dialect behaves the same; an adapter only reads the catalog, renders
SQL in its dialect and runs it.

Adapter modules are imported lazily by :func:`open_adapter`: a DuckDB runner never
imports the Snowflake, Databricks or Google client libraries.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

from rocky_runner.contract import SECRET_ENV_NAMES, TableTask
from rocky_runner.drift import DriftAction
from rocky_runner.errors import AdapterConfigError, MissingCredentialError
from rocky_runner.replication import RowsNotCopied

#: Adapter type -> module under ``rocky_runner.adapters`` exposing ``open_adapter``.
ADAPTER_MODULES: dict[str, str] = {
    "duckdb": "rocky_runner.adapters.duckdb",
    "databricks": "rocky_runner.adapters.databricks",
    "snowflake": "rocky_runner.adapters.snowflake",
    "bigquery": "rocky_runner.adapters.bigquery",
}

#: Suffix of a variable naming a file that holds a credential (``ROCKY_X_FILE``),
#: for images that mount Secrets as files instead of environment variables.
FILE_SUFFIX = "_FILE"


class SchemaName(NamedTuple):
    """A schema found by discovery; ``catalog`` is None where the warehouse has none."""

    catalog: str | None
    schema: str


#: :attr:`Relation.kind` of a base table (what discovery plans by default).
RELATION_TABLE = "table"
#: :attr:`Relation.kind` of a view or materialized view (planned with ``includeViews``).
RELATION_VIEW = "view"


class Relation(NamedTuple):
    """A relation of a source schema as discovery sees it.

    ``kind`` is :data:`RELATION_TABLE`, :data:`RELATION_VIEW`, or the warehouse's own
    type name in lower case (e.g. BigQuery's ``external``) for a relation that is
    neither and is not replicated (discovery reports it, never drops it silently).
    """

    name: str
    kind: str


def relation_kind(warehouse_type: str, *, tables: set[str]) -> str:
    """:attr:`Relation.kind` of a warehouse's type name: ``table`` for one of ``tables``,
    ``view`` for any type ending in VIEW (views, materialized views), else the type in
    lower case with ``_`` for spaces (``EXTERNAL TABLE`` -> ``external_table``)."""
    upper = warehouse_type.strip().upper()
    if upper in tables:
        return RELATION_TABLE
    if upper.replace("_", " ").endswith("VIEW"):
        return RELATION_VIEW
    return upper.lower().replace(" ", "_") or "unknown"


def table_names(relations: list[Relation]) -> list[str]:
    """The base tables among ``relations``, in their order."""
    return [r.name for r in relations if r.kind == RELATION_TABLE]


@dataclass(frozen=True)
class Credentials:
    """Secret values by their contract variable name (``contract.SECRET_ENV_NAMES``).

    The repr never shows a value, so a Credentials object in a log or traceback
    leaks nothing; :meth:`secret_values` feeds the runner's redaction.
    """

    values: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Read each credential from ``NAME``, or from the file named by ``NAME_FILE``.

        Empty values count as absent. A ``NAME_FILE`` that cannot be read raises
        :class:`MissingCredentialError` (auth-failed) naming the variable, not the value.
        """
        env = os.environ if environ is None else environ
        found: dict[str, str] = {}
        for name in SECRET_ENV_NAMES:
            value = env.get(name)
            file_name = env.get(name + FILE_SUFFIX)
            if not value and file_name:
                try:
                    value = Path(file_name).read_text(encoding="utf-8")
                except OSError as exc:
                    raise MissingCredentialError(
                        f"credential file of {name}{FILE_SUFFIX} cannot be read: "
                        f"{type(exc).__name__}"
                    ) from None
                value = value.rstrip("\r\n")
            if value:
                found[name] = value
        return cls(found)

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def require(self, name: str) -> str:
        """The value of ``name``; :class:`MissingCredentialError` (auth-failed) when unset."""
        value = self.values.get(name)
        if not value:
            raise MissingCredentialError(
                f"credential {name} is not set (expected from a Secret via the pod's env, "
                f"or a file named by {name}{FILE_SUFFIX})"
            )
        return value

    def secret_values(self) -> list[str]:
        """Every secret value, for redaction."""
        return [v for v in self.values.values() if v]


def render_watermark(value: object) -> str | None:
    """A watermark as the result message carries it: ISO 8601 for times, else its text."""
    if value is None:
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class CopyStats:
    """What one table copy did, for the result message's counts and metadata."""

    #: Rows written to the target by this run (appended or replaced).
    rows_copied: int
    #: Fully qualified target name as the warehouse spells it (``catalog.schema.table``).
    target_table_full_name: str
    #: Columns of the target after the copy, metadata columns included.
    column_count: int
    #: ``MAX(timestamp column)`` of the target after the copy, ISO text; None when the
    #: target has no rows or no such column.
    watermark: str | None = None
    #: The write that ran: ``replace`` (create or replace) or ``append``.
    write_mode: str = "replace"
    #: Why that write (e.g. ``full_refresh``, ``target did not exist``, ``unsafe type change``).
    reason: str = ""
    #: Schema drift handled on the way (columns added, widened, table recreated).
    drift: tuple[DriftAction, ...] = ()
    #: Source rows an append could not take (NULL, equal or older timestamp); None
    #: when the write was a replace (it takes every row).
    not_copied: RowsNotCopied | None = None
    #: The timestamp column, for the warning's text.
    timestamp_column: str = ""
    #: Whether this copy created the target catalog / schema; None when the adapter
    #: cannot tell (the warehouse's answer to ``CREATE SCHEMA IF NOT EXISTS`` did not say).
    catalog_created: bool | None = None
    schema_created: bool | None = None

    @property
    def warnings(self) -> list[str]:
        """Warnings the runner logs and reports in the metadata."""
        text = self.not_copied.warning(self.timestamp_column) if self.not_copied else None
        return [text] if text else []

    def metadata(self, strategy: str) -> dict[str, Any]:
        """The result message's ``metadata`` block (DESIGN.md)."""
        meta: dict[str, Any] = {
            "strategy": strategy,
            "write_mode": self.write_mode,
            "target_table_full_name": self.target_table_full_name,
            "column_count": self.column_count,
            "watermark": self.watermark,
        }
        if self.reason:
            meta["reason"] = self.reason
        if self.drift:
            meta["drift"] = [a.describe() for a in self.drift]
        if self.not_copied is not None:
            meta["rows_not_copied"] = self.not_copied.as_metadata()
        if self.warnings:
            meta["warnings"] = self.warnings
        created = {
            name: value
            for name, value in (("catalog", self.catalog_created), ("schema", self.schema_created))
            if value is not None
        }
        if created:
            meta["created"] = created  # RunOutput permissions.*_created
        return meta


@runtime_checkable
class Adapter(Protocol):
    """One open connection to a warehouse. Not thread-safe, except :meth:`cancel`."""

    #: The adapter type, e.g. ``"duckdb"`` (first element of every asset key).
    type_name: str

    def discover_schemas(self, catalog: str | None = None) -> list[SchemaName]:
        """Every schema visible to us, or only those of ``catalog`` when given."""
        ...

    def list_tables(self, catalog: str | None, schema: str) -> list[str]:
        """Base table names of one schema, sorted (views are not replicated)."""
        ...

    def list_relations(self, catalog: str | None, schema: str) -> list[Relation]:
        """Every table and view of one schema with its kind, sorted by name."""
        ...

    def copy_table(self, task: TableTask) -> CopyStats:
        """Copy one table per the task's strategy, handling schema drift.

        Raises the connector's own exceptions (or :mod:`rocky_runner.errors`) so the
        classifier can map them; writes the target atomically where the warehouse can.
        """
        ...

    def cancel(self) -> None:
        """Abort the running statement, from another thread (the runner's timeout).

        Best effort; must not raise. The interrupted call then raises in its thread.
        """
        ...

    def close(self) -> None:
        """Release the connection (and any lock); idempotent."""
        ...


def open_adapter(
    adapter_settings: Mapping[str, Any],
    credentials: Credentials,
    *,
    timeout_seconds: float,
) -> Adapter:
    """Open the adapter named by ``adapter_settings["type"]``.

    ``adapter_settings`` is the RockyRun ``adapter`` block as JSON by alias, e.g.
    ``{"type": "duckdb", "duckdb": {"path": "...", "lockTimeoutSeconds": 60}}``. The
    adapter module is imported only now, and its ``open_adapter(block, credentials,
    timeout_seconds=...)`` receives the block of its own type (camelCase keys).
    ``timeout_seconds`` bounds connecting and every call the adapter makes.
    """
    adapter_type = adapter_settings.get("type")
    if not isinstance(adapter_type, str) or adapter_type not in ADAPTER_MODULES:
        raise AdapterConfigError(
            f"adapter.type must be one of {sorted(ADAPTER_MODULES)}, got {adapter_type!r}"
        )
    block = adapter_settings.get(adapter_type)
    if not isinstance(block, Mapping):
        raise AdapterConfigError(f"adapter.{adapter_type} settings block is missing")
    module = importlib.import_module(ADAPTER_MODULES[adapter_type])
    adapter: Adapter = module.open_adapter(block, credentials, timeout_seconds=timeout_seconds)
    return adapter
