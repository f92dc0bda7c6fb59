"""Nothing requested vanishes (issue 10, cases 7, 8 and 9), through the local executor.

Real DuckDB warehouses and real runner processes. Checks that:

- a name of an explicit ``source.tables`` list the source lacks, or that is a view, is
  in ``excluded_tables`` with its reason and counted on stderr (case 7);
- discovery leaves views out by default but lists them (reason ``view``);
  ``source.includeViews: true`` copies them, and a broken view then fails with the kind
  of its real error (case 8);
- a plan of zero tables (typo'd prefix, filter matching nothing) says so on stderr with
  ``NoTablesMatched`` and keeps Rocky's exit code 0 (case 9);
- the whole-run accounting: requested = copied + failed + not attempted + excluded,
  and the target warehouse holds exactly the rows the RunOutput says were copied.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import duckdb
from tests.local.helpers import (
    LocalRun,
    build_warehouse,
    manifest_doc,
    run,
    validate_output,
    wrapper_script,
    write_manifest,
)

from rocky_operator.local.executor import LocalOptions


def _sql(path: Path, *statements: str) -> None:
    with contextlib.closing(duckdb.connect(str(path))) as conn:
        for statement in statements:
            conn.execute(statement)


def _excluded(doc: dict[str, Any]) -> dict[str, str]:
    return {"/".join(e["asset_key"]): e["reason"] for e in doc.get("excluded_tables") or []}


def _checked(result: LocalRun) -> dict[str, Any]:
    doc = result.output
    parsed = validate_output(doc)
    assert len(parsed.excluded_tables or []) == len(doc.get("excluded_tables") or [])
    return doc


def test_listed_names_that_do_not_exist_or_are_views_are_excluded(tmp_path: Path) -> None:
    """Case 7: of five listed names, two exist; the view and the two unknown names are in
    ``excluded_tables`` with their reason and counted on stderr; the run still succeeds
    (as Rocky's: an exclusion is not a runtime failure)."""
    warehouse = build_warehouse(tmp_path / "w.duckdb", {"src__acme__shop": ["orders", "items"]})
    _sql(warehouse, "CREATE VIEW src__acme__shop.v_orders AS SELECT * FROM src__acme__shop.orders")
    doc = manifest_doc(warehouse)
    doc["spec"]["source"]["tables"] = ["orders", "ITEMS", "v_orders", "refunds", "typo_ordrs"]
    result = run(write_manifest(tmp_path / "run.yaml", doc))
    assert result.code == 0, result.stderr
    out = _checked(result)
    assert sorted(result.copied()) == ["duckdb/acme/shop/items", "duckdb/acme/shop/orders"]
    assert _excluded(out) == {
        "duckdb/acme/shop/refunds": "missing_from_source",
        "duckdb/acme/shop/typo_ordrs": "missing_from_source",
        "duckdb/acme/shop/v_orders": "view",
    }
    entry = next(e for e in out["excluded_tables"] if e["table_name"] == "refunds")
    assert entry["source_schema"] == "src__acme__shop"
    assert "excluded (missing_from_source): 2 table(s)" in result.stderr
    assert "excluded (view): 1 table(s): duckdb/acme/shop/v_orders" in result.stderr
    assert "2 copied, 0 failed, 0 not attempted, 3 excluded" in result.stderr


def test_a_long_list_of_which_few_exist_accounts_for_every_name(tmp_path: Path) -> None:
    """Case 7 at size: 2,000 listed names, 2 exist: 2 copied and 1,998 excluded."""
    warehouse = build_warehouse(tmp_path / "w.duckdb", {"src__acme__shop": ["t0007", "t1500"]})
    doc = manifest_doc(warehouse)
    doc["spec"]["source"]["tables"] = [f"t{i:04d}" for i in range(2000)]
    result = run(write_manifest(tmp_path / "run.yaml", doc))
    assert result.code == 0, result.stderr
    out = _checked(result)
    assert out["tables_copied"] == 2
    assert len(out["excluded_tables"]) == 1998
    assert set(_excluded(out).values()) == {"missing_from_source"}


def test_views_are_skipped_by_default_and_listed(tmp_path: Path) -> None:
    """Case 8, the default (Rocky's): discovery copies the base tables only and lists each
    view of a matching schema in ``excluded_tables`` (reason view); the filter applies to
    them as to tables."""
    warehouse = build_warehouse(
        tmp_path / "w.duckdb", {"src__acme__shop": ["orders"], "src__globex__shop": ["orders"]}
    )
    _sql(
        warehouse,
        "CREATE VIEW src__acme__shop.v_big AS SELECT * FROM src__acme__shop.orders WHERE id > 5",
        "CREATE VIEW src__globex__shop.v_big AS SELECT * FROM src__globex__shop.orders",
    )
    result = run(
        write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse, filter="tenant=acme"))
    )
    assert result.code == 0, result.stderr
    out = _checked(result)
    assert result.copied() == ["duckdb/acme/shop/orders"]
    assert _excluded(out) == {"duckdb/acme/shop/v_big": "view"}


def test_include_views_copies_views_and_a_broken_view_fails_with_its_kind(tmp_path: Path) -> None:
    """Case 8, ``includeViews: true``: a view is copied like a table (its rows land in the
    target); a view over a dropped table fails as not-found and a view over a dropped
    column as query-rejected, the kinds the runner gives those errors; nothing excluded."""
    warehouse = build_warehouse(tmp_path / "w.duckdb", {"src__acme__shop": ["orders", "gone"]})
    _sql(
        warehouse,
        "CREATE VIEW src__acme__shop.v_big AS SELECT * FROM src__acme__shop.orders WHERE id > 5",
        "CREATE VIEW src__acme__shop.v_gone AS SELECT * FROM src__acme__shop.gone",
        "CREATE TABLE src__acme__shop.narrow AS SELECT id, name, _fivetran_synced "
        "FROM src__acme__shop.orders",
        "CREATE VIEW src__acme__shop.v_col AS SELECT id, name, _fivetran_synced "
        "FROM src__acme__shop.narrow",
        "DROP TABLE src__acme__shop.gone",
        "ALTER TABLE src__acme__shop.narrow DROP COLUMN name",
    )
    doc = manifest_doc(warehouse)
    doc["spec"]["source"]["includeViews"] = True
    result = run(write_manifest(tmp_path / "run.yaml", doc))
    assert result.code == 2, result.stderr
    out = _checked(result)
    assert sorted(result.copied()) == [
        "duckdb/acme/shop/narrow",
        "duckdb/acme/shop/orders",
        "duckdb/acme/shop/v_big",
    ]
    assert result.kinds() == {
        "duckdb/acme/shop/v_gone": "not-found",
        "duckdb/acme/shop/v_col": "query-rejected",
    }
    assert "excluded_tables" not in out
    with contextlib.closing(duckdb.connect(str(tmp_path / "acme_wh.duckdb"))) as conn:
        row = conn.execute("SELECT count(*), min(id) FROM staging__shop.v_big").fetchone()
    assert row == (15, 6)


def test_a_typo_in_the_prefix_plans_zero_tables_and_says_so(tmp_path: Path) -> None:
    """Case 9: ``raw__`` where the schemas are ``src__``: exit 0 and Success as ``rocky run``
    (documented: "Copied 0 tables" and exit 0), but a NoTablesMatched warning on stderr
    that names the pattern."""
    warehouse = build_warehouse(tmp_path / "w.duckdb", {"src__acme__shop": ["orders"]})
    doc = manifest_doc(warehouse)
    doc["spec"]["source"]["schemaPattern"]["prefix"] = "raw__"
    result = run(write_manifest(tmp_path / "run.yaml", doc))
    assert result.code == 0, result.stderr
    out = _checked(result)
    assert (out["status"], out["tables_copied"], out["tables_failed"]) == ("Success", 0, 0)
    assert "warning: NoTablesMatched: no tables matched: schema pattern prefix 'raw__'" in (
        result.stderr
    )


def test_a_filter_that_matches_nothing_says_so(tmp_path: Path) -> None:
    """Case 9: ``tenant=globx`` (a typo of globex): NoTablesMatched names the filter."""
    warehouse = build_warehouse(tmp_path / "w.duckdb", {"src__globex__shop": ["orders"]})
    result = run(
        write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse, filter="tenant=globx"))
    )
    assert result.code == 0, result.stderr
    _checked(result)
    assert "NoTablesMatched" in result.stderr
    assert "filter 'tenant=globx'" in result.stderr


def test_a_resume_with_nothing_left_is_not_flagged(tmp_path: Path) -> None:
    """Case 9's flag is for plans that matched nothing: a resume of a run that copied
    everything has zero tables to run and is a plain success."""
    warehouse = build_warehouse(tmp_path / "w.duckdb", {"src__acme__shop": ["orders"]})
    manifest = write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse))
    first = run(manifest)
    assert first.code == 0, first.stderr
    previous = tmp_path / "first.json"
    previous.write_text(first.stdout)
    again = run(manifest, LocalOptions(resume_from=previous))
    assert again.code == 0, again.stderr
    _checked(again)
    assert "NoTablesMatched" not in again.stderr


def _target_rows(tmp_path: Path, catalog: str) -> dict[str, int]:
    """Rows per table of one target file (none when the file was never written)."""
    path = tmp_path / f"{catalog}.duckdb"
    if not path.exists():
        return {}
    found: dict[str, int] = {}
    with contextlib.closing(duckdb.connect(str(path), read_only=True)) as conn:
        names = conn.execute("SELECT schema_name, table_name FROM duckdb_tables() ORDER BY 1, 2")
        for schema, table in names.fetchall():
            row = conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()
            found[f"{schema}.{table}"] = int(row[0]) if row else -1
    return found


def test_whole_run_accounting_matches_the_warehouse(tmp_path: Path) -> None:
    """Accounting over one run with existing, missing, view and failing tables, two
    tenants (a name listed for both and found in one is ``not_in_schema`` in the other):
    requested (listed names x matching schemas) = copied + failed + not
    attempted + excluded, every requested asset key appears exactly once, and each
    target holds exactly the source's rows for copied tables (nothing doubled) and no
    table at all for the others (nothing half-written)."""
    schemas = {"src__acme__shop": ["orders", "items", "bad"], "src__globex__shop": ["orders"]}
    warehouse = build_warehouse(tmp_path / "w.duckdb", schemas)
    _sql(
        warehouse,
        "CREATE VIEW src__globex__shop.items AS SELECT * FROM src__globex__shop.orders",
    )
    # The failing table: its runner is refused before it copies (query-rejected).
    command = wrapper_script(
        tmp_path / "runner.sh",
        'case "$ROCKY_TASK" in *\'"table":"bad"\'*) echo \'{"v":1,"asset_key":["duckdb",'
        '"acme","shop","bad"],"outcome":"failed","rows_copied":0,"duration_ms":1,'
        '"failure_kind":"query-rejected","error":"planted"}\' > "$ROCKY_RESULT_PATH"; exit 12;;'
        " esac\nexec $RUNNER",
    )
    listed = ["orders", "items", "bad", "refunds"]
    doc = manifest_doc(warehouse)
    doc["spec"]["source"]["tables"] = listed
    result = run(write_manifest(tmp_path / "run.yaml", doc), LocalOptions(runner_command=command))
    assert result.code == 2, result.stderr
    out = _checked(result)

    requested = {f"duckdb/{tenant}/shop/{name}" for tenant in ("acme", "globex") for name in listed}
    copied = result.copied()
    failed = [("/".join(e["asset_key"])) for e in out["errors"]]
    skipped = [c["model"] for c in out.get("contained") or []]
    excluded = list(_excluded(out))
    reported = copied + failed + skipped + excluded
    assert sorted(reported) == sorted(requested)  # each exactly once
    assert len(requested) == (
        out["tables_copied"] + out["tables_failed"] + out["tables_skipped"] + len(excluded)
    )
    assert _excluded(out) == {
        "duckdb/acme/shop/refunds": "missing_from_source",
        "duckdb/globex/shop/bad": "not_in_schema",  # acme has it: not a typo
        "duckdb/globex/shop/refunds": "missing_from_source",
        "duckdb/globex/shop/items": "view",
    }
    assert result.kinds() == {"duckdb/acme/shop/bad": "query-rejected"}

    rows = {"/".join(m["asset_key"]): m["rows_copied"] for m in out["materializations"]}
    assert rows == {
        "duckdb/acme/shop/orders": 20,
        "duckdb/acme/shop/items": 20,
        "duckdb/globex/shop/orders": 20,
    }
    assert _target_rows(tmp_path, "acme_wh") == {
        "staging__shop.items": 20,
        "staging__shop.orders": 20,
    }
    assert _target_rows(tmp_path, "globex_wh") == {"staging__shop.orders": 20}
