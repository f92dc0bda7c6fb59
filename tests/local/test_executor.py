"""The local executor on real DuckDB files with real runner subprocesses.

Checks: a clean run copies every table (exit 0); the concurrency bound holds and is
used (measured from the runner processes themselves); fail-fast stops a running
runner with SIGTERM and leaves the rest not attempted; resume runs only what did not
copy (optionally only some kinds); a runner that leaves no result is classified from
its exit code or as unknown; discovery failure is exit 1 with a RunOutput; stderr
carries no terminal control codes when it is not a terminal.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from tests.local.helpers import (
    build_warehouse,
    manifest_doc,
    run,
    validate_output,
    wrapper_script,
    write_manifest,
)

from rocky_operator.local.executor import LocalOptions
from rocky_operator.local.process import classify_exit
from rocky_operator.logic.tables import table_key
from rocky_runner.contract import FailureKind

CLI = [sys.executable, "-m", "rocky_operator.cli"]
SCHEMAS = {
    "src__acme__shop": ["customers", "orders", "products"],
    "src__acme__crm": ["contacts", "deals"],
    "src__globex__shop": ["orders"],
}


def test_clean_run_copies_every_filtered_table(tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "w.duckdb", SCHEMAS)
    manifest = write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse, filter="tenant=acme"))
    result = run(manifest)
    assert result.code == 0, result.stderr
    parsed = validate_output(result.output)
    assert parsed.status == "Success"
    assert sorted(result.copied()) == sorted(
        f"duckdb/acme/{s.split('__')[2]}/{t}"
        for s, tables in SCHEMAS.items()
        if "acme" in s
        for t in tables
    )
    assert all(m.rows_copied == 20 for m in parsed.materializations)
    # The rows really are in the target files named by the templates.
    with contextlib.closing(duckdb.connect(str(tmp_path / "acme_wh.duckdb"))) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM staging__shop.orders").fetchone() or (0,)
    assert rows == 20
    assert not (tmp_path / "globex_wh.duckdb").exists()


def test_concurrency_bound_is_respected_and_used(tmp_path: Path) -> None:
    """Each runner process logs its start and end; at most `concurrency` overlap.

    One tenant per table, so every table has its own target file (tables of one
    DuckDB file take turns, see test_accounting.py)."""
    schemas = {f"src__t{i}__shop": ["orders"] for i in range(7)}
    warehouse = build_warehouse(tmp_path / "w.duckdb", schemas)
    events = tmp_path / "events.log"
    command = wrapper_script(
        tmp_path / "runner.sh",
        f'echo "start $(date +%s.%N)" >> {events}\n'
        "sleep 0.3\n"
        "$RUNNER\ncode=$?\n"
        f'echo "end $(date +%s.%N)" >> {events}\n'
        "exit $code",
    )
    manifest = write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse, concurrency=3))
    result = run(manifest, LocalOptions(runner_command=command))
    assert result.code == 0, result.stderr
    timeline = sorted(
        (float(stamp), 1 if what == "start" else -1)
        for what, stamp in (line.split() for line in events.read_text().splitlines())
    )
    level = peak = 0
    for _, step in timeline:
        level += step
        peak = max(peak, level)
    assert len(timeline) == 14
    assert peak == 3


def test_fail_fast_aborts_the_running_runner_and_leaves_the_rest(tmp_path: Path) -> None:
    """Table a fails at once (exit 12, no result); b's runner is waiting for a lock
    and must be stopped by SIGTERM, not waited for; c and d (same target file as a) never start."""
    schemas = {"src__acme__shop": ["a", "c", "d"], "src__globex__shop": ["b"]}
    warehouse = build_warehouse(tmp_path / "w.duckdb", schemas)
    command = wrapper_script(
        tmp_path / "runner.sh",
        'case "$ROCKY_TASK" in *\'"table":"a"\'*) sleep 2; exit 12;; esac\nexec $RUNNER',
    )
    doc = manifest_doc(warehouse, failFast=True, concurrency=2)
    manifest = write_manifest(tmp_path / "run.yaml", doc)
    # b's target file is locked by us: its runner waits (lockTimeoutSeconds 30).
    blocker = tmp_path / "globex_wh.duckdb"
    with contextlib.closing(duckdb.connect(str(blocker))):
        began = time.monotonic()
        result = run(
            manifest,
            LocalOptions(runner_command=command, grace_seconds=10, logs_dir=tmp_path / "logs"),
        )
        took = time.monotonic() - began
    assert took < 20, "the waiting runner was not aborted"
    assert result.code == 1  # nothing copied
    out = result.output
    validate_output(out)
    # Only a failed; b, stopped by the run before it committed, is not attempted (case 3).
    assert result.kinds() == {"duckdb/acme/shop/a": "query-rejected"}  # from exit code 12
    assert out["tables_failed"] == 1
    contained = {c["model"]: c for c in out["contained"]}
    assert set(contained) == {"duckdb/acme/shop/c", "duckdb/acme/shop/d", "duckdb/globex/shop/b"}
    assert all(c["blocked_by"] == ["duckdb/acme/shop/a"] for c in contained.values())
    assert all("fail-fast" in c["unblock_hint"] for c in contained.values())
    assert "stopped in flight" in contained["duckdb/globex/shop/b"]["unblock_hint"]
    assert out["tables_skipped"] == 3
    assert "fail-fast" in result.stderr
    # Issue 10: people read asset keys, never the internal table keys (10 hex characters).
    keys = {table_key(["duckdb", "acme", "shop", t]) for t in "acd"}
    keys.add(table_key(["duckdb", "globex", "shop", "b"]))
    texts = json.dumps(out) + result.stderr
    assert not [k for k in keys if k in texts]
    assert all(
        "after table duckdb/acme/shop/a failed" in c["unblock_hint"] for c in contained.values()
    )
    assert "after table duckdb/acme/shop/a failed" in result.stderr
    logs = sorted(p.name for p in (tmp_path / "logs").glob("*.log"))
    assert "duckdb.acme.shop.a-1.log" in logs
    assert "duckdb.globex.shop.b-1.log" in logs


def _plant_view(path: Path, schema: str, table: str) -> None:
    with contextlib.closing(duckdb.connect(str(path))) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        conn.execute(f"CREATE VIEW {schema}.{table} AS SELECT 1 AS x")


def test_resume_reruns_only_the_tables_that_did_not_copy(tmp_path: Path) -> None:
    schemas = {"src__acme__shop": ["customers", "orders", "refunds"], "src__acme__crm": ["deals"]}
    warehouse = build_warehouse(tmp_path / "w.duckdb", schemas)
    _plant_view(tmp_path / "acme_wh.duckdb", "staging__shop", "refunds")
    manifest = write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse))
    first = run(manifest)
    assert first.code == 2, first.stderr
    assert first.kinds() == {"duckdb/acme/shop/refunds": "query-rejected"}
    previous = tmp_path / "first.json"
    previous.write_text(first.stdout)

    # Fix the planted problem, then resume.
    with contextlib.closing(duckdb.connect(str(tmp_path / "acme_wh.duckdb"))) as conn:
        conn.execute("DROP VIEW staging__shop.refunds")
    events = tmp_path / "events.log"
    command = wrapper_script(
        tmp_path / "runner.sh", f'echo "$ROCKY_TASK" >> {events}\nexec $RUNNER'
    )
    second = run(manifest, LocalOptions(resume_from=str(previous), runner_command=command))
    assert second.code == 0, second.stderr
    parsed = validate_output(second.output)
    assert second.copied() == ["duckdb/acme/shop/refunds"]
    assert parsed.resumed_from == str(previous)
    started = [json.loads(line)["asset_key"] for line in events.read_text().splitlines()]
    assert started == [["duckdb", "acme", "shop", "refunds"]]
    assert "resuming from" in second.stderr


def test_resume_kinds_narrows_to_those_kinds(tmp_path: Path) -> None:
    schemas = {"src__acme__shop": ["orders", "refunds"], "src__acme__crm": ["deals"]}
    warehouse = build_warehouse(tmp_path / "w.duckdb", schemas)
    _plant_view(tmp_path / "acme_wh.duckdb", "staging__shop", "refunds")
    # deals fails through the runner's exit code 13 (transient), without retries.
    command = wrapper_script(
        tmp_path / "runner.sh",
        'case "$ROCKY_TASK" in *\'"table":"deals"\'*) exit 13;; esac\nexec $RUNNER',
    )
    doc = manifest_doc(warehouse, retry={"transient": {"maxRetries": 0}})
    manifest = write_manifest(tmp_path / "run.yaml", doc)
    first = run(manifest, LocalOptions(runner_command=command))
    assert first.kinds() == {
        "duckdb/acme/shop/refunds": "query-rejected",
        "duckdb/acme/crm/deals": "transient",
    }
    previous = tmp_path / "first.json"
    previous.write_text(first.stdout)
    second = run(manifest, LocalOptions(resume_from=str(previous)), resume_kinds="transient")
    assert second.code == 0, second.stderr
    assert second.copied() == ["duckdb/acme/crm/deals"]
    assert second.output["errors"] == []


def test_transient_failure_is_retried_and_copies(tmp_path: Path) -> None:
    """The first attempt fails by exit code 13 (transient); the retry copies."""
    warehouse = build_warehouse(tmp_path / "w.duckdb", {"src__acme__shop": ["orders"]})
    flag = tmp_path / "failed-once"
    command = wrapper_script(
        tmp_path / "runner.sh",
        f"if [ ! -e {flag} ]; then touch {flag}; exit 13; fi\nexec $RUNNER",
    )
    doc = manifest_doc(warehouse, retry={"transient": {"maxRetries": 2, "backoffSeconds": 0.2}})
    manifest = write_manifest(tmp_path / "run.yaml", doc)
    result = run(manifest, LocalOptions(runner_command=command))
    assert result.code == 0, result.stderr
    parsed = validate_output(result.output)
    trail = parsed.materializations[0].attempts
    assert [(a.attempt, a.outcome) for a in trail] == [(1, "failed"), (2, "success")]
    assert "will retry" in result.stderr


def test_runner_killed_without_result_is_unknown(tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "w.duckdb", {"src__acme__shop": ["orders"]})
    command = wrapper_script(tmp_path / "runner.sh", "kill -9 $$")
    manifest = write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse))
    result = run(manifest, LocalOptions(runner_command=command))
    assert result.code == 1
    error = result.output["errors"][0]
    assert error["failure_kind"] == "unknown"
    assert "SIGKILL" in error["error"]


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (10, "connection-failed"),
        (15, "not-found"),
        (16, "unknown"),
        (1, "unknown"),
        (-9, "unknown"),
    ],
)
def test_classify_exit(code: int, kind: str) -> None:
    assert classify_exit(code)[0] == FailureKind(kind)


def test_discovery_failure_is_a_failed_run_output(tmp_path: Path) -> None:
    doc = manifest_doc(tmp_path / "missing" / "w.duckdb")
    manifest = write_manifest(tmp_path / "run.yaml", doc)
    result = run(manifest)
    assert result.code == 1
    parsed = validate_output(result.output)
    assert parsed.status == "Failure"
    assert parsed.errors[0].failure_kind == "connection-failed"
    assert "discovery failed" in parsed.errors[0].error


def test_stderr_is_plain_when_not_a_terminal(tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "w.duckdb", {"src__acme__shop": ["orders"]})
    _plant_view(tmp_path / "acme_wh.duckdb", "staging__shop", "orders")
    manifest = write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse))
    result = run(manifest)
    assert "\x1b[" not in result.stderr
    assert "failures by failure_kind" in result.stderr
    assert "query-rejected" in result.stderr
    assert "exit 1" in result.stderr


def test_ctrl_c_cancels_the_run_and_still_prints_the_output(tmp_path: Path) -> None:
    """SIGINT to `rocky-operator local`: the running runner is stopped, the rest is not
    attempted, and the RunOutput says interrupted."""
    schemas = {"src__acme__shop": ["a", "b", "c"]}
    warehouse = build_warehouse(tmp_path / "w.duckdb", schemas)
    manifest = write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse, concurrency=1))
    logs = tmp_path / "logs"
    # Table a's target file is locked by us: its runner waits (lockTimeoutSeconds 30).
    with contextlib.closing(duckdb.connect(str(tmp_path / "acme_wh.duckdb"))):
        proc = subprocess.Popen(
            [*CLI, "local", str(manifest), "--logs-dir", str(logs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not list(logs.glob("*.log")) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # let the runner get to its lock wait
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    doc = json.loads(out)
    validate_output(doc)
    assert doc["interrupted"] is True
    # a was stopped by the run before it committed: not attempted, like b and c (case 3).
    assert doc["errors"] == []
    contained = {c["model"]: c["unblock_hint"] for c in doc["contained"]}
    assert sorted(contained) == ["duckdb/acme/shop/a", "duckdb/acme/shop/b", "duckdb/acme/shop/c"]
    assert all("cancelled" in hint for hint in contained.values())
    assert "stopped in flight" in contained["duckdb/acme/shop/a"]


def test_a_runner_that_cannot_start_fails_as_unknown(tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "w.duckdb", {"src__acme__shop": ["a", "b"]})
    manifest = write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse))
    result = run(manifest, LocalOptions(runner_command=[str(tmp_path / "no-such-runner")]))
    assert result.code == 1
    kinds = result.kinds()
    assert kinds == {"duckdb/acme/shop/a": "unknown", "duckdb/acme/shop/b": "unknown"}
    assert "could not start the runner" in result.output["errors"][0]["error"]


def test_auth_breaker_stops_launching_and_reports_the_rest_as_auth_failed(tmp_path: Path) -> None:
    """Every runner is rejected (exit 11, auth-failed); after 3 no more are started."""
    tables = [f"t{i}" for i in range(6)]
    warehouse = build_warehouse(tmp_path / "w.duckdb", {"src__acme__shop": tables})
    starts = tmp_path / "starts.log"
    command = wrapper_script(tmp_path / "runner.sh", f"echo x >> {starts}\nexit 11")
    manifest = write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse, concurrency=1))
    result = run(manifest, LocalOptions(runner_command=command))
    assert result.code == 1
    assert len(starts.read_text().splitlines()) == 3
    errors = result.output["errors"]
    assert [e["failure_kind"] for e in errors] == ["auth-failed"] * 6
    never = [e for e in errors if "not attempted" in e["error"]]
    assert [e["asset_key"][-1] for e in never] == ["t3", "t4", "t5"]
    assert "circuit breaker open" in result.stderr
