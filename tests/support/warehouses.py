"""Small DuckDB source warehouses for the e2e tests: Fivetran-like tables, one file."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import duckdb


def source_warehouse(path: Path, tables: Iterable[tuple[str, str]], *, rows: int) -> Path:
    """A new DuckDB file at ``path`` with a table ``schema.table`` per (schema, table) given,
    each ``rows`` rows of ``id`` (0, 1, ...) and ``_fivetran_synced`` 2026-01-01; its folder
    is created (it must not exist yet). Returns ``path``."""
    path.parent.mkdir(parents=True)
    con = duckdb.connect(str(path))
    try:
        schemas: set[str] = set()
        for schema, table in tables:
            if schema not in schemas:
                con.execute(f"CREATE SCHEMA {schema}")
                schemas.add(schema)
            con.execute(
                f"CREATE TABLE {schema}.{table} AS SELECT range AS id, "
                f"TIMESTAMP '2026-01-01' AS _fivetran_synced FROM range({rows})"
            )
    finally:
        con.close()
    return path
