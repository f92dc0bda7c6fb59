"""Every table accounted for (issue 10), through the local executor with real runners.

Checks, one test per case: runners of one DuckDB target file never overlap, so a run
at any concurrency cannot fail on its own lock (16).
"""

from __future__ import annotations

from pathlib import Path

from tests.local.helpers import (
    build_warehouse,
    manifest_doc,
    run,
    validate_output,
    wrapper_script,
    write_manifest,
)

from rocky_operator.local.executor import LocalOptions


def _overlaps(events: Path) -> dict[str, int]:
    """Peak number of runners in flight per target catalog, from start/end lines."""
    timeline = []
    for line in events.read_text().splitlines():
        what, catalog, stamp = line.split()
        timeline.append((float(stamp), 1 if what == "start" else -1, catalog))
    level: dict[str, int] = {}
    peak: dict[str, int] = {}
    for _, step, catalog in sorted(timeline):
        level[catalog] = level.get(catalog, 0) + step
        peak[catalog] = max(peak.get(catalog, 0), level[catalog])
    return peak


def test_one_duckdb_target_file_never_has_two_writers(tmp_path: Path) -> None:
    """8 tables into one file plus 2 into another at concurrency 6, no lock wait allowed
    (lockTimeoutSeconds 0, no retries): every table copies, at most one runner per file
    is in flight, and the other file is not held up by it."""
    schemas = {
        "src__acme__shop": [f"t{i}" for i in range(8)],
        "src__globex__shop": ["a", "b"],
    }
    warehouse = build_warehouse(tmp_path / "w.duckdb", schemas)
    events = tmp_path / "events.log"
    catalog = '$(echo "$ROCKY_TASK" | sed \'s/.*"target":{"catalog":"\\([^"]*\\)".*/\\1/\')'
    command = wrapper_script(
        tmp_path / "runner.sh",
        f'cat={catalog}\necho "start $cat $(date +%s.%N)" >> {events}\n'
        "$RUNNER\ncode=$?\n"
        f'echo "end $cat $(date +%s.%N)" >> {events}\n'
        "exit $code",
    )
    doc = manifest_doc(warehouse, concurrency=6, retry={"transient": {"maxRetries": 0}})
    doc["spec"]["adapter"]["duckdb"]["lockTimeoutSeconds"] = 0
    manifest = write_manifest(tmp_path / "run.yaml", doc)
    result = run(manifest, LocalOptions(runner_command=command))
    assert result.code == 0, result.stdout + result.stderr
    validate_output(result.output)
    assert result.output["tables_copied"] == 10
    assert _overlaps(events) == {"acme_wh": 1, "globex_wh": 1}


def test_a_result_that_contradicts_its_exit_code_is_not_trusted(tmp_path: Path) -> None:
    """Case 6: a runner writes ``copied`` with ``rows_copied: -5`` and exits 12: the table
    fails as unknown with both facts in the error; the RunOutput stays valid."""
    warehouse = build_warehouse(tmp_path / "w.duckdb", {"src__acme__shop": ["a", "b"]})
    result = (
        '{"v":1,"asset_key":["duckdb","acme","shop","a"],"outcome":"copied",'
        '"rows_copied":-5,"duration_ms":3}'
    )
    command = wrapper_script(
        tmp_path / "runner.sh",
        f'case "$ROCKY_TASK" in *\'"table":"a"\'*) echo \'{result}\' > "$ROCKY_RESULT_PATH";'
        " exit 12;; esac\nexec $RUNNER",
    )
    manifest = write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse))
    run_ = run(manifest, LocalOptions(runner_command=command))
    assert run_.code == 2, run_.stderr
    out = run_.output
    validate_output(out)
    assert run_.copied() == ["duckdb/acme/shop/b"]
    (error,) = out["errors"]
    assert error["failure_kind"] == "unknown"
    assert "rows_copied is -5" in error["error"]
    assert "exited 12" in error["error"]
