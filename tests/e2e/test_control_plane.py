"""The test control plane itself: a real kube-apiserver answers kubectl, the controller manager
garbage-collects by ownerReference, the node agent's Node is Ready, and request counting works."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tests.support.control_plane import REPO, ControlPlane, audit_counts, audit_offset
from tests.support.e2e import Rest, apply_yaml, kubectl, kubectl_json, wait_for


def test_apiserver_ready_and_kubectl_reports_the_pinned_release(
    control_plane: ControlPlane,
) -> None:
    assert control_plane.get("/readyz") == b"ok"
    version = json.loads(kubectl(control_plane, "version", "-o", "json").stdout)
    pinned = (REPO / "tools/k8s-binaries/kubernetes/go.mod").read_text()
    assert f"k8s.io/kubernetes {version['serverVersion']['gitVersion']}" in pinned
    assert version["clientVersion"]["gitVersion"] == version["serverVersion"]["gitVersion"]


def test_node_agent_registers_a_ready_node_with_a_lease(control_plane: ControlPlane) -> None:
    node = kubectl_json(control_plane, "get", "node", "rocky-node")
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True"
    lease = kubectl_json(control_plane, "-n", "kube-node-lease", "get", "lease", "rocky-node")
    assert lease["spec"]["holderIdentity"] == "rocky-node"


def test_kubectl_apply_round_trips_through_the_apiserver(
    control_plane: ControlPlane, namespace: str, rest: Rest
) -> None:
    out = apply_yaml(
        control_plane,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {k: v}\n",
        namespace=namespace,
    )
    assert "configmap/settings created" in out
    assert rest.read(namespace, "configmaps", "settings")["data"] == {"k": "v"}
    # The API server validates: a malformed object is rejected with its message.
    bad = kubectl(
        control_plane,
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n",
        check=False,
    )
    assert bad.returncode != 0
    assert "Invalid value" in bad.stderr


def test_garbage_collector_deletes_a_pod_whose_owner_is_deleted(
    control_plane: ControlPlane, namespace: str, rest: Rest
) -> None:
    owner = rest.create(namespace, "configmaps", {"metadata": {"name": "owner"}})
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "owned",
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "owner",
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "none", "command": ["sleep", "60"]}],
        },
    }
    rest.create(namespace, "pods", pod)
    wait_for(
        lambda: rest.read(namespace, "pods", "owned")["status"].get("phase") == "Running",
        what="the owned pod to run",
    )
    rest.remove(namespace, "configmaps", "owner")

    def gone() -> bool:
        return not rest.exists(f"/api/v1/namespaces/{namespace}/pods/owned")

    wait_for(gone, timeout=60, what="the garbage collector to delete the owned pod")


def test_request_counts_from_metrics_and_audit_log(
    control_plane: ControlPlane, namespace: str
) -> None:
    before_metrics = control_plane.request_total()
    offset = audit_offset(control_plane)
    for i in range(3):
        kubectl(control_plane, "-n", namespace, "create", "configmap", f"c{i}", user="benchmark")
    after = control_plane.request_total()
    assert after[("POST", "configmaps")] - before_metrics[("POST", "configmaps")] >= 3

    def counted() -> int:
        return audit_counts(control_plane, offset)["rocky-benchmark"]

    # The audit backend writes asynchronously from the request: wait until all three are there.
    assert wait_for(lambda: counted() >= 3, what="3 audited requests") is True


def test_control_plane_script_up_status_down(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> None:
    state = tmp_path_factory.mktemp("cp-script")
    env = {"ROCKY_K8S_BIN_DIR": str(control_plane.bin_dir), "ROCKY_PYTHON": sys.executable}
    script = str(REPO / "scripts" / "control-plane")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [script, "--state-dir", str(state), *args],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=180,
        )

    up = run("up")
    assert up.returncode == 0, up.stderr
    kubeconfig = next(
        line.split("=", 1)[1] for line in up.stdout.splitlines() if "KUBECONFIG=" in line
    )
    nodes = subprocess.run(
        [str(control_plane.kubectl), "--kubeconfig", kubeconfig, "get", "nodes", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert nodes.stdout.strip() == "node/rocky-node"
    status = run("status")
    assert status.returncode == 0
    assert status.stdout.count("running") == 4
    pids = [int(line.split()[2]) for line in status.stdout.splitlines() if "running" in line]
    down = run("down")
    assert down.returncode == 0
    for pid in pids:
        assert not _alive(pid), f"pid {pid} still runs after down"
    assert run("status").returncode == 3


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
