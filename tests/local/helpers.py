"""Helpers for the local executor tests: small real DuckDB warehouses and manifests."""

from __future__ import annotations

import contextlib
import io
import json
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import yaml
from tests.support.rocky_schema import check_run_output

from rocky_operator.local.executor import LocalOptions, run_local

ROOT = Path(__file__).resolve().parents[2]


def validate_output(doc: dict[str, Any]) -> Any:
    """Validate against Rocky's schema, check its accounting (every table in exactly one
    list, totals = list lengths) and parse with rocky-sdk; return the parsed result."""
    return check_run_output(doc)


def build_warehouse(path: Path, schemas: Mapping[str, Sequence[str]]) -> Path:
    """A DuckDB file with the given source schemas and small tables."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(duckdb.connect(str(path))) as conn:
        for schema, tables in schemas.items():
            conn.execute(f'CREATE SCHEMA "{schema}"')
            for table in tables:
                conn.execute(
                    f'CREATE TABLE "{schema}"."{table}" AS SELECT i AS id, '
                    "'row ' || i AS name, TIMESTAMP '2026-01-01' + to_minutes(i) AS "
                    "_fivetran_synced FROM range(1, 21) AS r(i)"
                )
    return path


def manifest_doc(warehouse: Path, **spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "rocky.dev/v1alpha1",
        "kind": "RockyRun",
        "metadata": {"name": "test-run"},
        "spec": {
            "adapter": {
                "type": "duckdb",
                "duckdb": {"path": str(warehouse), "lockTimeoutSeconds": 30},
            },
            "source": {"schemaPattern": {"components": ["tenant", "source"]}},
            "target": {"catalogTemplate": "{tenant}_wh", "schemaTemplate": "staging__{source}"},
            "concurrency": 2,
        },
    }
    doc["spec"].update(spec)
    return doc


def write_manifest(path: Path, doc: Mapping[str, Any] | str) -> Path:
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(dict(doc), sort_keys=False))
    return path


@dataclass
class LocalRun:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.stdout)
        return loaded

    def kinds(self) -> dict[str, str]:
        return {"/".join(e["asset_key"]): e["failure_kind"] for e in self.output["errors"]}

    def copied(self) -> list[str]:
        return ["/".join(m["asset_key"]) for m in self.output["materializations"]]


def run(
    manifest: Path, options: LocalOptions | None = None, resume_kinds: str | None = None
) -> LocalRun:
    out, err = io.StringIO(), io.StringIO()
    code = run_local(
        manifest,
        options or LocalOptions(),
        stdout=out,
        stderr=err,
        resume_kinds_text=resume_kinds,
    )
    return LocalRun(code, out.getvalue(), err.getvalue())


def wrapper_script(path: Path, body: str) -> list[str]:
    """A runner command: a shell script that runs ``body`` then (usually) the real runner.

    ``$RUNNER`` in the body is the real runner command.
    """
    runner = f"{sys.executable} -m rocky_runner"
    path.write_text(f"#!/bin/sh\nRUNNER='{runner}'\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return [str(path)]
