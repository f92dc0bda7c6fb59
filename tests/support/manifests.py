"""RockyRun manifests shared by the e2e tests and the benchmarks that drive many tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def staging_run(name: str, warehouse: Path, *, concurrency: int, **spec: Any) -> dict[str, Any]:
    """A full_refresh RockyRun over the ``src__<tenant>__<region>`` schemas of a DuckDB
    `warehouse` into ``{tenant}_{region}.staging``; `spec` adds or overrides spec keys
    (e.g. ``runner``)."""
    return {
        "apiVersion": "rocky.dev/v1alpha1",
        "kind": "RockyRun",
        "metadata": {"name": name},
        "spec": {
            "adapter": {"type": "duckdb", "duckdb": {"path": str(warehouse)}},
            "source": {"schemaPattern": {"components": ["tenant", "region"]}},
            "target": {"catalogTemplate": "{tenant}_{region}", "schemaTemplate": "staging"},
            "strategy": "full_refresh",
            "concurrency": concurrency,
            **spec,
        },
    }
