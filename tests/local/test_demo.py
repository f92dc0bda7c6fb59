"""The demo end to end: ``rocky-operator demo`` as a user runs it.

It must exit 2, print a RunOutput that validates against Rocky's schema and parses
with rocky-sdk, contain at least four distinct failure kinds (exactly the planted
ones), account for every table the filter selects exactly once and none it
excludes, and behave exactly like ``rocky-operator local`` on the same manifest.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.local.helpers import ROOT, validate_output

from rocky_operator.demo import manifest_resource
from rocky_operator.demo.warehouse import PLANTED, SCHEMAS, build_warehouse, hold_lock

EXAMPLE = ROOT / "examples" / "demo" / "rockyrun.yaml"
CLI = [sys.executable, "-m", "rocky_operator.cli"]


def test_packaged_manifest_is_the_example() -> None:
    assert manifest_resource().read_text(encoding="utf-8") == EXAMPLE.read_text(encoding="utf-8")


def test_warehouse_has_the_promised_shape(tmp_path: Path) -> None:
    built = build_warehouse(tmp_path)
    source_schemas = [s for s in SCHEMAS if s.startswith("src__")]
    assert len(source_schemas) >= 3
    assert built.tables >= 12
    assert len({p.failure_kind for p in PLANTED}) >= 4


def _expected_tables() -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = []
    for schema, tables in SCHEMAS.items():
        _, tenant, region, source = schema.split("__")
        if tenant == "acme":
            keys.extend(("duckdb", tenant, region, source, t) for t in tables)
    return sorted(keys)


def _accounted(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    keys = [tuple(m["asset_key"]) for m in doc["materializations"]]
    keys += [tuple(e["asset_key"]) for e in doc["errors"]]
    keys += [tuple(c["model"].split("/")) for c in doc.get("contained", [])]
    return sorted(keys)


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    workdir = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [*CLI, "demo", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return proc, workdir


@pytest.mark.slow
def test_demo_exits_2_with_four_kinds_and_every_table_once(
    demo_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, _ = demo_run
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    parsed = validate_output(doc)
    assert parsed.status == "PartialFailure"
    kinds = {tuple(e.asset_key): e.failure_kind for e in parsed.errors}
    assert kinds == {p.asset_key: p.failure_kind for p in PLANTED}
    assert len(set(kinds.values())) >= 4
    assert _accounted(doc) == _expected_tables()
    assert len(_expected_tables()) >= 12
    assert not any(m.asset_key[1] == "globex" for m in parsed.materializations)
    assert parsed.tables_copied == len(_expected_tables()) - len(PLANTED)
    # Retried kinds show their attempts on stderr.
    assert "retry  duckdb/acme/us_west/zendesk/tickets (attempt 2)" in proc.stderr
    assert "failures by failure_kind" in proc.stderr


_VARYING = frozenset({"duration_ms", "copy_ms", "backoff_ms", "started_at", "watermark", "error"})


def _normal_output(doc: Any, workdir: Path) -> Any:
    """The document without what differs between two runs (times, paths, error text)."""
    if isinstance(doc, dict):
        return {
            k: ("<varies>" if k in _VARYING else _normal_output(v, workdir)) for k, v in doc.items()
        }
    if isinstance(doc, list):
        return [_normal_output(v, workdir) for v in doc]
    if isinstance(doc, str):
        return doc.replace(str(workdir), "<DIR>")
    return doc


def _normal_stderr(text: str, workdir: Path) -> list[str]:
    lines = []
    for line in text.replace(str(workdir), "<DIR>").splitlines():
        if line.startswith("demo:"):
            continue
        line = re.sub(r"(\] ).*", r"\1...", line)  # error text after [failure_kind]
        lines.append(re.sub(r"\d+", "N", line))
    return lines


@pytest.mark.slow
def test_demo_is_exactly_a_local_run(
    demo_run: tuple[subprocess.CompletedProcess[str], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Same stdout, stderr and exit code as `rocky-operator local` on the example."""
    demo, demo_dir = demo_run
    local_dir = tmp_path_factory.mktemp("locl")  # same length as "demo": same layout
    built = build_warehouse(local_dir)
    with hold_lock(built.locked_target), contextlib.chdir(ROOT):
        local = subprocess.run(
            [*CLI, "local", "examples/demo/rockyrun.yaml", "--mount", f"/data={local_dir}"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert local.returncode == demo.returncode == 2
    assert _normal_output(json.loads(local.stdout), local_dir) == _normal_output(
        json.loads(demo.stdout), demo_dir
    )
    # The same lines; their order follows timing (a retry's backoff vs. other tables).
    assert sorted(_normal_stderr(local.stderr, local_dir)) == sorted(
        _normal_stderr(demo.stderr, demo_dir)
    )
