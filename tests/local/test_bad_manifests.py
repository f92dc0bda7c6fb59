"""A wrong manifest or resume file: one message naming the field, exit 1, nothing runs.

Every case runs ``rocky-operator local`` on a manifest whose warehouse exists, with a
runner command that leaves a marker file if it is ever started, and checks that the
message names the offending field, stdout stays empty (no discovery, no RunOutput)
and no runner ran.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.local.helpers import build_warehouse, manifest_doc, run, wrapper_script, write_manifest

from rocky_operator.local.executor import LocalOptions

Mutator = Callable[[dict[str, Any]], Any]


def _set(path: str, value: Any) -> Mutator:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[part]
        node[last] = value

    return mutate


def _delete(path: str) -> Mutator:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


CASES: dict[str, tuple[Mutator | str, str]] = {
    "YAML syntax error": ("spec: {adapter: [unclosed\n", "not valid YAML at line"),
    "wrong apiVersion": (_set("apiVersion", "rocky.dev/v2"), "apiVersion: expected"),
    "wrong kind": (_set("kind", "RockySchedule"), "kind: expected 'RockyRun'"),
    "missing metadata.name": (_delete("metadata.name"), "metadata.name: required"),
    "bad metadata.name": (_set("metadata.name", "Not_A_Name"), "metadata.name:"),
    "unknown spec field": (_set("spec.concurency", 3), "spec.concurency: unknown field"),
    "unknown nested field (alias named)": (
        _set("spec.adapter.duckdb.lockTimeoutSecond", 3),
        "spec.adapter.duckdb.lockTimeoutSecond: unknown field",
    ),
    "wrong type": (_set("spec.concurrency", 0), "spec.concurrency: Input should be greater"),
    "missing required block": (_delete("spec.target"), "spec.target: required field is missing"),
    "bad template placeholder": (
        _set("spec.target.schemaTemplate", "staging__{region}"),
        "target.schemaTemplate 'staging__{region}' uses placeholder {region}",
    ),
    "memoryLimit that is not a size (issue 10 case 11)": (
        _set("spec.adapter.duckdb.memoryLimit", "lots"),
        "spec.adapter.duckdb.memoryLimit: 'lots' is not a memory size",
    ),
    "memoryLimit too small to run": (
        _set("spec.adapter.duckdb.memoryLimit", "2KB"),
        "spec.adapter.duckdb.memoryLimit: '2KB' is below the smallest usable memory limit",
    ),
    "unbalanced brace in a template": (
        _set("spec.target.schemaTemplate", "{source"),
        "target.schemaTemplate '{source' has an unbalanced or empty brace",
    ),
    "target escaping the warehouse directory": (
        _set("spec.target.catalogTemplate", "../../tmp/evil_{tenant}"),
        "target.catalogTemplate '../../tmp/evil_{tenant}' contains '/'",
    ),
    "filter on a missing component": (
        _set("spec.filter", "region=eu"),
        "filter 'region=eu' names component 'region'",
    ),
    "bad retry kind": (
        _set("spec.retry", {"transient-ish": {"maxRetries": 1}}),
        "spec.retry.transient-ish: unknown field",
    ),
    "resumeFrom cannot be read locally": (
        _set("spec.resumeFrom", "yesterday"),
        "spec.resumeFrom: names the RockyRun 'yesterday'",
    ),
    "unknown top-level field": (_set("specs", {}), "specs: unknown top-level field"),
}


@pytest.fixture
def marker_runner(tmp_path: Path) -> tuple[list[str], Path]:
    marker = tmp_path / "runner-started"
    return wrapper_script(tmp_path / "runner.sh", f"touch {marker}\nexec $RUNNER"), marker


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_manifest_exits_1_naming_the_field(
    case: str, tmp_path: Path, marker_runner: tuple[list[str], Path]
) -> None:
    change, expected = CASES[case]
    warehouse = build_warehouse(tmp_path / "w.duckdb", {"src__acme__shop": ["orders"]})
    if isinstance(change, str):
        manifest = write_manifest(tmp_path / "run.yaml", change)
    else:
        doc = manifest_doc(warehouse)
        change(doc)
        manifest = write_manifest(tmp_path / "run.yaml", doc)
    command, marker = marker_runner
    result = run(manifest, LocalOptions(runner_command=command))
    assert result.code == 1
    assert result.stdout == ""
    assert expected in result.stderr
    assert str(manifest) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    ("kinds", "resume", "expected"),
    [
        ("transient,flaky", True, "--resume-kinds: unknown failure kind 'flaky'"),
        ("transient", False, "--resume-kinds needs --resume-from"),
        (None, "missing", "--resume-from"),
        (None, "not-json", "not JSON"),
        (None, "not-run", "not a RunOutput of a run"),
    ],
)
def test_bad_resume_options_exit_1(
    kinds: str | None,
    resume: bool | str,
    expected: str,
    tmp_path: Path,
    marker_runner: tuple[list[str], Path],
) -> None:
    warehouse = build_warehouse(tmp_path / "w.duckdb", {"src__acme__shop": ["orders"]})
    manifest = write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse))
    previous = tmp_path / "previous.json"
    if resume == "not-json":
        previous.write_text("{not json")
    elif resume == "not-run":
        previous.write_text('{"command": "plan"}')
    elif resume is True:
        previous.write_text('{"command": "run", "materializations": [], "errors": []}')
    command, marker = marker_runner
    options = LocalOptions(
        runner_command=command, resume_from=str(previous) if resume is not False else None
    )
    result = run(manifest, options, resume_kinds=kinds)
    assert result.code == 1
    assert expected in result.stderr
    assert result.stdout == ""
    assert not marker.exists()


def test_an_oversized_manifest_is_refused_unread(
    tmp_path: Path, marker_runner: tuple[list[str], Path]
) -> None:
    """A manifest over 1.5 MiB (what Kubernetes stores per object): one line, exit 1,
    refused before YAML parsing (a 50 MB comment used to take 45 s)."""
    warehouse = build_warehouse(tmp_path / "w.duckdb", {"src__acme__shop": ["orders"]})
    manifest = write_manifest(tmp_path / "run.yaml", manifest_doc(warehouse))
    with manifest.open("a", encoding="utf-8") as stream:
        stream.write("# " + "x" * (2 * 1024 * 1024) + "\n")
    command, marker = marker_runner
    result = run(manifest, LocalOptions(runner_command=command))
    assert result.code == 1
    assert result.stdout == ""
    assert "larger than 1572864 bytes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not marker.exists()


def test_cli_reports_a_bad_manifest_on_stderr_only(tmp_path: Path) -> None:
    """The real command line: exit 1, nothing on stdout, the field on stderr."""
    warehouse = build_warehouse(tmp_path / "w.duckdb", {"src__acme__shop": ["orders"]})
    doc = manifest_doc(warehouse)
    doc["spec"]["strategy"] = "merge"
    manifest = write_manifest(tmp_path / "run.yaml", doc)
    proc = subprocess.run(
        [sys.executable, "-m", "rocky_operator.cli", "local", str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "spec.strategy: Input should be 'incremental' or 'full_refresh'" in proc.stderr
