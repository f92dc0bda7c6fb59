"""Issue 10 case 13: ``permissions.catalogs_created`` / ``schemas_created`` are the
target catalogs (DuckDB files) and schemas the run created, each once; a second run
over the same targets creates none."""

from __future__ import annotations

from pathlib import Path

from tests.local.helpers import build_warehouse, manifest_doc, run, validate_output, write_manifest


def test_created_catalogs_and_schemas_are_counted_once(tmp_path: Path) -> None:
    schemas = {
        "src__acme__shop": ["orders", "refunds"],
        "src__acme__crm": ["deals"],
        "src__globex__shop": ["orders"],
    }
    warehouse = build_warehouse(tmp_path / "w.duckdb", schemas)
    manifest = write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse, concurrency=4))
    first = run(manifest)
    assert first.code == 0, first.stderr
    validate_output(first.output)
    # acme_wh and globex_wh are new files; staging__shop (2 tables) and staging__crm in
    # acme_wh, staging__shop in globex_wh are new schemas.
    assert first.output["permissions"] == {
        "grants_added": 0,
        "grants_revoked": 0,
        "catalogs_created": 2,
        "schemas_created": 3,
    }
    assert (tmp_path / "acme_wh.duckdb").exists()

    again = run(manifest)
    assert again.code == 0, again.stderr
    permissions = validate_output(again.output).permissions
    assert (permissions.catalogs_created, permissions.schemas_created) == (0, 0)
