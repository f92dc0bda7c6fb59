"""Fixtures of the end-to-end suite: one real control plane per session, a namespace per test.

Every test under tests/e2e/ that uses the control plane is marked `e2e`. The binaries are built
(first run) or reused by tools/k8s-binaries/build.sh; set ROCKY_K8S_BIN_DIR to use binaries from
elsewhere.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from kubernetes import client, config
from tests.support.control_plane import ControlPlane, binaries_dir
from tests.support.e2e import OperatorProcess, Rest, apply_crds
from tests.support.schedules import StartOperator
from tests.support.warehouses import source_warehouse


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `e2e` every test here that needs the control plane (the pure ones stay unmarked)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents and "control_plane" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager + node agent on 127.0.0.1."""
    cp = ControlPlane(tmp_path_factory.mktemp("control-plane"), binaries_dir())
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    """A `kubernetes` client authenticated as the cluster admin."""
    api = cast(
        client.ApiClient,
        config.new_client_from_config(config_file=str(control_plane.kubeconfig)),  # type: ignore[no-untyped-call]
    )
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def core_v1(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def rest(control_plane: ControlPlane) -> Rest:
    """Plain-JSON API calls as the cluster admin."""
    return Rest(control_plane)


@pytest.fixture
def namespace(rest: Rest, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base}-{secrets.token_hex(3)}"
    rest.post("/api/v1/namespaces", {"metadata": {"name": name}})
    try:
        yield name
    finally:
        rest.delete(f"/api/v1/namespaces/{name}")


@pytest.fixture
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def start_operator(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[StartOperator]:
    """Start `rocky-operator run` (the production entry point: RockyRun and RockySchedule
    handlers in one process) watching the test namespace, when the test calls it, e.g. after
    its history is in place; stopped at the end. The CRDs are applied first."""
    apply_crds(control_plane, "rockyruns.rocky.dev", "rockyschedules.rocky.dev")
    started: list[OperatorProcess] = []

    def start() -> OperatorProcess:
        operator = OperatorProcess(
            control_plane,
            namespace,
            tmp_path / "operator.log",
            env={"ROCKY_SCHEDULE_POLL_SECONDS": "1"},
        )
        started.append(operator)
        operator.start()
        return operator

    try:
        yield start
    finally:
        for operator in started:
            operator.stop()


@pytest.fixture
def tiny_warehouse(tmp_path: Path) -> Path:
    """One source table, schema src__acme__us__shop (tenant, region, source): 3 rows."""
    path = tmp_path / "tiny" / "warehouse.duckdb"
    return source_warehouse(path, [("src__acme__us__shop", "orders")], rows=3)
