"""The test control plane itself: a real kube-apiserver answers kubectl, the controller manager
garbage-collects by ownerReference, the node agent's Node is Ready, and request counting works."""

from __future__ import annotations

import json
import subprocess
import sys

from kubernetes import client
from tests.support.control_plane import REPO, ControlPlane, audit_counts, audit_offset
from tests.support.e2e import apply_yaml, kubectl, kubectl_json, wait_for


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
    control_plane: ControlPlane, namespace: str, core_v1: client.CoreV1Api
) -> None:
    out = apply_yaml(
        control_plane,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {k: v}\n",
        namespace=namespace,
    )
    assert "configmap/settings created" in out
    assert core_v1.read_namespaced_config_map("settings", namespace).data == {"k": "v"}
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
    control_plane: ControlPlane, namespace: str, core_v1: client.CoreV1Api
) -> None:
    owner = core_v1.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
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
                    "uid": owner.metadata.uid,
                }
            ],
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "none", "command": ["sleep", "60"]}],
        },
    }
    core_v1.create_namespaced_pod(namespace, pod)
    wait_for(
        lambda: core_v1.read_namespaced_pod("owned", namespace).status.phase == "Running",
        what="the owned pod to run",
    )
    core_v1.delete_namespaced_config_map("owner", namespace)

    def gone() -> bool:
        names = [p.metadata.name for p in core_v1.list_namespaced_pod(namespace).items]
        return "owned" not in names

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


def test_control_plane_script_up_status_down(control_plane: ControlPlane, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path_factory.mktemp("cp-script")
    env = {"ROCKY_K8S_BIN_DIR": str(control_plane.bin_dir), "ROCKY_PYTHON": sys.executable}
    script = str(REPO / "scripts" / "control-plane")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        import os

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
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
