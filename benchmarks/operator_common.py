"""Shared set-up of the operator benchmarks: a test API server (kmock's emulator, counting
requests per client), a fake kubelet, DuckDB warehouses, the operator in-process.

Not a benchmark itself. See operator_api.py and operator_rss.py.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kmock
from tests.operator.harness import (
    Cluster,
    CountingEmulator,
    declare_resources,
    make_warehouse,
)
from tests.support.kubeapi import KubeApi, KubeConfig

NAMESPACE = "bench"


@dataclass
class Bench:
    server: str
    emulator: CountingEmulator
    cluster: Cluster

    def operator_requests(self) -> dict[str, int]:
        return {
            k.removeprefix("operator "): v
            for k, v in sorted(self.emulator.counts.items())
            if k.startswith("operator ")
        }


@contextlib.asynccontextmanager
async def bench_server() -> AsyncIterator[Bench]:
    async with CountingEmulator() as emulator, kmock.Server(emulator) as server:
        declare_resources(emulator)
        url = str(server.url).rstrip("/")
        async with KubeApi(KubeConfig(server=url)) as api:
            await api.post(
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
            )
            yield Bench(url, emulator, Cluster(api, NAMESPACE))


def warehouse(path: Path, tables: int, per_schema: int = 100) -> None:
    """``tables`` tables: ``tables / per_schema`` schemas of tenant acme."""
    schemas = [f"src__acme__r{i:03d}__shop" for i in range(max(tables // per_schema, 1))]
    make_warehouse(str(path), schemas, [f"t{i:04d}" for i in range(min(per_schema, tables))])


def spec(path: Path, concurrency: int) -> dict[str, Any]:
    return {
        "adapter": {"type": "duckdb", "duckdb": {"path": str(path)}},
        "source": {"schemaPattern": {"components": ["tenant", "region", "source"]}},
        "target": {"catalogTemplate": "{tenant}_wh", "schemaTemplate": "staging__{region}"},
        "concurrency": concurrency,
        "runner": {"image": "rocky:bench"},
    }
