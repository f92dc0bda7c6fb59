"""Issue 13 goal 8 (restarts): an operator restart or an API hiccup costs a table no retry,
and a container the kubelet lost is a transient failure that is retried.

An attempt is journaled as started before its pod is created. When its pod is missing
later, the journal tells apart a pod that existed and was lost (seen or created: the
``c<seq>`` created records ride along with the journal's batches) — transient, the next
attempt number — from one that was never created (the operator stopped in between, or
the create failed) — created now under the same number, no retry consumed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.operator.conftest import run_spec
from tests.operator.harness import (
    Cluster,
    FakeKubelet,
    Outcome,
    configuration_for,
    copied,
    operator_life,
)

from rocky_operator.kube.client import KubeClient, KubeError
from rocky_operator.kube.observe import observe
from rocky_operator.kube.runtime import Runtime
from rocky_operator.kube.store import RunStore
from rocky_operator.logic.decide import Attempt, AttemptState
from rocky_operator.logic.pods import PodSettings, classify_pod
from rocky_runner.contract import FailureKind

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _table(pod: dict[str, Any]) -> str:
    task = json.loads(pod["spec"]["containers"][0]["env"][0]["value"])
    return str(task["source"]["table"])


async def test_create_failing_with_a_server_error_costs_no_retry(
    api_server: str, cluster: Cluster, kubelet: FakeKubelet, warehouse: Path
) -> None:
    """The API server answers 503 to t03's pod once: the pass is retried and the same
    attempt's pod is created then (before: "disappeared ... deleted by someone else?",
    a transient retry)."""
    refused: list[str] = []

    def flaky(runtime: Runtime) -> None:
        original = runtime.client.create_pod

        async def create_pod(namespace: str, pod: dict[str, Any]) -> bool:
            if _table(pod) == "t03" and not refused:
                refused.append(pod["metadata"]["name"])
                raise KubeError(503, "ServiceUnavailable", "etcd leader changed")
            return await original(namespace, pod)

        runtime.client.create_pod = create_pod  # type: ignore[method-assign]

    async with operator_life(api_server, cluster.namespace, prepare=flaky):
        await cluster.create_run("flaky", run_spec(warehouse))
        run = await cluster.wait_finished("flaky", deadline_seconds=60)
    status = run["status"]
    assert refused  # the fault happened
    assert (status["phase"], status["tables"]["copied"]) == ("Succeeded", 12)
    assert status["retries"] == {}
    assert status["tables"]["attempts"] == 12
    assert refused[0] in kubelet.handled  # the same attempt's pod, created on the retry


async def test_container_lost_by_the_kubelet_is_retried(
    api_server: str, cluster: Cluster, kubelet: FakeKubelet, warehouse: Path
) -> None:
    """A kubelet restart reports ContainerStatusUnknown (exit 137, a non-JSON message):
    transient and retried (before: unknown, "result message is not JSON", failed for good)."""
    kubelet.plant("t05", [Outcome("container-unknown"), copied()])
    async with operator_life(api_server, cluster.namespace):
        await cluster.create_run("lost", run_spec(warehouse))
        run = await cluster.wait_finished("lost", deadline_seconds=60)
    status = run["status"]
    assert (status["phase"], status["tables"]["copied"]) == ("Succeeded", 12), json.dumps(status)
    assert status["retries"] == {"transient": 1}
    assert status["tables"]["attempts"] == 13


def test_container_status_unknown_row() -> None:
    pod = {
        "metadata": {
            "name": "r-k-1",
            "labels": {"rocky.dev/table": "k", "rocky.dev/attempt": "1"},
        },
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "runner",
                    "state": {
                        "terminated": {
                            "exitCode": 137,
                            "reason": "ContainerStatusUnknown",
                            "message": "The container could not be located when the pod was "
                            "terminated",
                        }
                    },
                }
            ],
        },
    }
    attempt = classify_pod(pod, NOW)
    assert attempt is not None
    assert attempt.failure_kind is FailureKind.TRANSIENT
    assert "ContainerStatusUnknown" in (attempt.error or "")


def test_node_lost_pod_deleted_by_the_taint_manager_is_transient() -> None:
    pod = {
        "metadata": {
            "name": "r-k-1",
            "labels": {"rocky.dev/table": "k", "rocky.dev/attempt": "1"},
            "deletionTimestamp": "2026-01-01T00:00:00Z",
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "NodeLost"},
                {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"},
            ],
            "containerStatuses": [{"name": "runner", "state": {"running": {}}}],
        },
    }
    attempt = classify_pod(pod, NOW)
    assert attempt is not None
    assert attempt.failure_kind is FailureKind.TRANSIENT


def test_missing_pod_lost_or_never_created() -> None:
    running = Attempt("k", 1, AttemptState.RUNNING, NOW)
    journal = {("k", 1): running}
    never = observe([], journal, {"k"}, NOW, PodSettings())
    assert never.uncreated == [running]
    assert never.new == {}
    assert never.attempts[("k", 1)].state is AttemptState.RUNNING
    lost = observe([], journal, {"k"}, NOW, PodSettings(), created={("k", 1)})
    assert lost.uncreated == []
    assert lost.new[("k", 1)].failure_kind is FailureKind.TRANSIENT


async def test_created_records_ride_with_the_journal(api_server: str, cluster: Cluster) -> None:
    client = KubeClient(configuration_for(api_server))
    try:
        store = RunStore(client, cluster.namespace, "cr", "uid-cr")
        first = Attempt("a", 1, AttemptState.RUNNING, NOW)
        await store.append_journal([first], created={("a", 1)})
        await store.append_journal([Attempt("b", 1, AttemptState.RUNNING, NOW)], created=set())
        again = RunStore(client, cluster.namespace, "cr", "uid-cr")
        attempts = await again.load_journal()
        assert [(a.table, a.number) for a in attempts] == [("a", 1), ("b", 1)]
        assert again.created == {("a", 1)}
        # A later life appends after both kinds of keys, never over them.
        await again.append_journal([Attempt("c", 1, AttemptState.RUNNING, NOW)], {("b", 1)})
        last = RunStore(client, cluster.namespace, "cr", "")
        assert len(await last.load_journal()) == 3
        assert last.created == {("a", 1), ("b", 1)}
    finally:
        await client.close()
