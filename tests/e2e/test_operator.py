"""The operator as a process against the real control plane, end to end through kubectl.

The CRD is applied with kubectl; `rocky-operator run` runs as a process with its own kubeconfig
(user `rocky-operator`); the demo RockyRun (examples/demo/rockyrun.yaml, pointed at a DuckDB
file on this machine instead of a volume) is applied with `kubectl apply -f`; its runner pods
run as `rocky-runner` processes under the node agent against the demo warehouse with its four
planted failures. Checked: `kubectl wait --for=condition=Complete`, the counts per failure_kind,
`status.runOutput` valid against Rocky's JSON schema and parsed by rocky-sdk, the `kubectl get rr`
columns, the Events, the operator's /metrics counters per failure_kind; deleting a RockyRun
garbage-collects its pods; a `kill -9` of the operator mid-run and a restart give the same final
status with no attempt started twice; malformed manifests are rejected by the API server.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.control_plane import (
    REPO,
    ControlPlane,
    audit_counts,
    audit_offset,
)
from tests.support.e2e import (
    OperatorProcess,
    Rest,
    apply_crds,
    kubectl,
    kubectl_json,
    wait_for,
)
from tests.support.rocky_schema import check_run_output
from tests.support.warehouses import source_warehouse

from rocky_operator.demo.warehouse import PLANTED, DemoWarehouse, build_warehouse, hold_lock

DEMO_MANIFEST = REPO / "examples" / "demo" / "rockyrun.yaml"
CRD = REPO / "crds" / "rockyruns.rocky.dev.yaml"
# The demo selects 15 tables of tenant acme; four fail on purpose, one kind each. The transient
# and connection-failed ones are retried once (the manifest's retry block) and fail again.
EXPECTED_FAILURES = {p.failure_kind: 1 for p in PLANTED}
EXPECTED_COPIED = 11
EXPECTED_ATTEMPTS = 15 + 2


@pytest.fixture(scope="module")
def crd(control_plane: ControlPlane) -> None:
    apply_crds(control_plane, "rockyruns.rocky.dev")


@pytest.fixture
def warehouse(tmp_path: Path) -> DemoWarehouse:
    return build_warehouse(tmp_path / "warehouse")


@pytest.fixture
def operator(
    control_plane: ControlPlane, namespace: str, crd: None, tmp_path: Path
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(control_plane, namespace, tmp_path / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()


def demo_manifest(warehouse: DemoWarehouse, **spec: Any) -> dict[str, Any]:
    """The demo manifest, reading the warehouse file directly (the node agent mounts no volumes)."""
    doc: dict[str, Any] = yaml.safe_load(DEMO_MANIFEST.read_text())
    doc["spec"]["adapter"]["duckdb"]["path"] = str(warehouse.warehouse)
    doc["spec"]["runner"].pop("volumes", None)
    doc["spec"]["runner"].pop("volumeMounts", None)
    doc["spec"].update(spec)
    return doc


def apply(cp: ControlPlane, namespace: str, doc: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / f"{doc['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = kubectl(cp, "-n", namespace, "apply", "-f", str(path)).stdout
    assert "rockyrun.rocky.dev/" in out


def wait_complete(
    cp: ControlPlane, namespace: str, name: str, timeout: int = 240
) -> dict[str, Any]:
    kubectl(
        cp,
        "-n",
        namespace,
        "wait",
        "--for=condition=Complete",
        f"rockyrun/{name}",
        f"--timeout={timeout}s",
        timeout=timeout + 30,
    )
    run: dict[str, Any] = kubectl_json(cp, "-n", namespace, "get", "rockyrun", name)
    return run


def metric_values(text: str, name: str, namespace: str) -> dict[str, float]:
    """`name{namespace=...,failure_kind=K}` values by K (prometheus text format), those above 0
    (a namespace's series are created at 0 for every kind)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(name + "{") or f'namespace="{namespace}"' not in line:
            continue
        labels, _, value = line[len(name) + 1 :].rpartition("} ")
        parts = dict(p.split("=", 1) for p in labels.split(","))
        if float(value):
            out[parts["failure_kind"].strip('"')] = float(value)
    return out


def check_final_status(run: dict[str, Any]) -> None:
    status = run["status"]
    assert status["phase"] == "PartialFailure"
    assert status["exitCode"] == 2
    assert status["tables"]["copied"] == EXPECTED_COPIED
    assert status["tables"]["failed"] == len(PLANTED)
    assert status["failures"] == EXPECTED_FAILURES


def test_demo_run_completes_with_every_failure_kind_accounted_for(
    control_plane: ControlPlane,
    namespace: str,
    operator: OperatorProcess,
    warehouse: DemoWarehouse,
    tmp_path: Path,
) -> None:

    with hold_lock(warehouse.locked_target):
        apply(control_plane, namespace, demo_manifest(warehouse), tmp_path)
        run = wait_complete(control_plane, namespace, "demo")
    check_final_status(run)

    output = run["status"]["runOutput"]
    parsed = check_run_output(output)
    kinds = Counter(str(e["failure_kind"]) for e in output["errors"])
    assert kinds == Counter(EXPECTED_FAILURES)
    assert len(output["materializations"]) == EXPECTED_COPIED
    assert parsed is not None

    table = kubectl(control_plane, "-n", namespace, "get", "rr").stdout.splitlines()
    assert table[0].split()[:4] == ["NAME", "STATUS", "COPIED", "FAILED"]
    assert table[1].split()[:4] == ["demo", "PartialFailure", str(EXPECTED_COPIED), "4"]
    wide = kubectl(control_plane, "-n", namespace, "get", "rr", "-o", "wide").stdout
    assert wide.splitlines()[0].split()[4] == "EXIT"

    def run_events() -> list[dict[str, Any]] | None:
        """The run's Events once the final one is there: it is posted after the final status
        (which `kubectl wait` saw), so it may still be on its way."""
        items: list[dict[str, Any]] = kubectl_json(
            control_plane,
            "-n",
            namespace,
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=demo",
        )["items"]
        return items if any(e["reason"] == "RunPartiallyFailed" for e in items) else None

    events = wait_for(run_events, timeout=60, what="the run's RunPartiallyFailed Event")
    reasons = Counter(e["reason"] for e in events)
    assert reasons["RunPartiallyFailed"] == 1
    failed_messages = " ".join(e["message"] for e in events if e["reason"] == "TablesFailed")
    for kind in EXPECTED_FAILURES:
        assert kind in failed_messages

    failures = metric_values(operator.metrics(), "rocky_table_failures_total", namespace)
    # Retried kinds failed twice (first attempt + one retry), the others once.
    assert failures == {
        "query-rejected": 1.0,
        "quota-exceeded": 1.0,
        "transient": 2.0,
        "connection-failed": 2.0,
    }
    retries = metric_values(operator.metrics(), "rocky_table_retries_total", namespace)
    assert retries == {"transient": 1.0, "connection-failed": 1.0}


def test_deleting_a_run_garbage_collects_its_pods(
    control_plane: ControlPlane,
    namespace: str,
    operator: OperatorProcess,
    warehouse: DemoWarehouse,
    tmp_path: Path,
    rest: Rest,
) -> None:
    doc = demo_manifest(warehouse, concurrency=3)
    doc["spec"]["runner"]["command"] = ["sleep", "300"]  # pods that stay Running
    apply(control_plane, namespace, doc, tmp_path)

    def running_pods() -> list[dict[str, Any]] | None:
        pods = [
            p
            for p in rest.items(namespace, "pods")
            if p["metadata"].get("labels", {}).get("rocky.dev/run") == "demo"
            and p.get("status", {}).get("phase") == "Running"
        ]
        return pods if len(pods) == 3 else None

    pods = wait_for(running_pods, timeout=60, what="3 running runner pods")
    for pod in pods:
        owners = pod["metadata"]["ownerReferences"]
        assert [(o["kind"], o["name"]) for o in owners] == [("RockyRun", "demo")]
    kubectl(control_plane, "-n", namespace, "delete", "rockyrun", "demo", "--wait=false")

    def no_pods() -> bool:
        return not [
            p
            for p in rest.items(namespace, "pods")
            if p["metadata"].get("labels", {}).get("rocky.dev/run") == "demo"
        ]

    wait_for(no_pods, timeout=90, what="the run's pods to be garbage-collected")


def test_operator_killed_mid_run_resumes_without_starting_an_attempt_twice(
    control_plane: ControlPlane,
    namespace: str,
    operator: OperatorProcess,
    warehouse: DemoWarehouse,
    tmp_path: Path,
    rest: Rest,
) -> None:
    offset = audit_offset(control_plane)
    with hold_lock(warehouse.locked_target):
        apply(control_plane, namespace, demo_manifest(warehouse), tmp_path)

        def under_way() -> bool:
            run = rest.get(f"/apis/rocky.dev/v1alpha1/namespaces/{namespace}/rockyruns/demo")
            tables = run.get("status", {}).get("tables", {})
            done = int(tables.get("copied", 0)) + int(tables.get("failed", 0))
            return 3 <= done < 15

        wait_for(under_way, timeout=120, interval=0.1, what="the run to be under way")
        assert operator.proc is not None
        operator.proc.kill9()
        operator.start()
        run = wait_complete(control_plane, namespace, "demo")
    check_final_status(run)
    assert run["status"]["tables"]["attempts"] == EXPECTED_ATTEMPTS

    # Every attempt is one pod create by the operator; a second start of the same attempt would
    # show up as a second create of the same name (a 409 from the API server).
    creates: Counter[str] = Counter()
    conflicts = 0
    with control_plane.audit_log.open("rb") as fh:
        fh.seek(offset)
        for line in fh:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                ref = event.get("objectRef", {})
                if (
                    event.get("verb") == "create"
                    and ref.get("resource") == "pods"
                    and not ref.get("subresource")
                    and ref.get("namespace") == namespace
                    and event.get("user", {}).get("username") == "rocky-operator"
                ):
                    code = event.get("responseStatus", {}).get("code")
                    if code == 201 and not ref.get("name", "?").endswith("-discovery"):
                        # Table attempts only: the run's one discovery pod copies nothing.
                        creates[ref.get("name", "?")] += 1
                    elif code == 409:
                        conflicts += 1
    assert sum(creates.values()) == EXPECTED_ATTEMPTS
    assert conflicts == 0
    assert audit_counts(control_plane, offset)["rocky-operator"] > 0


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"concurrency": 0}, "spec.concurrency"),
        ({"adapter": {"type": "oracle"}}, "spec.adapter.type"),
        ({"strategy": "sometimes"}, "spec.strategy"),
    ],
)
def test_malformed_manifests_are_rejected_by_the_api_server(
    control_plane: ControlPlane,
    namespace: str,
    crd: None,
    warehouse: DemoWarehouse,
    tmp_path: Path,
    patch: dict[str, Any],
    message: str,
) -> None:
    doc = demo_manifest(warehouse, **patch)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = kubectl(control_plane, "-n", namespace, "apply", "-f", str(path), check=False)
    assert proc.returncode != 0
    assert "is invalid" in proc.stderr
    assert message in proc.stderr
    assert not kubectl_json(control_plane, "-n", namespace, "get", "rockyruns")["items"]


# -- pods that fail the way a cluster makes them fail (node agent hooks) --------------------------

HOOK_TABLES = ("t_oom", "t_evict", "t_deleted", "t_ok")
NO_RETRIES = {
    kind: {"maxRetries": 0}
    for kind in (
        "connection-failed",
        "auth-failed",
        "query-rejected",
        "transient",
        "quota-exceeded",
        "not-found",
        "unknown",
    )
}


def small_run(name: str, warehouse: Path, **spec: Any) -> dict[str, Any]:
    """A RockyRun over the src__<table> schemas of `warehouse` (one target file per table),
    no retries, everything in parallel."""
    return {
        "apiVersion": "rocky.dev/v1alpha1",
        "kind": "RockyRun",
        "metadata": {"name": name},
        "spec": {
            "adapter": {"type": "duckdb", "duckdb": {"path": str(warehouse)}},
            "source": {
                "schemaPattern": {"prefix": "src__", "separator": "__", "components": ["tenant"]}
            },
            "target": {"catalogTemplate": "{tenant}_out", "schemaTemplate": "copy"},
            "strategy": "full_refresh",
            "concurrency": 8,
            "retry": NO_RETRIES,
            **spec,
        },
    }


@pytest.fixture
def small_warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "small" / "warehouse.duckdb"
    # One source schema per table, so each table has its own target catalog file and the
    # write groups (one writer per DuckDB file) let all four run at once.
    return source_warehouse(path, [(f"src__{table}", table) for table in HOOK_TABLES], rows=3)


def run_pods(rest: Rest, namespace: str, run: str) -> list[dict[str, Any]]:
    return [
        p
        for p in rest.items(namespace, "pods")
        if p["metadata"].get("labels", {}).get("rocky.dev/run") == run
    ]


def test_oom_killed_evicted_and_deleted_pods_are_classified(
    control_plane: ControlPlane,
    namespace: str,
    operator: OperatorProcess,
    small_warehouse: Path,
    tmp_path: Path,
    rest: Rest,
) -> None:
    # Every runner first sleeps, so the test can act on its pod while it runs.
    doc = small_run(
        "hooks",
        small_warehouse,
        runner={"command": ["sh", "-c", "sleep 15; exec rocky-runner"]},
    )
    apply(control_plane, namespace, doc, tmp_path)

    def running() -> dict[str, dict[str, Any]] | None:
        by_table = {
            json.loads(p["metadata"]["annotations"]["rocky.dev/asset-key"])[-1]: p
            for p in run_pods(rest, namespace, "hooks")
            if p.get("status", {}).get("phase") == "Running"
            # The run's discovery pod carries the run label but copies no table.
            and "rocky.dev/asset-key" in (p["metadata"].get("annotations") or {})
        }
        return by_table if len(by_table) == len(HOOK_TABLES) else None

    pods = wait_for(running, timeout=60, what="4 running runner pods")
    for table, hook in (("t_oom", "oom-kill"), ("t_evict", "evict")):
        rest.merge_patch(
            f"/api/v1/namespaces/{namespace}/pods/{pods[table]['metadata']['name']}",
            {"metadata": {"annotations": {"test.rocky.dev/simulate": hook}}},
        )
    rest.remove(namespace, "pods", pods["t_deleted"]["metadata"]["name"])

    run = wait_complete(control_plane, namespace, "hooks", timeout=120)
    status = run["status"]
    # DESIGN.md: OOMKilled without a result -> unknown; evicted -> transient; deleted by someone
    # else -> transient; the untouched one copies.
    assert status["failures"] == {"unknown": 1, "transient": 2}
    assert status["tables"]["copied"] == 1
    errors = {e["asset_key"][-1]: e for e in status["runOutput"]["errors"]}
    assert errors["t_oom"]["failure_kind"] == "unknown"
    assert "OOMKilled" in errors["t_oom"]["error"]
    assert errors["t_evict"]["failure_kind"] == "transient"
    assert errors["t_deleted"]["failure_kind"] == "transient"


@pytest.fixture
def impatient_operator(
    control_plane: ControlPlane, namespace: str, crd: None, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """An operator that gives stuck pods (image pull, missing Secret) 2 s instead of 120 s."""
    op = OperatorProcess(
        control_plane,
        namespace,
        tmp_path / "operator.log",
        extra_args=("--stuck-grace-seconds", "2"),
    )
    op.start()
    try:
        yield op
    finally:
        op.stop()


def check_rejected_output(run: dict[str, Any], kind: str, spec_filter: str) -> None:
    """Issue 10 case 10: a rejected run's RunOutput is typed and consistent, valid against
    Rocky's schema and parsed by rocky-sdk."""

    output = run["status"]["runOutput"]
    check_run_output(output)
    assert [e["failure_kind"] for e in output["errors"]] == [kind]
    assert output["tables_failed"] == len(output["errors"]) == 1
    assert output["filter"] == spec_filter
    assert (output["status"], run["status"]["exitCode"]) == ("Failure", 1)


def test_stuck_pods_fail_after_the_grace_period(
    control_plane: ControlPlane,
    namespace: str,
    impatient_operator: OperatorProcess,
    small_warehouse: Path,
    tmp_path: Path,
) -> None:
    no_image = small_run(
        "no-image", small_warehouse, runner={"image": "registry.invalid/rocky-runner:0"}
    )
    no_secret = small_run(
        "no-secret",
        small_warehouse,
        runner={
            "env": [
                {
                    "name": "EXTRA_TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": "not-there", "key": "token"}},
                }
            ]
        },
        circuitBreaker={"authFailedThreshold": 0},
        filter="tenant=acme",
    )
    apply(control_plane, namespace, no_image, tmp_path)
    apply(control_plane, namespace, no_secret, tmp_path)
    image_run = wait_complete(control_plane, namespace, "no-image", timeout=120)
    secret_run = wait_complete(control_plane, namespace, "no-secret", timeout=120)

    # DESIGN.md: an image that cannot be pulled -> unknown; a missing Secret -> auth-failed.
    # Discovery runs in a pod of the run with the run's image and Secret references, so both
    # runs stop at that pod: rejected before any table, with the kind of the stuck pod.
    def kinds(run: dict[str, Any]) -> list[str]:
        return [e["failure_kind"] for e in run["status"]["runOutput"]["errors"]]

    assert kinds(image_run) == ["unknown"]
    assert kinds(secret_run) == ["auth-failed"]
    assert image_run["status"]["phase"] == secret_run["status"]["phase"] == "Failed"
    check_rejected_output(image_run, "unknown", "")
    check_rejected_output(secret_run, "auth-failed", "tenant=acme")


def test_a_missing_env_secret_fails_the_run_without_the_full_stuck_grace(
    control_plane: ControlPlane,
    namespace: str,
    operator: OperatorProcess,
    small_warehouse: Path,
    tmp_path: Path,
) -> None:
    """The operator keeps its default stuck grace (120 s) and reads no Secret: the kubelet's
    CreateContainerConfigError names the missing Secret, so the run fails auth-failed within
    the short grace (10 s) of a definitive cause, with a RunOutput that says so."""
    doc = small_run(
        "env-secret",
        small_warehouse,
        runner={
            "env": [
                {
                    "name": "EXTRA_TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": "not-there", "key": "token"}},
                }
            ]
        },
        filter="tenant=acme",
    )
    apply(control_plane, namespace, doc, tmp_path)
    # Well below the 120 s grace, with room for a loaded machine.
    run = wait_complete(control_plane, namespace, "env-secret", timeout=75)
    assert run["status"]["phase"] == "Failed"
    check_rejected_output(run, "auth-failed", "tenant=acme")
    assert "not-there" in run["status"]["runOutput"]["errors"][0]["error"]
