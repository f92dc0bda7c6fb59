"""Fixtures of the operator suite: kmock as the Kubernetes API, a namespace, a fake kubelet,
and a real DuckDB warehouse for discovery."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import duckdb
import kmock
import pytest
from kmock._internal import parsing as _parsing
from tests.operator.harness import Cluster, FakeKubelet
from tests.support.kubeapi import KubeApi, KubeConfig

NAMESPACE = "rocky-test"
TABLES = [f"t{i:02d}" for i in range(1, 13)]


def _parse_path_with_namespaces(path: str) -> Any:
    """kmock 0.8 cannot parse ``/api/v1/namespaces`` (the cluster-scoped namespace list
    kopf's backbone reads): it takes ``namespaces`` for the namespace prefix of a
    namespaced path. Parse it as the ``namespaces`` resource; defer otherwise."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) in (3, 4):
        name = parts[3] if len(parts) == 4 else None
        return _parsing.ParsedPath("", "v1", "namespaces", None, name, None)
    return _ORIGINAL_PARSE_PATH(path)


_ORIGINAL_PARSE_PATH = _parsing.parse_path
_parsing.parse_path = _parse_path_with_namespaces


@attrs.define(kw_only=True)
class CountingEmulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator, counting requests by verb and resource, and keeping
    only a short request history: kmock matches each request against its whole history
    (O(n) per request), which makes runs of thousands of requests crawl."""

    counts: Counter[str] = attrs.field(factory=Counter, init=False)

    async def __call__(self, raw_request: Any) -> Any:
        del self._requests[:-8]
        path = raw_request.path.split("?", 1)[0].strip("/").split("/")
        resource = next((p for p in reversed(path) if p in RESOURCES), "other")
        if path[-1] == "status":
            resource += "/status"
        watch = "watch" if raw_request.query.get("watch") == "true" else raw_request.method
        self.counts[f"{watch} {resource}"] += 1
        return await super().__call__(raw_request)


RESOURCES = {
    "pods",
    "configmaps",
    "secrets",
    "events",
    "rockyruns",
    "namespaces",
    "customresourcedefinitions",
}


@pytest.fixture
def kmock_options(kmock_options: dict[str, Any]) -> dict[str, Any]:
    return {**kmock_options, "cls": CountingEmulator}


def _declare(api: Any) -> None:
    info = kmock.ResourceInfo
    api.resources["rocky.dev/v1alpha1/rockyruns"] = info(
        kind="RockyRun",
        singular="rockyrun",
        namespaced=True,
        shortnames={"rr"},
        verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
        subresources={"status"},
    )
    # kopf's backbone: it waits for these to be discoverable before it watches anything.
    api.resources["v1/namespaces"] = info(
        kind="Namespace", singular="namespace", namespaced=False, verbs={"get", "list", "watch"}
    )
    api.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = info(
        kind="CustomResourceDefinition",
        singular="customresourcedefinition",
        namespaced=False,
        verbs={"get", "list", "watch"},
    )
    for plural, kind in (
        ("pods", "Pod"),
        ("configmaps", "ConfigMap"),
        ("secrets", "Secret"),
        ("events", "Event"),
    ):
        api.resources[f"v1/{plural}"] = info(
            kind=kind,
            singular=kind.lower(),
            namespaced=True,
            verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
        )


@pytest.fixture
async def api_server(kmock: Any) -> str:
    """The in-process Kubernetes API (kmock's emulator); its base URL."""
    _declare(kmock)
    return str(kmock.url).rstrip("/")


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
    con = duckdb.connect(str(path))
    try:
        for schema in ("src__acme__us_west__shopify", "src__globex__eu__stripe"):
            con.execute(f"CREATE SCHEMA {schema}")
            for table in TABLES:
                con.execute(
                    f"CREATE TABLE {schema}.{table} AS SELECT 1 AS id, "
                    "TIMESTAMP '2024-01-01' AS _fivetran_synced"
                )
    finally:
        con.close()
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
