"""Replication SQL for the remote warehouses, generated with sqlglot per dialect.

The statements are built as sqlglot expression trees and rendered in the
warehouse's own dialect (``snowflake``, ``databricks``, ``bigquery``), so every
identifier is quoted by the dialect's rules (double quotes, backticks, escaped
embedded quotes) and nothing is spliced together as text. Column types read from
the warehouse's catalog and the task's metadata-column expressions are parsed in
the same dialect: an expression that does not parse is rejected before anything
runs (query-rejected).

Imported only by the Databricks, Snowflake and BigQuery adapters, so a DuckDB runner
never pays for sqlglot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from rocky_runner.adapters.base import CopyStats, render_watermark
from rocky_runner.contract import MetadataColumn, TableTask
from rocky_runner.drift import Column
from rocky_runner.errors import ReplicationError
from rocky_runner.replication import (
    ReplicationPlan,
    RowsNotCopied,
    TimestampCounts,
    WriteMode,
    plan_replication,
    settle_append,
)

DialectName = Literal["snowflake", "databricks", "bigquery"]

#: Alias of the source table in the incremental INSERT.
SOURCE_ALIAS = "s"


@dataclass(frozen=True)
class QualifiedName:
    """A table (or schema, with ``table`` None) as exact name parts, outermost first."""

    catalog: str | None
    schema: str
    table: str | None = None

    def parts(self) -> list[str]:
        return [p for p in (self.catalog, self.schema, self.table) if p is not None]

    def dotted(self) -> str:
        """Unquoted ``catalog.schema.table`` for messages and the result metadata."""
        return ".".join(self.parts())


def _ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def table_expr(name: QualifiedName) -> exp.Table:
    if name.table is None:
        raise ValueError("a table name needs its table part")
    return exp.Table(
        this=_ident(name.table),
        db=_ident(name.schema),
        catalog=_ident(name.catalog) if name.catalog is not None else None,
    )


def quote(name: str, dialect: DialectName) -> str:
    """One identifier, quoted for ``dialect``."""
    return _ident(name).sql(dialect=dialect)


def table_sql(name: QualifiedName, dialect: DialectName) -> str:
    """A fully qualified, quoted table name."""
    return table_expr(name).sql(dialect=dialect)


def data_type(text: str, dialect: DialectName) -> exp.DataType:
    """A column type as the catalog or the task spells it, parsed in ``dialect``."""
    try:
        return exp.DataType.build(text, dialect=dialect, udt=True)
    except (ParseError, ValueError) as exc:
        raise ReplicationError(f"type {text!r} is not a {dialect} type: {exc}") from None


def _value(text: str, dialect: DialectName) -> exp.Expr:
    try:
        parsed = sqlglot.parse_one(text, read=dialect)
    except ParseError as exc:
        raise ReplicationError(
            f"metadata column value {text!r} is not a {dialect} expression: {exc}"
        ) from None
    return parsed


def metadata_select(columns: Sequence[MetadataColumn], dialect: DialectName) -> list[exp.Expr]:
    """``CAST((value) AS type) AS "name"`` for each metadata column."""
    return [
        exp.alias_(
            exp.Cast(this=_value(m.value, dialect), to=data_type(m.type, dialect)),
            _ident(m.name),
        )
        for m in columns
    ]


def create_schema_sql(schema: QualifiedName, dialect: DialectName) -> str:
    """``CREATE SCHEMA IF NOT EXISTS`` (a BigQuery dataset, a Databricks / Snowflake schema)."""
    target = exp.Table(
        this=_ident(schema.schema),
        db=_ident(schema.catalog) if schema.catalog is not None else None,
    )
    return exp.Create(this=target, kind="SCHEMA", exists=True).sql(dialect=dialect)


def replace_sql(
    target: QualifiedName,
    source: QualifiedName,
    metadata: Sequence[MetadataColumn],
    dialect: DialectName,
) -> str:
    """Replace the target with every source row plus the metadata columns, atomically.

    ``CREATE OR REPLACE TABLE .. AS SELECT`` swaps the table in one statement on all
    three warehouses: readers see the old rows or the new ones, never none.
    """
    select = exp.select(exp.Star(), *metadata_select(metadata, dialect)).from_(table_expr(source))
    statement = exp.Create(this=table_expr(target), kind="TABLE", expression=select, replace=True)
    return statement.sql(dialect=dialect)


def watermark_subquery(target: QualifiedName, timestamp_column: str) -> exp.Subquery:
    return (
        exp.select(exp.Max(this=exp.column(_ident(timestamp_column))))
        .from_(table_expr(target))
        .subquery()
    )


def append_sql(
    target: QualifiedName,
    source: QualifiedName,
    source_columns: Sequence[str],
    timestamp_column: str,
    metadata: Sequence[MetadataColumn],
    dialect: DialectName,
) -> str:
    """Append the source rows newer than the target's ``MAX(timestamp_column)``.

    The watermark is read inside the same statement, so a concurrent reader of the
    target never sees half an append. An empty target takes every row; a target with
    rows but a NULL watermark takes none here (:func:`settle_append` replaces it first).
    """
    ts = exp.column(_ident(timestamp_column), table=_ident(SOURCE_ALIAS))
    empty_target = exp.EQ(
        this=exp.select(exp.Count(this=exp.Star())).from_(table_expr(target)).subquery(),
        expression=exp.Literal.number(0),
    )
    newer = exp.or_(
        exp.GT(this=ts, expression=watermark_subquery(target, timestamp_column)),
        empty_target,
    )
    values: list[exp.Expr] = [
        exp.column(_ident(c), table=_ident(SOURCE_ALIAS)) for c in source_columns
    ]
    values.extend(metadata_select(metadata, dialect))
    select = (
        exp.select(*values)
        .from_(exp.alias_(table_expr(source), _ident(SOURCE_ALIAS), table=True))
        .where(newer)
    )
    names = [*source_columns, *(m.name for m in metadata)]
    statement = exp.insert(select, table_expr(target), columns=[_ident(n) for n in names])
    return statement.sql(dialect=dialect)


def target_state_sql(target: QualifiedName, timestamp_column: str, dialect: DialectName) -> str:
    """``SELECT COUNT(*), COUNT(ts) FROM target``: what :func:`settle_append` needs."""
    return (
        exp.select(exp.Count(this=exp.Star()), exp.Count(this=exp.column(_ident(timestamp_column))))
        .from_(table_expr(target))
        .sql(dialect=dialect)
    )


def timestamp_counts_sql(
    table: QualifiedName, target: QualifiedName, timestamp_column: str, dialect: DialectName
) -> str:
    """Rows of ``table`` with a NULL timestamp, one equal to the target's watermark, and
    one older than it (``SUM(CASE ..)``: the same in every dialect)."""
    ts = exp.column(_ident(timestamp_column))

    def count_where(condition: exp.Expr) -> exp.Expr:
        case = exp.Case(ifs=[exp.If(this=condition, true=exp.Literal.number(1))])
        return exp.Sum(this=case.else_(exp.Literal.number(0)))

    mark = watermark_subquery(target, timestamp_column)
    return (
        exp.select(
            count_where(exp.Is(this=ts.copy(), expression=exp.Null())),
            count_where(exp.EQ(this=ts.copy(), expression=mark.copy())),
            count_where(exp.LT(this=ts.copy(), expression=mark.copy())),
        )
        .from_(table_expr(table))
        .sql(dialect=dialect)
    )


def settle_append_remote(
    plan: ReplicationPlan,
    *,
    source: QualifiedName,
    target: QualifiedName,
    timestamp_column: str,
    rows: Callable[[str], Sequence[Sequence[Any]]],
    dialect: DialectName,
) -> tuple[ReplicationPlan, RowsNotCopied | None]:
    """Read the target's state through ``rows`` (one query, its rows): an append into a
    target with rows but no watermark becomes a replace; a remaining append counts the
    source rows it cannot take (:class:`~rocky_runner.replication.RowsNotCopied`)."""
    if plan.mode is not WriteMode.APPEND:
        return plan, None
    state = rows(target_state_sql(target, timestamp_column, dialect))
    count, timestamped = (state[0][0], state[0][1]) if state else (0, 0)
    plan = settle_append(plan, target_rows=int(count or 0), timestamped_rows=int(timestamped or 0))
    if plan.mode is not WriteMode.APPEND:
        return plan, None

    def counts(table: QualifiedName) -> TimestampCounts:
        found = rows(timestamp_counts_sql(table, target, timestamp_column, dialect))
        values = found[0] if found else ()
        return TimestampCounts(*(int(v or 0) for v in values))

    return plan, RowsNotCopied.between(counts(source), counts(target))


def add_column_sql(target: QualifiedName, column: str, type_text: str, dialect: DialectName) -> str:
    """``ALTER TABLE .. ADD COLUMN``: a new source column (existing rows get NULL)."""
    action = exp.ColumnDef(this=_ident(column), kind=data_type(type_text, dialect))
    return exp.Alter(this=table_expr(target), kind="TABLE", actions=[action]).sql(dialect=dialect)


def widen_column_sql(
    target: QualifiedName, column: str, type_text: str, dialect: DialectName
) -> str:
    """``ALTER TABLE .. ALTER COLUMN .. (SET DATA) TYPE``: a safe widening in place."""
    action = exp.AlterColumn(this=_ident(column), dtype=data_type(type_text, dialect))
    return exp.Alter(this=table_expr(target), kind="TABLE", actions=[action]).sql(dialect=dialect)


def max_sql(target: QualifiedName, column: str, dialect: DialectName) -> str:
    """``SELECT MAX(column) FROM target``: the watermark after the copy."""
    return (
        exp.select(exp.Max(this=exp.column(_ident(column))))
        .from_(table_expr(target))
        .sql(dialect=dialect)
    )


def count_sql(target: QualifiedName, dialect: DialectName) -> str:
    return exp.select(exp.Count(this=exp.Star())).from_(table_expr(target)).sql(dialect=dialect)


# --- one copy, for the warehouses driven by SQL text (Snowflake, BigQuery, Databricks) ------


def column_spelling(columns: Sequence[str], name: str) -> str:
    """``name`` as the warehouse spells it among ``columns`` (identifiers compare
    case-insensitively); ``name`` itself when it is not there."""
    return next((c for c in columns if c.casefold() == name.casefold()), name)


def copy_statements(
    *,
    plan: ReplicationPlan,
    source: QualifiedName,
    target: QualifiedName,
    source_columns: Sequence[str],
    timestamp_column: str,
    metadata_columns: Sequence[MetadataColumn],
    dialect: DialectName,
) -> list[str]:
    """The statements of one copy, in order: the first creates the target schema when it
    is missing (each adapter reads from its warehouse's answer whether it did), the last
    writes the rows."""
    statements = [create_schema_sql(QualifiedName(target.catalog, target.schema), dialect)]
    if plan.mode is WriteMode.REPLACE:
        statements.append(replace_sql(target, source, metadata_columns, dialect))
        return statements
    statements.extend(add_column_sql(target, c.name, c.type, dialect) for c in plan.drift.add)
    statements.extend(
        widen_column_sql(target, name, new, dialect) for name, _old, new in plan.drift.widen
    )
    statements.append(
        append_sql(target, source, source_columns, timestamp_column, metadata_columns, dialect)
    )
    return statements


class CopyPlan(NamedTuple):
    """One remote copy, planned: the write, its statements in order (the last writes the
    rows), the timestamp column as the source spells it, and the rows an append leaves."""

    plan: ReplicationPlan
    statements: list[str]
    timestamp_column: str
    not_copied: RowsNotCopied | None


def plan_copy(
    task: TableTask,
    *,
    source: QualifiedName,
    target: QualifiedName,
    source_columns: Sequence[Column],
    target_columns: Sequence[Column] | None,
    rows: Callable[[str], Sequence[Sequence[Any]]],
    dialect: DialectName,
) -> CopyPlan:
    """Plan one copy the same way for every remote adapter: the write from the columns,
    an append settled against the target's state (one query through ``rows``), then the
    statements."""
    plan = plan_replication(
        strategy=task.strategy,
        source_columns=source_columns,
        target_columns=target_columns,
        timestamp_column=task.timestamp_column,
        metadata_columns=task.metadata_columns,
    )
    names = [c.name for c in source_columns]
    timestamp = column_spelling(names, task.timestamp_column)
    plan, not_copied = settle_append_remote(
        plan, source=source, target=target, timestamp_column=timestamp, rows=rows, dialect=dialect
    )
    statements = copy_statements(
        plan=plan,
        source=source,
        target=target,
        source_columns=names,
        timestamp_column=timestamp,
        metadata_columns=task.metadata_columns,
        dialect=dialect,
    )
    return CopyPlan(plan, statements, timestamp, not_copied)


def copy_stats(
    plan: ReplicationPlan,
    *,
    target: QualifiedName,
    rows: int,
    final_columns: Sequence[str],
    timestamp_column: str,
    scalar: Callable[[str], object],
    dialect: DialectName,
    not_copied: RowsNotCopied | None = None,
    schema_created: bool | None = None,
) -> CopyStats:
    """What a copy did, reading the watermark (``MAX`` of the timestamp column) through
    ``scalar``, which runs one query and returns its single value. ``schema_created``:
    whether the copy's ``CREATE SCHEMA IF NOT EXISTS`` created the target schema (None:
    the warehouse did not say). The remote adapters never create a catalog (a Snowflake
    database, a BigQuery project, a Unity Catalog catalog)."""
    watermark = None
    if any(c.casefold() == timestamp_column.casefold() for c in final_columns):
        watermark = render_watermark(scalar(max_sql(target, timestamp_column, dialect)))
    return CopyStats(
        rows_copied=rows,
        target_table_full_name=target.dotted(),
        column_count=len(final_columns),
        watermark=watermark,
        write_mode=plan.mode.value,
        reason=plan.reason,
        drift=plan.actions(),
        not_copied=not_copied,
        timestamp_column=timestamp_column,
        catalog_created=False,
        schema_created=schema_created,
    )
