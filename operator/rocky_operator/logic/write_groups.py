"""Which warehouse files a table's runner opens, so that no two runners of one run
fight over a file lock.

DuckDB allows one writing process per database file, or any number of reading ones.
A DuckDB runner opens the main file (``duckdb.path``) read-only unless its target is
in it, writes its target file (the main file, or ``<catalog>.duckdb`` beside it) and
reads its source file. Two runners that need the same file, one of them to write it,
would wait for each other's lock and, after ``lockTimeoutSeconds``, fail a table the
run itself made unlucky. :func:`decide` therefore never starts a table while a running
(or just started) table holds a conflicting access: every target file is a write group
whose tables run one at a time, whatever the concurrency.

Warehouses with server-side concurrency (Databricks, Snowflake, BigQuery) need no
grouping: their tables have no :class:`FileAccess`.

Pure: names are derived from the task, no file is touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePath

from rocky_operator.logic.tables import PlannedTable


@dataclass(frozen=True)
class FileAccess:
    """The files one table's runner locks: exclusively (writes) or shared (reads)."""

    writes: frozenset[str]
    reads: frozenset[str]


def _duckdb_file(main: PurePath, catalog: str | None) -> str:
    """The file a DuckDB catalog lives in: the main file for its stem (or no catalog),
    else the sibling ``<catalog>.duckdb`` (as the runner's adapter resolves it)."""
    if catalog is None or catalog.casefold() == main.stem.casefold():
        return str(main)
    return str(main.with_name(f"{catalog}.duckdb"))


def file_access(table: PlannedTable) -> FileAccess | None:
    """The files a table's runner locks; None when the warehouse needs no grouping."""
    settings = table.task.adapter
    if settings.get("type") != "duckdb":
        return None
    block = settings.get("duckdb") or {}
    path = block.get("path") if isinstance(block, Mapping) else None
    if not isinstance(path, str) or not path:
        return None
    main = PurePath(path)
    target = _duckdb_file(main, table.task.target.catalog)
    reads = {str(main), _duckdb_file(main, table.task.source.catalog)} - {target}
    return FileAccess(writes=frozenset({target}), reads=frozenset(reads))


def write_groups(tables: Iterable[PlannedTable]) -> dict[str, FileAccess]:
    """:func:`file_access` of every table that has one, by table key (``decide``'s
    ``files`` argument)."""
    found: dict[str, FileAccess] = {}
    for table in tables:
        access = file_access(table)
        if access is not None:
            found[table.key] = access
    return found


class FileLocks:
    """Readers-writer bookkeeping of the files held by the attempts in flight."""

    def __init__(self) -> None:
        self._written: set[str] = set()
        self._read: dict[str, int] = {}

    def is_free_for(self, access: FileAccess | None) -> bool:
        """Whether an attempt with this access could take its locks now."""
        if access is None:
            return True
        if any(f in self._written or self._read.get(f) for f in access.writes):
            return False
        return not any(f in self._written for f in access.reads)

    def take(self, access: FileAccess | None) -> None:
        if access is None:
            return
        self._written.update(access.writes)
        for f in access.reads:
            self._read[f] = self._read.get(f, 0) + 1
