"""`helm install` of charts/rocky onto the e2e control plane, then a RockyRun applied with
kubectl completes through the installed operator.

What is real: helm (built from its Go module) installs the chart's CRDs, RBAC, ServiceAccounts,
Service and Deployment into kube-apiserver; kube-controller-manager turns the Deployment into a
ReplicaSet and a Pod; the node agent runs that pod's container command (`rocky-operator run
--namespace=<ns> --metrics-port=...`) as a local process, and the runner pods the operator
creates as `rocky-runner` processes against a real DuckDB file.

The operator authenticates as the chart's ServiceAccount (a TokenRequest token in a kubeconfig
passed through the chart's `operator.extraEnv`, since the node agent mounts no token), so the run
completing shows the chart's namespaced Role is enough, and the audit log shows no request of
that ServiceAccount was forbidden. `watchNamespaces` is the test namespace, so the installed
operator leaves the other tests' RockyRuns alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from tests.chart.support import CHART, build_tool
from tests.support.control_plane import ControlPlane, free_port
from tests.support.e2e import kubectl, kubectl_json, wait_for

TABLES = ("orders", "customers", "refunds")
PULL_SECRET = "regcred"


@pytest.fixture(scope="module")
def helm() -> Path:
    return build_tool("helm")


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    """A DuckDB file with tenant acme's three source tables and one the filter excludes."""
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    try:
        for schema in ("src__acme__us_west__shopify", "src__globex__eu__stripe"):
            con.execute(f"CREATE SCHEMA {schema}")
            for table in TABLES:
                con.execute(
                    f"CREATE TABLE {schema}.{table} AS SELECT range AS id, "
                    "TIMESTAMP '2024-01-01' AS _fivetran_synced FROM range(5)"
                )
    finally:
        con.close()
    return path


def _helm(helm: Path, cp: ControlPlane, *args: str, timeout: float = 120) -> str:
    home = cp.node_work_dir.parent / "helm"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    proc = subprocess.run(
        [str(helm), "--kubeconfig", str(cp.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _service_account_kubeconfig(cp: ControlPlane, namespace: str, account: str, path: Path) -> None:
    """A kubeconfig that authenticates as the ServiceAccount (the pod's identity in a cluster)."""
    token = kubectl(cp, "create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "e2e",
                "cluster": {"server": cp.server, "certificate-authority": str(cp.ca_file)},
            }
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {"name": "sa", "context": {"cluster": "e2e", "user": account, "namespace": namespace}}
        ],
        "current-context": "sa",
    }
    partial = path.with_suffix(".partial")
    partial.write_text(yaml.safe_dump(config))
    partial.replace(path)  # the operator (restarting until it exists) never sees half a file


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
    return text


def _sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        label_text, _, value = line[len(name) + 1 :].rpartition("} ")
        found = dict(part.split("=", 1) for part in label_text.split(",") if part)
        if all(found.get(k) == json.dumps(v) for k, v in labels.items()):
            return float(value)
    return None


@pytest.fixture
def installed(
    helm: Path, control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """The chart installed into `namespace`, watching only it; uninstalled afterwards."""
    release = f"rocky-{secrets.token_hex(3)}"
    port = free_port()
    kubeconfig = tmp_path / "operator.kubeconfig"
    values = {
        "watchNamespaces": [namespace],
        # One replica: the node agent runs pods as host processes, so a second replica would
        # bind the same metrics port (two replicas are tested in test_leader_election.py).
        # It still runs with the chart's leader election (its Lease, its Role).
        "replicas": 1,
        "metrics": {"port": port},
        "operator": {
            "extraArgs": ["--metrics-host=127.0.0.1", "--batch-seconds=0.2"],
            "extraEnv": [{"name": "KUBECONFIG", "value": str(kubeconfig)}],
        },
        # The node agent has no cluster DNS: the test pod reads the operator's port directly.
        "tests": {"metricsUrl": f"http://127.0.0.1:{port}/metrics"},
        # A private registry: every pod that pulls the image must carry it (the node agent
        # pulls nothing, so the Secret need not exist).
        "imagePullSecrets": [{"name": PULL_SECRET}],
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    out = _helm(
        helm,
        control_plane,
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--values",
        str(values_file),
    )
    assert "STATUS: deployed" in out
    # The chart's ServiceAccount exists now: give the operator its token.
    _service_account_kubeconfig(control_plane, namespace, release, kubeconfig)
    try:
        yield {"release": release, "port": port, "namespace": namespace}
    finally:
        _helm(helm, control_plane, "uninstall", release, "--namespace", namespace, "--wait")


def test_helm_install_then_rockyrun_completes(
    control_plane: ControlPlane, installed: dict[str, Any], warehouse: Path, helm: Path
) -> None:
    namespace, release, port = installed["namespace"], installed["release"], installed["port"]
    # What helm installed.
    status = json.loads(
        _helm(helm, control_plane, "status", release, "-n", namespace, "-o", "json")
    )
    assert status["info"]["status"] == "deployed"
    crd = kubectl_json(control_plane, "get", "crd", "rockyruns.rocky.dev")
    assert crd["spec"]["names"]["kind"] == "RockyRun"
    role = kubectl_json(control_plane, "get", "role", release, "-n", namespace)
    resources = {r["resources"][0] for r in role["rules"]}
    assert resources >= {"rockyruns", "pods"}
    # DESIGN.md, trust boundaries: the operator holds no warehouse credentials.
    assert "secrets" not in resources
    kubectl(control_plane, "get", "serviceaccount", f"{release}-runner", "-n", namespace)

    # The Deployment's pod runs as a process and serves /metrics and /healthz.
    def operator_pod_running() -> dict[str, Any] | None:
        pods = kubectl_json(
            control_plane,
            "get",
            "pods",
            "-n",
            namespace,
            "-l",
            f"app.kubernetes.io/instance={release}",
        )["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        return running[0] if running else None

    pod = wait_for(operator_pod_running, timeout=60, what="the operator pod running")
    assert pod["spec"]["containers"][0]["command"] == ["rocky-operator"]
    wait_for(
        lambda: _probe(port), timeout=60, interval=0.5, what="the operator's /healthz answering"
    )
    assert "# TYPE rocky_runs_total counter" in _metrics(port)

    # A RockyRun applied with kubectl completes through the installed operator.
    run = {
        "apiVersion": "rocky.dev/v1alpha1",
        "kind": "RockyRun",
        "metadata": {"name": "helm-e2e", "namespace": namespace},
        "spec": {
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
            "concurrency": 2,
            "runner": {"serviceAccountName": f"{release}-runner"},
        },
    }
    with _watched_pods(control_plane, namespace, "helm-e2e") as seen:
        kubectl(control_plane, "apply", "-f", "-", input=yaml.safe_dump(run))
        obj = wait_for(
            lambda: _finished(control_plane, namespace), timeout=120, interval=0.5,
            what="RockyRun helm-e2e finished",
        )  # fmt: skip

    # Every runner pod the installed operator created (discovery and one per table) pulls with
    # the chart's imagePullSecrets, and so does the runner ServiceAccount.
    pods = {p["metadata"]["name"]: p for p in seen}
    assert len(pods) >= 1 + len(TABLES), sorted(pods)
    for name, pod in pods.items():
        assert pod["spec"].get("imagePullSecrets") == [{"name": PULL_SECRET}], name
    account = kubectl_json(
        control_plane, "get", "serviceaccount", f"{release}-runner", "-n", namespace
    )
    assert account["imagePullSecrets"] == [{"name": PULL_SECRET}]
    assert _operator_pod_pull_secrets(control_plane, namespace, release) == [{"name": PULL_SECRET}]
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert obj["status"]["exitCode"] == 0
    output = obj["status"]["runOutput"]
    assert output["status"] == "Success"  # RunOutput's RunStatus spelling
    assert output["tables_copied"] == len(TABLES)
    target = warehouse.parent / "acme_warehouse.duckdb"
    con = duckdb.connect(str(target), read_only=True)
    try:
        for table in TABLES:
            rows = con.execute(f"SELECT count(*) FROM staging__us_west__shopify.{table}").fetchone()
            assert rows == (5,)
    finally:
        con.close()

    # The metrics the chart's alerts and dashboard use, from the installed operator.
    def counted() -> str | None:
        text = _metrics(port)
        done = _sample(text, "rocky_runs_total", namespace=namespace, status="success")
        return text if done == 1.0 else None

    text = wait_for(counted, timeout=30, what="rocky_runs_total{status=success} == 1")
    copied = _sample(text, "rocky_tables_total", namespace=namespace, outcome="copied")
    assert copied == len(TABLES)

    # `helm test`: the chart's test pod (run by the node agent) reads the metrics.
    out = _helm(helm, control_plane, "test", release, "-n", namespace, "--timeout", "90s")
    assert re.search(r"TEST SUITE:\s+\S+-test-metrics\s+Last Started:", out), out
    assert re.search(r"Phase:\s+Succeeded", out), out

    # Everything the operator did, it did as the chart's ServiceAccount, never forbidden.
    user = f"system:serviceaccount:{namespace}:{release}"
    events = [json.loads(line) for line in control_plane.audit_log.read_text().splitlines()]
    mine = [e for e in events if e.get("user", {}).get("username") == user]
    refs = [(e["verb"], e.get("objectRef", {})) for e in mine]
    assert any(verb == "create" and ref.get("resource") == "pods" for verb, ref in refs)
    assert any(ref.get("subresource") == "status" for _, ref in refs)
    forbidden = [
        (e["verb"], e.get("requestURI"))
        for e in mine
        if e.get("responseStatus", {}).get("code") == 403
    ]
    assert forbidden == [], sorted(set(forbidden))


def _finished(cp: ControlPlane, namespace: str) -> dict[str, Any] | None:
    obj: dict[str, Any] = kubectl_json(cp, "get", "rockyrun", "helm-e2e", "-n", namespace)
    phase = obj.get("status", {}).get("phase")
    return obj if phase in ("Succeeded", "PartialFailure", "Failed") else None


def _operator_pod_pull_secrets(cp: ControlPlane, namespace: str, release: str) -> Any:
    """The operator pod's imagePullSecrets."""
    pods = kubectl_json(
        cp, "get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}"
    )["items"]
    operator = [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/component")
                == "operator"]  # fmt: skip
    return operator[0]["spec"].get("imagePullSecrets")


@contextlib.contextmanager
def _watched_pods(cp: ControlPlane, namespace: str, run: str) -> Iterator[list[dict[str, Any]]]:
    """Every version of the run's pods the API server served while the block ran (`kubectl
    get --watch`): the copy pods are deleted once they succeed, so a list afterwards is empty."""
    out = cp.node_work_dir.parent / f"watch-{namespace}-{run}.json"
    seen: list[dict[str, Any]] = []
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [str(cp.kubectl), "get", "pods", "-n", namespace, "-l", f"rocky.dev/run={run}",
             "--watch", "-o", "json"],
            stdout=sink, stderr=subprocess.DEVNULL, env=cp.env("admin"),
        )  # fmt: skip
        try:
            yield seen
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    text, decoder, at = out.read_text(), json.JSONDecoder(), 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            break
        obj, at = decoder.raw_decode(text, at)
        seen.extend(obj["items"] if obj.get("kind") == "List" else [obj])


def _probe(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
