"""Shared fixtures for the runner tests: real DuckDB files in a temp directory."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    """A DuckDB file with one source schema ``src__acme`` holding ``orders`` (5 rows)."""
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            """
            CREATE SCHEMA src__acme;
            CREATE TABLE src__acme.orders AS
              SELECT range::INTEGER AS id,
                     'item ' || range AS name,
                     TIMESTAMP '2024-01-01' + to_hours(range) AS _fivetran_synced
              FROM range(5);
            """
        )
    return path
