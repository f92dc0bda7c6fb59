"""The controller scenarios of test_operator_controller.py, unchanged, on a real kube-apiserver.

The same test functions run here with three fixtures swapped: ``api_server`` is the
control plane's kube-apiserver (etcd + kube-apiserver + kube-controller-manager, built
from Go modules; no node agent), ``cluster`` talks to it with the admin kubeconfig in a
namespace of its own, and ``api_counts`` is None (requests are not counted). The CRD is
the committed one, applied with kubectl. Pod statuses are still written by the fake
kubelet (through the real pods/status subresource), so the planted outcomes are exact.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.operator.harness import CONFIGURATIONS, Cluster
from tests.operator.test_operator_controller import (  # noqa: F401  (collected again here)
    test_bad_spec_fails_without_pods,
    test_breaker_stops_launching_after_auth_failures,
    test_classification_retries_and_status,
    test_fail_fast_aborts_and_skips_the_rest,
    test_killed_between_recording_a_start_and_creating_its_pod,
    test_operator_killed_mid_run_loses_nothing,
    test_pending_while_discovering,
    test_resume_skips_copied_and_filters_kinds,
)
from tests.operator.test_operator_restart_budget import (  # noqa: F401  (collected again here)
    test_container_lost_by_the_kubelet_is_retried,
    test_create_failing_with_a_server_error_costs_no_retry,
)
from tests.operator.test_operator_spec_freeze import (  # noqa: F401  (collected again here)
    test_finished_run_edited_observes_the_generation,
    test_spec_edited_mid_run_then_operator_restart_uses_the_frozen_spec,
)
from tests.support.kubeapi import KubeApi, KubeConfig

from rocky_operator.kube.configuration import load_configuration

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tests.support.control_plane import ControlPlane, binaries_dir
    from tests.support.e2e import apply_crds

    cp = ControlPlane(tmp_path_factory.mktemp("cp"), binaries_dir(), node_agent=False)
    cp.start()
    try:
        apply_crds(cp, "rockyruns.rocky.dev")
        yield cp
    finally:
        cp.stop()


@pytest.fixture
async def api_server(control_plane: object, monkeypatch: pytest.MonkeyPatch) -> str:
    """The operator's configuration, loaded as `rocky-operator run` loads it."""
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))  # type: ignore[attr-defined]
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    configuration = await load_configuration()
    CONFIGURATIONS[str(configuration.host)] = configuration
    return str(configuration.host)


@pytest.fixture
def api_counts() -> None:
    return None


@pytest.fixture
async def cluster(control_plane: object, api_server: str) -> AsyncIterator[Cluster]:
    namespace = f"rocky-{secrets.token_hex(3)}"
    config = KubeConfig.load(control_plane.kubeconfig)  # type: ignore[attr-defined]
    async with KubeApi(config) as api:
        await api.post(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
        yield Cluster(api, namespace)
