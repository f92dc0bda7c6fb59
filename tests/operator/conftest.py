"""Fixtures of the operator suite: kmock as the Kubernetes API, a namespace, a fake kubelet,
and a real DuckDB warehouse for discovery."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.operator.harness import (
    Cluster,
    CountingEmulator,
    FakeKubelet,
    declare_resources,
    make_warehouse,
)
from tests.support.kubeapi import KubeApi, KubeConfig

NAMESPACE = "rocky-test"
TABLES = [f"t{i:02d}" for i in range(1, 13)]


@pytest.fixture
def kmock_options(kmock_options: dict[str, Any]) -> dict[str, Any]:
    return {**kmock_options, "cls": CountingEmulator}


@pytest.fixture
async def api_server(kmock: Any) -> str:
    """The in-process Kubernetes API (kmock's emulator); its base URL."""
    declare_resources(kmock)
    return str(kmock.url).rstrip("/")


@pytest.fixture
def api_counts(kmock: Any) -> Counter[str]:
    """Requests counted at the test API server by client, verb and resource."""
    counts: Counter[str] = kmock.counts
    return counts


@pytest.fixture
async def cluster(api_server: str) -> AsyncIterator[Cluster]:
    async with KubeApi(KubeConfig(server=api_server)) as api:
        await api.post(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        )
        yield Cluster(api, NAMESPACE)


@pytest.fixture
async def kubelet(cluster: Cluster) -> AsyncIterator[FakeKubelet]:
    async with FakeKubelet(cluster.api, cluster.namespace) as fake:
        yield fake


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    """A DuckDB file with one source schema of 12 tables (t01..t12) and a second schema
    the filter excludes."""
    path = tmp_path / "warehouse.duckdb"
    make_warehouse(str(path), ["src__acme__us_west__shopify", "src__globex__eu__stripe"], TABLES)
    return path


def run_spec(warehouse: Path, **overrides: Any) -> dict[str, Any]:
    """A RockyRun spec on the test warehouse: tenant acme's 12 tables, fast retries."""
    spec: dict[str, Any] = {
        "adapter": {"type": "duckdb", "duckdb": {"path": str(warehouse)}},
        "source": {
            "schemaPattern": {
                "prefix": "src__",
                "separator": "__",
                "components": ["tenant", "region", "source"],
            }
        },
        "target": {
            "catalogTemplate": "{tenant}_warehouse",
            "schemaTemplate": "staging__{region}__{source}",
        },
        "filter": "tenant=acme",
        "concurrency": 4,
        "retry": {
            "transient": {"backoffSeconds": 0.1, "maxBackoffSeconds": 0.2},
            "connection-failed": {"backoffSeconds": 0.1, "maxBackoffSeconds": 0.2},
            "quota-exceeded": {"backoffSeconds": 0.1, "maxBackoffSeconds": 0.2},
        },
        "runner": {"image": "rocky:test"},
    }
    spec.update(overrides)
    return spec
