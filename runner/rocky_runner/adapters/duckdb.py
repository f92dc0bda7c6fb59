"""The DuckDB adapter: catalogs are DuckDB database files.

The main file (``duckdb.path``) is the catalog named after its file stem (what
``current_database()`` says). Any other catalog named by a task is the sibling file
``<catalog>.duckdb`` in the same directory, ATTACHed on first use; a target catalog
file is created when missing, a source catalog is not (the query then fails with
DuckDB's own not-found error).

DuckDB allows one writing process per file, or any number of reading ones. So the main
file is opened read-only unless the task writes into it: discovery and copies into sibling
target files run side by side, each runner holding the write lock of its own target file
only. Whatever lock it needs, a runner waits for it with bounded, jittered retries
(``lockTimeoutSeconds``) and gives up with
:class:`~rocky_runner.errors.LockTimeoutError` (transient). Each target is written in
one transaction: drift steps and the rows commit together or not at all. Extension
auto-install and auto-load are off, so a path or query never triggers a download.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from rocky_runner.adapters import duckdb_sql as sql
from rocky_runner.adapters.base import (
    RELATION_TABLE,
    RELATION_VIEW,
    CopyStats,
    Credentials,
    Relation,
    SchemaName,
    table_names,
)
from rocky_runner.adapters.duckdb_sql import (
    is_lock_conflict,
    process_temp_dir,
    quote_identifier,
    quote_literal,
)
from rocky_runner.contract import FailureKind, TableRef, TableTask, memory_limit_problem
from rocky_runner.errors import AdapterConfigError, ClassifiedError, LockTimeoutError
from rocky_runner.replication import (
    WriteMode,
    plan_replication,
    settle_append,
)

T = TypeVar("T")

#: Catalogs and schemas DuckDB keeps for itself; never discovered.
_SYSTEM_CATALOGS = frozenset({"system", "temp"})
_SYSTEM_SCHEMAS = frozenset({"information_schema", "pg_catalog"})
#: First and largest pause between lock attempts, in seconds (jittered).
_LOCK_FIRST_PAUSE = 0.02
_LOCK_MAX_PAUSE = 0.5


class DuckDBAdapter:
    """One connection to a DuckDB file: read-only, or holding its write lock when a task
    writes into the main file itself. The connection opens on first use."""

    type_name = "duckdb"

    def __init__(
        self,
        path: str,
        *,
        lock_timeout_seconds: float = 60.0,
        memory_limit: str | None = None,
        storage_version: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._path = Path(path)
        #: Storage version of target files this adapter creates; None: the main file's own.
        self._storage_version = storage_version
        self._lock_timeout = lock_timeout_seconds
        self._sleep = sleep
        self._cancelled = threading.Event()
        config: dict[str, str | bool | int | float | list[str]] = {
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
        if memory_limit:
            config["memory_limit"] = memory_limit
        if not self._path.exists():
            raise ClassifiedError(
                f"DuckDB database file {self._path} does not exist",
                kind=FailureKind.CONNECTION_FAILED,
            )
        self._config = config
        self._deadline = time.monotonic() + self._lock_timeout
        self._conn_handle: duckdb.DuckDBPyConnection | None = None
        self._writes_main = False
        #: Catalogs a copy committed into: checkpointed, with errors raised, by close().
        self._written: list[str] = []
        #: DuckDB names the main catalog after the file's stem.
        self.main_catalog: str = self._path.stem

    # --- connection -------------------------------------------------------------------

    def _open(self, *, write_main: bool) -> duckdb.DuckDBPyConnection:
        """The connection, opened read-only unless the main file itself is written.

        Read-only openers of one file do not block each other; a writer of the main file
        waits until they are gone (and they for it). A read-only connection spills into a
        temporary directory of its process, since processes would share the file's default.
        """
        if self._conn_handle is not None and (self._writes_main or not write_main):
            return self._conn_handle
        self._close_connection()
        config = dict(self._config)
        if not write_main:
            config["temp_directory"] = process_temp_dir()
        self._conn_handle = self._wait_for_lock(
            lambda: self._connect(read_only=not write_main, config=config), str(self._path)
        )
        self._writes_main = write_main
        row = self._conn_handle.execute("SELECT current_database()").fetchone()
        self.main_catalog = row[0] if row else self._path.stem
        return self._conn_handle

    def _connect(self, *, read_only: bool, config: dict[str, Any]) -> duckdb.DuckDBPyConnection:
        try:
            return duckdb.connect(str(self._path), read_only=read_only, config=config)
        except (duckdb.ParserException, duckdb.InvalidInputException) as exc:
            limit = config.get("memory_limit")
            if limit is None or "emory" not in str(exc):
                raise
            # A setting the user wrote that DuckDB refuses: say which one.
            raise ClassifiedError(
                f"adapter.duckdb.memoryLimit {limit!r} is not a DuckDB memory size "
                f"(e.g. '2GB', '512MiB', '80%'): {exc}",
                kind=FailureKind.QUERY_REJECTED,
            ) from exc

    @property
    def _conn(self) -> duckdb.DuckDBPyConnection:
        """The open connection (read-only when nothing opened it yet)."""
        return self._open(write_main=False)

    def _writes_into_main(self, catalog: str | None) -> bool:
        return catalog is None or catalog.casefold() == self.main_catalog.casefold()

    def _close_connection(self) -> None:
        if self._conn_handle is not None:
            with contextlib.suppress(duckdb.Error):
                self._conn_handle.close()
            self._conn_handle = None

    # --- locking ----------------------------------------------------------------------

    def _wait_for_lock(self, attempt: Callable[[], T], what: str) -> T:
        """Run ``attempt`` until it gets past a lock conflict or the lock deadline passes."""
        pause = _LOCK_FIRST_PAUSE
        tries = 0
        while True:
            tries += 1
            try:
                return attempt()
            except duckdb.IOException as exc:
                if not is_lock_conflict(exc):
                    raise
                remaining = self._deadline - time.monotonic()
                if remaining <= 0 or self._cancelled.is_set():
                    raise LockTimeoutError(
                        f"could not lock DuckDB file {what} within {self._lock_timeout:g} s "
                        f"({tries} attempts): another process is writing to it"
                    ) from exc
                self._sleep(min(remaining, pause * random.uniform(0.5, 1.0)))
                pause = min(pause * 2, _LOCK_MAX_PAUSE)

    # --- catalogs ---------------------------------------------------------------------

    def _attached(self) -> dict[str, str]:
        rows = self._conn.execute("SELECT database_name FROM duckdb_databases()").fetchall()
        return {r[0].casefold(): r[0] for r in rows}

    def _resolve_catalog(self, catalog: str | None, *, create: bool) -> str:
        """The attached catalog name for ``catalog``, attaching its sibling file if needed."""
        if catalog is None:
            return self.main_catalog
        attached = self._attached()
        if catalog.casefold() in attached:
            return attached[catalog.casefold()]
        if "/" in catalog or "\\" in catalog or catalog.startswith("."):
            return catalog  # not a file name: let DuckDB report the catalog as missing
        sibling = self._path.with_name(f"{catalog}.duckdb")
        if sibling.exists() or create:
            # Sources are attached read-only (a shared lock); a target needs the write lock.
            mode = "READ_WRITE" if create else "READ_ONLY"
            if create and not sibling.exists():
                mode += f", STORAGE_VERSION {quote_literal(self._new_file_storage_version())}"
            attach = f"ATTACH {quote_literal(str(sibling))} AS {quote_identifier(catalog)} ({mode})"
            self._wait_for_lock(lambda: self._conn.execute(attach), str(sibling))
        return catalog

    def _new_file_storage_version(self) -> str:
        """``duckdb.storageVersion``, else the main file's: a warehouse written by an older
        DuckDB (Rocky's, say) gets target files that DuckDB can still open. Existing files
        keep their own storage version whatever writes into them."""
        if self._storage_version:
            return self._storage_version
        row = self._conn.execute(
            "SELECT tags['storage_version'] FROM duckdb_databases() "
            "WHERE database_name = current_database()"
        ).fetchone()
        found = str(row[0]) if row and row[0] else ""
        return found.rstrip("+") or "latest"

    def _qualified(self, ref: TableRef, catalog: str) -> str:
        return ".".join(quote_identifier(p) for p in (catalog, ref.schema_, ref.table))

    # --- discovery --------------------------------------------------------------------

    def discover_schemas(self, catalog: str | None = None) -> list[SchemaName]:
        if catalog is not None:
            catalog = self._resolve_catalog(catalog, create=False)
        rows = self._conn.execute(
            "SELECT database_name, schema_name FROM duckdb_schemas() "
            "ORDER BY database_name, schema_name"
        ).fetchall()
        found = []
        for db, schema in rows:
            if db in _SYSTEM_CATALOGS or schema in _SYSTEM_SCHEMAS:
                continue
            if catalog is not None and db.casefold() != catalog.casefold():
                continue
            found.append(SchemaName(db, schema))
        return found

    def list_tables(self, catalog: str | None, schema: str) -> list[str]:
        return table_names(self.list_relations(catalog, schema))

    def list_relations(self, catalog: str | None, schema: str) -> list[Relation]:
        db = self._resolve_catalog(catalog, create=False)
        where = "WHERE lower(database_name) = lower(?) AND lower(schema_name) = lower(?)"
        rows = self._conn.execute(
            f"SELECT table_name, '{RELATION_TABLE}' FROM duckdb_tables() {where} "
            f"UNION ALL SELECT view_name, '{RELATION_VIEW}' FROM duckdb_views() {where} "
            "AND NOT internal ORDER BY 1",
            [db, schema, db, schema],
        ).fetchall()
        return [Relation(str(r[0]), str(r[1])) for r in rows]

    # --- the copy ---------------------------------------------------------------------

    def copy_table(self, task: TableTask) -> CopyStats:
        self._open(write_main=self._writes_into_main(task.target.catalog))
        # The target first: when source and target share a sibling file, it is attached
        # writable once, not read-only.
        catalog_created = self._catalog_is_new(task.target.catalog)
        target_catalog = self._resolve_catalog(task.target.catalog, create=True)
        source_catalog = self._resolve_catalog(task.source.catalog, create=False)
        source = self._qualified(task.source, source_catalog)
        target = self._qualified(task.target, target_catalog)
        source_columns = sql.describe(self._conn, source)
        target_columns = (
            sql.describe(self._conn, target)
            if sql.table_exists(self._conn, target_catalog, task.target)
            else None
        )
        plan = plan_replication(
            strategy=task.strategy,
            source_columns=source_columns,
            target_columns=target_columns,
            timestamp_column=task.timestamp_column,
            metadata_columns=task.metadata_columns,
        )
        meta_select = "".join(
            f", CAST(({m.value}) AS {m.type}) AS {quote_identifier(m.name)}"
            for m in task.metadata_columns
        )
        self._conn.execute("BEGIN TRANSACTION")
        try:
            schema_created = not sql.schema_exists(self._conn, target_catalog, task.target.schema_)
            self._conn.execute(
                f"CREATE SCHEMA IF NOT EXISTS "
                f"{quote_identifier(target_catalog)}.{quote_identifier(task.target.schema_)}"
            )
            not_copied = None
            if plan.mode is WriteMode.APPEND:
                state = sql.target_state(self._conn, target, task.timestamp_column)
                plan = settle_append(plan, **state)
            if plan.mode is WriteMode.REPLACE:
                rows = sql.replace(self._conn, source, target, meta_select)
            else:
                not_copied = sql.rows_not_copied(self._conn, source, target, task.timestamp_column)
                rows = sql.append(self._conn, plan, source, target, source_columns, task)
            final_columns = sql.describe(self._conn, target)
            watermark = sql.watermark(self._conn, target, final_columns, task.timestamp_column)
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        if target_catalog not in self._written:
            self._written.append(target_catalog)
        return CopyStats(
            rows_copied=rows,
            target_table_full_name=f"{target_catalog}.{task.target.schema_}.{task.target.table}",
            column_count=len(final_columns),
            watermark=watermark,
            write_mode=plan.mode.value,
            reason=plan.reason,
            drift=plan.actions(),
            not_copied=not_copied,
            timestamp_column=task.timestamp_column,
            catalog_created=catalog_created,
            schema_created=schema_created,
        )

    def _catalog_is_new(self, catalog: str | None) -> bool:
        """Whether a target catalog's file is yet to be created (by this copy)."""
        if catalog is None or catalog.casefold() in self._attached():
            return False
        return not self._path.with_name(f"{catalog}.duckdb").exists()

    def _rollback(self) -> None:
        # The transaction may already be gone (aborted by the error itself).
        with contextlib.suppress(duckdb.Error):
            self._conn.execute("ROLLBACK")

    # --- lifecycle --------------------------------------------------------------------

    def cancel(self) -> None:
        self._cancelled.set()
        # Best effort from a watchdog thread: never raise.
        with contextlib.suppress(Exception):
            if self._conn_handle is not None:
                self._conn_handle.interrupt()

    def close(self) -> None:
        """Checkpoint every catalog a copy wrote, then close; errors are raised.

        DuckDB checkpoints on close too, but swallows an error there. Checkpointing
        first, while the connection is ours, surfaces it: a copy is reported only once
        its file is checkpointed (issue 13: copied but missing). Idempotent.
        """
        handle, written = self._conn_handle, self._written
        self._conn_handle, self._written = None, []
        if handle is None:
            return
        try:
            for catalog in written:
                handle.execute(f"CHECKPOINT {quote_identifier(catalog)}")
        finally:
            handle.close()


def open_adapter(
    settings: Mapping[str, Any], credentials: Credentials, *, timeout_seconds: float
) -> DuckDBAdapter:
    """Open the DuckDB file of ``settings`` (the ``duckdb`` block, camelCase keys).

    DuckDB needs no credentials. The lock wait is bounded by ``lockTimeoutSeconds`` and
    by ``timeout_seconds``, whichever is shorter.
    """
    del credentials
    path = settings.get("path")
    if not isinstance(path, str) or not path:
        raise AdapterConfigError("adapter.duckdb.path must be a non-empty string")
    lock_timeout = settings.get("lockTimeoutSeconds", 60.0)
    if not isinstance(lock_timeout, int | float) or lock_timeout < 0:
        raise AdapterConfigError("adapter.duckdb.lockTimeoutSeconds must be a number >= 0")
    memory_limit = settings.get("memoryLimit")
    if memory_limit is not None and not isinstance(memory_limit, str):
        raise AdapterConfigError("adapter.duckdb.memoryLimit must be a string such as '2GB'")
    problem = memory_limit_problem(memory_limit) if memory_limit is not None else None
    if problem is not None:  # a typo in what the user wrote, as in the spec's check
        raise ClassifiedError(
            f"adapter.duckdb.memoryLimit: {problem}", kind=FailureKind.QUERY_REJECTED
        )
    storage_version = settings.get("storageVersion")
    if storage_version is not None and not isinstance(storage_version, str):
        raise AdapterConfigError("adapter.duckdb.storageVersion must be a string such as 'v1.5.0'")
    return DuckDBAdapter(
        path,
        lock_timeout_seconds=min(float(lock_timeout), timeout_seconds),
        memory_limit=memory_limit,
        storage_version=storage_version,
    )
