"""Heavy client libraries are imported only by the adapter that uses them.

A DuckDB runner must not pay for the Snowflake, Databricks or Google SDKs (nor
pyarrow or sqlglot, which they pull in): a fresh interpreter opens a DuckDB adapter
through ``open_adapter``, copies nothing, classifies errors of every connector's
shape, and must end with none of those modules loaded. Each remote adapter, when
imported, loads its own library and not the other two.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HEAVY = ("snowflake", "databricks", "google", "pyarrow", "sqlglot", "thrift", "pandas")


def _loaded_after(code: str) -> set[str]:
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        heavy = {HEAVY!r}
        print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=120
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_duckdb_runner_imports_no_connector_library(tmp_path: Path) -> None:
    db = tmp_path / "warehouse.duckdb"
    loaded = _loaded_after(
        f"""
        import duckdb
        duckdb.connect({str(db)!r}).close()
        from rocky_runner.adapters.base import Credentials, open_adapter
        from rocky_runner.classify import classify_exception
        adapter = open_adapter(
            {{"type": "duckdb", "duckdb": {{"path": {str(db)!r}}}}},
            Credentials(),
            timeout_seconds=10,
        )
        adapter.discover_schemas()
        adapter.close()
        try:
            duckdb.connect(":memory:").execute("SELECT * FROM nope")
        except duckdb.Error as exc:
            assert classify_exception(exc).value == "not-found"
        assert classify_exception(ConnectionRefusedError(111, "refused")).value == (
            "connection-failed"
        )
        """
    )
    assert loaded == set()


@pytest.mark.slow  # a fresh interpreter imports a whole client SDK
@pytest.mark.parametrize(
    ("adapter", "own", "others"),
    [
        ("snowflake", {"snowflake"}, {"databricks", "google"}),
        ("databricks", {"databricks"}, {"snowflake", "google"}),
        ("bigquery", {"google"}, {"snowflake", "databricks"}),
    ],
)
def test_each_adapter_loads_only_its_own_library(
    adapter: str, own: set[str], others: set[str]
) -> None:
    loaded = _loaded_after(f"import rocky_runner.adapters.{adapter}\n")
    assert own <= loaded
    assert not (others & loaded)
