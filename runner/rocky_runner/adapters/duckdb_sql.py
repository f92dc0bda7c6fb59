"""The DuckDB adapter's statements and connection helpers: quoting, lock conflicts, the
per-process spill directory, what a target looks like, and the writes of
one copy (replace, append with drift, the watermark). Each takes the open connection;
the adapter (:mod:`rocky_runner.adapters.duckdb`) owns the connection, the file locks and
the transaction around them.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile

import duckdb

from rocky_runner.adapters.base import render_watermark
from rocky_runner.contract import TableRef, TableTask
from rocky_runner.drift import Column
from rocky_runner.replication import ReplicationPlan, RowsNotCopied, TimestampCounts

Connection = duckdb.DuckDBPyConnection


@functools.cache
def process_temp_dir() -> str:
    """This process's spill directory for read-only connections.

    Read-only openers of one file would share DuckDB's default (``<file>.tmp``) across
    processes, so each process gets its own. One per process, not per connection: DuckDB
    refuses a second connection to a file with a different configuration in one process
    (the operator discovers for several runs at once).
    """
    path = tempfile.mkdtemp(prefix=f"rocky-duckdb-{os.getpid()}-")
    atexit.register(shutil.rmtree, path, True)
    return path


def is_lock_conflict(exc: BaseException) -> bool:
    """Whether a DuckDB error says another process holds the file's lock."""
    message = str(exc)
    return isinstance(exc, duckdb.IOException) and (
        "Could not set lock" in message or "Conflicting lock" in message
    )


def quote_identifier(name: str) -> str:
    """A DuckDB identifier in double quotes, embedded quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def describe(conn: Connection, qualified: str) -> list[Column]:
    rows = conn.execute(f"DESCRIBE {qualified}").fetchall()
    return [Column(r[0], r[1]) for r in rows]


def table_exists(conn: Connection, catalog: str, ref: TableRef) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE lower(database_name) = lower(?) "
        "AND lower(schema_name) = lower(?) AND lower(table_name) = lower(?)",
        [catalog, ref.schema_, ref.table],
    ).fetchone()
    return bool(row and row[0])


def schema_exists(conn: Connection, catalog: str, schema: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM duckdb_schemas() WHERE database_name = ? "
        "AND lower(schema_name) = lower(?)",
        [catalog, schema],
    ).fetchone()
    return bool(row and row[0])


def target_state(conn: Connection, target: str, timestamp_column: str) -> dict[str, int]:
    """The target's row count and timestamped row count, for ``settle_append``."""
    ts = quote_identifier(timestamp_column)
    row = conn.execute(f"SELECT count(*), count({ts}) FROM {target}").fetchone()
    return {"target_rows": row[0] if row else 0, "timestamped_rows": row[1] if row else 0}


def rows_not_copied(
    conn: Connection, source: str, target: str, timestamp_column: str
) -> RowsNotCopied:
    """Source rows the append cannot take (NULL / equal / older timestamp), counted
    against the target's rows in the same classes (see :class:`RowsNotCopied`)."""
    ts = quote_identifier(timestamp_column)
    mark = f"(SELECT max({ts}) FROM {target})"

    def counts(table: str) -> TimestampCounts:
        row = conn.execute(
            f"SELECT count(*) FILTER (WHERE {ts} IS NULL), "
            f"count(*) FILTER (WHERE {ts} = {mark}), "
            f"count(*) FILTER (WHERE {ts} < {mark}) FROM {table}"
        ).fetchone()
        return TimestampCounts(*(int(v) for v in row)) if row else TimestampCounts()

    return RowsNotCopied.between(counts(source), counts(target))


def replace(conn: Connection, source: str, target: str, meta_select: str) -> int:
    row = conn.execute(
        f"CREATE OR REPLACE TABLE {target} AS SELECT *{meta_select} FROM {source}"
    ).fetchone()
    return int(row[0]) if row else 0


def append(
    conn: Connection,
    plan: ReplicationPlan,
    source: str,
    target: str,
    source_columns: list[Column],
    task: TableTask,
) -> int:
    """The plan's drift steps, then the source rows newer than the target's watermark."""
    for col in plan.drift.add:
        conn.execute(f"ALTER TABLE {target} ADD COLUMN {quote_identifier(col.name)} {col.type}")
    for name, _old, new in plan.drift.widen:
        conn.execute(
            f"ALTER TABLE {target} ALTER COLUMN {quote_identifier(name)} SET DATA TYPE {new}"
        )
    names = [c.name for c in source_columns] + [m.name for m in task.metadata_columns]
    values = [f"s.{quote_identifier(c.name)}" for c in source_columns] + [
        f"CAST(({m.value}) AS {m.type})" for m in task.metadata_columns
    ]
    ts = quote_identifier(task.timestamp_column)
    row = conn.execute(
        f"INSERT INTO {target} ({', '.join(map(quote_identifier, names))}) "
        f"SELECT {', '.join(values)} FROM {source} AS s, "
        f"(SELECT max({ts}) AS m, count(*) AS n FROM {target}) AS w "
        f"WHERE s.{ts} > w.m OR w.n = 0"
    ).fetchone()
    return int(row[0]) if row else 0


def watermark(
    conn: Connection, target: str, columns: list[Column], timestamp_column: str
) -> str | None:
    if not any(c.name.casefold() == timestamp_column.casefold() for c in columns):
        return None
    row = conn.execute(f"SELECT max({quote_identifier(timestamp_column)}) FROM {target}").fetchone()
    return render_watermark(row[0] if row else None)
