"""DuckDB storage versions: a Rocky user's warehouse stays readable by Rocky's DuckDB 1.5.

Writing into an existing file keeps its storage version; new target files take
``duckdb.storageVersion`` when set, else the warehouse file's own. Every check that a file is
readable opens it with DuckDB 1.5.x from PyPI (its own venv, see conftest).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import duckdb
import yaml
from tests.compat.conftest import RunIn15

from rocky_operator.local.executor import LocalOptions, run_local


def _manifest(tmp_path: Path, warehouse: Path, **duckdb_settings: Any) -> Path:
    doc = {
        "apiVersion": "rocky.dev/v1alpha1",
        "kind": "RockyRun",
        "metadata": {"name": "storage"},
        "spec": {
            "adapter": {
                "type": "duckdb",
                "duckdb": {"path": str(warehouse), "lockTimeoutSeconds": 30, **duckdb_settings},
            },
            "source": {"schemaPattern": {"components": ["tenant", "source"]}},
            "target": {"catalogTemplate": "{tenant}_wh", "schemaTemplate": "staging"},
            "strategy": "full_refresh",
            "concurrency": 2,
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(manifest: Path) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    code = run_local(manifest, LocalOptions(), stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    doc: dict[str, Any] = json.loads(out.getvalue())
    return doc


SOURCE_SQL = """
CREATE SCHEMA src__acme__shop;
CREATE TABLE src__acme__shop.orders AS SELECT i AS id, TIMESTAMP '2026-01-01' + to_minutes(i)
    AS _fivetran_synced FROM range(1, 31) r(i);
CREATE SCHEMA src__globex__shop;
CREATE TABLE src__globex__shop.orders AS SELECT i AS id, TIMESTAMP '2026-01-01' + to_minutes(i)
    AS _fivetran_synced FROM range(1, 11) r(i);
"""


def _storage_version(path: Path) -> str:
    with contextlib.closing(duckdb.connect(":memory:")) as conn:
        conn.execute(f"ATTACH '{path}' AS f (READ_ONLY)")
        row = conn.execute(
            "SELECT tags['storage_version'] FROM duckdb_databases() WHERE database_name = 'f'"
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_a_warehouse_written_by_duckdb15_stays_readable_by_it(
    tmp_path: Path, run_in_duckdb15: RunIn15
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    existing_target = tmp_path / "globex_wh.duckdb"
    run_in_duckdb15(
        f"""
        import duckdb
        c = duckdb.connect({str(warehouse)!r})
        c.execute({SOURCE_SQL!r})
        c.close()
        c = duckdb.connect({str(existing_target)!r},
                           config={{"storage_compatibility_version": "latest"}})
        c.execute("CREATE TABLE earlier AS SELECT 7 AS kept")
        c.close()
        """
    )
    before = {p: _storage_version(p) for p in (warehouse, existing_target)}
    doc = _run(_manifest(tmp_path, warehouse))
    assert doc["tables_copied"] == 2
    new_target = tmp_path / "acme_wh.duckdb"
    assert new_target.exists()
    # Existing files keep theirs; the new one takes the warehouse's.
    assert {p: _storage_version(p) for p in before} == before
    assert _storage_version(new_target) == before[warehouse]
    seen = run_in_duckdb15(
        f"""
        import duckdb, json
        counts = {{}}
        for name in ("acme_wh", "globex_wh"):
            c = duckdb.connect({str(tmp_path)!r} + "/" + name + ".duckdb", read_only=True)
            counts[name] = c.execute("SELECT count(*) FROM staging.orders").fetchone()[0]
            if name == "globex_wh":
                counts["earlier"] = c.execute("SELECT kept FROM earlier").fetchone()[0]
            c.close()
        c = duckdb.connect({str(warehouse)!r}, read_only=True)
        counts["source"] = c.execute("SELECT count(*) FROM src__acme__shop.orders").fetchone()[0]
        print(json.dumps(counts))
        """
    )
    assert json.loads(seen) == {"acme_wh": 30, "globex_wh": 10, "earlier": 7, "source": 30}


def test_storage_version_chooses_the_format_of_new_target_files(
    tmp_path: Path, run_in_duckdb15: RunIn15
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with contextlib.closing(duckdb.connect(str(warehouse))) as conn:  # DuckDB 2.0's format
        conn.execute(SOURCE_SQL)
    doc = _run(_manifest(tmp_path, warehouse, storageVersion="v1.5.0"))
    assert doc["tables_copied"] == 2
    assert _storage_version(tmp_path / "acme_wh.duckdb") == "v1.5.0+"
    seen = run_in_duckdb15(
        f"""
        import duckdb
        c = duckdb.connect({str(tmp_path / "acme_wh.duckdb")!r}, read_only=True)
        print(c.execute("SELECT count(*) FROM staging.orders").fetchone()[0])
        """
    )
    assert seen.strip() == "30"


def test_without_storage_version_new_files_follow_the_warehouse(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with contextlib.closing(duckdb.connect(str(warehouse))) as conn:
        conn.execute(SOURCE_SQL)
    _run(_manifest(tmp_path, warehouse))
    assert _storage_version(tmp_path / "acme_wh.duckdb") == _storage_version(warehouse)
