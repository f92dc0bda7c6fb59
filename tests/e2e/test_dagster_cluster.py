"""The Dagster example against the real control plane and the real operator.

The asset's cluster backend creates RockyRuns with the Kubernetes client; `rocky-operator run`
executes them as runner pods under the node agent against the demo warehouse with its planted
failures. Checked: the branch each planted failure kind took on the first attempt (the seed's
policy), that the retry is a new RockyRun resuming from the first with only the retryable kinds,
and that the transient table copies once the other writer is gone.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.support.control_plane import REPO, ControlPlane
from tests.support.e2e import OperatorProcess, apply_crds

from rocky_operator.client import RunOutcome
from rocky_operator.demo.warehouse import PLANTED, build_warehouse, hold_lock

dg = pytest.importorskip("dagster", reason="dagster is in the `examples` extra")
EXAMPLE = REPO / "examples" / "dagster"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))
example = importlib.import_module("rocky_replication.assets")

SEED_POLICY = {
    "transient": "retry",
    "connection-failed": "retry",
    "quota-exceeded": "retry-extended-and-alert",
    "auth-failed": "alert",
    "query-rejected": "alert",
    "not-found": "alert",
    "unknown": "surface",
}
_LOCKS: dict[str, contextlib.ExitStack] = {}


class LockReleasingRocky(example.RockyRunResource):  # type: ignore[misc,name-defined]
    lock_key: str = ""

    def run(self, **kwargs: Any) -> RunOutcome:
        try:
            outcome: RunOutcome = super().run(**kwargs)
            return outcome
        finally:
            stack = _LOCKS.pop(self.lock_key, None)
            if stack is not None:
                stack.close()


@pytest.fixture
def operator(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[None]:
    apply_crds(control_plane, "rockyruns.rocky.dev")
    op = OperatorProcess(control_plane, namespace, tmp_path / "operator.log")
    op.start()
    try:
        yield
    finally:
        op.stop()


@pytest.mark.slow
def test_dagster_asset_on_the_cluster(
    control_plane: ControlPlane,
    namespace: str,
    operator: None,
    api_client: client.ApiClient,
    tmp_path: Path,
) -> None:
    warehouse = build_warehouse(tmp_path / "warehouse")
    manifest = yaml.safe_load((REPO / "examples" / "demo" / "rockyrun.yaml").read_text())
    spec = manifest["spec"]
    spec["adapter"]["duckdb"]["path"] = str(warehouse.warehouse)  # the node agent mounts nothing
    spec["runner"].pop("volumes", None)
    spec["runner"].pop("volumeMounts", None)
    spec["retry"] = {
        k: {"maxRetries": 0} for k in ("transient", "connection-failed", "quota-exceeded")
    }
    spec["source"]["tables"] = ["refunds", "tickets", "contacts", "disputes", "payouts"]
    manifest_path = tmp_path / "rockyrun.yaml"
    manifest_path.write_text(yaml.safe_dump(manifest))

    stack = contextlib.ExitStack()
    stack.enter_context(hold_lock(warehouse.locked_target))
    _LOCKS["cluster"] = stack
    alerts = tmp_path / "alerts.jsonl"
    try:
        result = dg.materialize(
            [
                example.build_replication_asset(
                    retry_policy=dg.RetryPolicy(max_retries=2, delay=0.1),
                    extended_backoff_seconds=0.1,
                    max_quota_retries=1,
                )
            ],
            resources={
                "rocky": LockReleasingRocky(
                    manifest_path=str(manifest_path),
                    backend="cluster",
                    namespace=namespace,
                    kubeconfig=str(control_plane.kubeconfig),
                    timeout_seconds=240,
                    lock_key="cluster",
                ),
                "alerter": example.Alerter(log_path=str(alerts)),
            },
            raise_on_error=False,
        )
    finally:
        _LOCKS.pop("cluster", stack).close()

    attempts = [
        {k: v.value for k, v in e.asset_observation_data.asset_observation.metadata.items()}
        for e in result.get_asset_observation_events()
    ]
    planted = {"/".join(p.asset_key): p.failure_kind for p in PLANTED}
    first = attempts[0]
    assert {t: b["kind"] for t, b in first["branches"].items()} == planted
    for target, branch in first["branches"].items():
        assert branch["action"] == SEED_POLICY[branch["kind"]], target
    print("\nbranch per failure kind (cluster, attempt 0):")
    for target, branch in sorted(first["branches"].items(), key=lambda kv: kv[1]["kind"]):
        print(f"  {branch['kind']:<17} -> {branch['action']:<25} {target}")

    second = attempts[1]
    custom = client.CustomObjectsApi(api_client)
    run: dict[str, Any] = custom.get_namespaced_custom_object(  # type: ignore[assignment]
        "rocky.dev", "v1alpha1", namespace, "rockyruns", second["rocky_run"]
    )
    assert run["spec"]["resumeFrom"] == first["rocky_run"]
    assert sorted(run["spec"]["resumeKinds"]) == [
        "connection-failed",
        "quota-exceeded",
        "transient",
    ]
    assert second["tables_copied"] == 1  # the transient table, its lock released
    assert {b["kind"] for b in second["branches"].values()} == {
        "connection-failed",
        "quota-exceeded",
    }
    sent = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert [a["kind"] for a in sent if a["action"] == "alert-owner"] == ["query-rejected"]
    assert not result.success
