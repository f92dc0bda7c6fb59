"""Pod paths mapped to local directories (``--mount``), and the progress output modes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from tests.local.helpers import manifest_doc, write_manifest

from rocky_operator.local.manifest import load_manifest, localize, map_path
from rocky_operator.local.progress import Reporter


@pytest.mark.parametrize(
    ("path", "mounts", "expected"),
    [
        ("/data/w.duckdb", {"/data": "/tmp/x"}, "/tmp/x/w.duckdb"),
        ("/data/sub/w.duckdb", {"/data": "/tmp/x", "/data/sub": "/srv/y"}, "/srv/y/w.duckdb"),
        ("/database/w.duckdb", {"/data": "/tmp/x"}, "/database/w.duckdb"),
        ("relative/w.duckdb", {"/data": "/tmp/x"}, "relative/w.duckdb"),
        ("/data", {"/data": "/tmp/x"}, "/tmp/x"),
    ],
)
def test_map_path(path: str, mounts: dict[str, str], expected: str) -> None:
    assert map_path(path, mounts) == expected


def test_localize_rewrites_only_the_duckdb_path(tmp_path: Path) -> None:
    manifest = load_manifest(
        write_manifest(tmp_path / "run.yaml", manifest_doc(Path("/data/w.duckdb")))
    )
    local = localize(manifest, {"/data": str(tmp_path)})
    assert local.spec.adapter.duckdb is not None
    assert local.spec.adapter.duckdb.path == str(tmp_path / "w.duckdb")
    assert local.spec.target == manifest.spec.target
    assert manifest.spec.adapter.duckdb is not None
    assert manifest.spec.adapter.duckdb.path == "/data/w.duckdb"  # the original is untouched


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal() -> None:
    plain, tty = io.StringIO(), _Terminal()
    for stream in (plain, tty):
        reporter = Reporter(stream)
        reporter.start("r", total=2, concurrency=1)
        reporter.table_settled()
        reporter.stop()
    assert "\x1b[" in tty.getvalue()
    assert "\x1b[" not in plain.getvalue()
    assert plain.getvalue().strip() == "rocky-operator: run r: 2 table(s), concurrency 1"
