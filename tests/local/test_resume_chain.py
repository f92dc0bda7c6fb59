"""Issue 10 case 12: a resume of a resumed run runs only what is still failing.

Three real local runs on a DuckDB warehouse, each resuming from the previous one's
RunOutput (and once from its journal): the first fails two tables (transient and
auth-failed), the second retries only the transient one (``--resume-kinds``), the
third everything still failing, the fourth nothing. Each resumed output carries the
chain's copies and the failures it did not retry, validates against Rocky's schema and
parses with rocky-sdk; the warehouse holds every row exactly once.
"""

from __future__ import annotations

import contextlib
import json
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

TABLES = ["a", "b", "c", "d"]


def _keys(entries: list[Any]) -> list[str]:
    return sorted("/".join(e if isinstance(e, list) else e["asset_key"]) for e in entries)


def _run(
    manifest: Path, command: list[str], tmp: Path, n: int, resume: Path | None, kinds: str | None
) -> tuple[LocalRun, Path]:
    options = LocalOptions(
        runner_command=command,
        resume_from=str(resume) if resume else None,
        journal=tmp / f"run{n}.journal.jsonl",
    )
    result = run(manifest, options, resume_kinds=kinds)
    out = tmp / f"run{n}.json"
    out.write_text(result.stdout)
    validate_output(result.output)
    return result, out


def test_resume_of_a_resumed_run_runs_only_what_still_fails(tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "w.duckdb", {"src__acme__shop": TABLES})
    failing = tmp_path / "failing"  # "table:exit code" per line; the runner obeys it
    command = wrapper_script(
        tmp_path / "runner.sh",
        f'for f in $(cat {failing}); do case "$ROCKY_TASK" in *"\\"table\\":\\"${{f%:*}}\\""*) '
        "exit ${f#*:};; esac; done\nexec $RUNNER",
    )
    doc = manifest_doc(warehouse, retry={"transient": {"maxRetries": 0}})
    manifest = write_manifest(tmp_path / "run.yaml", doc)
    key = "duckdb/acme/shop/"

    failing.write_text("b:13\nc:11\n")  # b transient, c auth-failed
    first, out1 = _run(manifest, command, tmp_path, 1, None, None)
    assert first.kinds() == {key + "b": "transient", key + "c": "auth-failed"}
    assert sorted(first.copied()) == [key + "a", key + "d"]

    failing.write_text("c:11\n")  # the transient cause is gone; c's credential is not
    second, out2 = _run(manifest, command, tmp_path, 2, out1, "transient")
    assert second.copied() == [key + "b"]
    assert second.output["errors"] == []
    assert _keys(second.output["carried_copied"]) == [key + "a", key + "d"]
    assert [(e["asset_key"][-1], e["failure_kind"]) for e in second.output["carried_failed"]] == [
        ("c", "auth-failed")
    ]

    failing.write_text("")  # the credential is fixed
    # From the second run's journal or its output: the same plan, only c.
    third, out3 = _run(manifest, command, tmp_path, 3, tmp_path / "run2.journal.jsonl", None)
    assert third.copied() == [key + "c"]
    assert _keys(third.output["carried_copied"]) == [key + t for t in "abd"]
    assert "carried_failed" not in third.output
    assert "resuming from" in third.stderr
    assert "1 of 4 table(s) to run" in third.stderr

    fourth, _ = _run(manifest, command, tmp_path, 4, out3, None)
    assert fourth.output["materializations"] == []
    assert _keys(fourth.output["carried_copied"]) == [key + t for t in TABLES]

    # Every row once: no table was copied twice along the chain.
    with contextlib.closing(duckdb.connect(str(tmp_path / "acme_wh.duckdb"))) as conn:
        counts = {
            t: conn.execute(f"SELECT count(*) FROM staging__shop.{t}").fetchone()[0]  # type: ignore[index]
            for t in TABLES
        }
    assert counts == dict.fromkeys(TABLES, 20)
    copied_along = [m for o in (first, second, third) for m in o.copied()]
    assert sorted(copied_along) == [key + t for t in TABLES]
    assert json.loads(out2.read_text())["resumed_from"] == str(out1)
