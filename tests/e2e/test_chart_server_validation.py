"""The chart's rendered objects, validated by the real kube-apiserver: for the defaults and
every ci/*-values.yaml scenario, `kubectl apply --dry-run=server` of everything the chart
renders (the API server decodes strictly, validates and runs admission, without storing),
and the runner NetworkPolicy applied for real and read back unchanged. The Prometheus
Operator's kinds are left out (their CRDs are not installed here; tests/chart decodes them
into the Prometheus Operator's Go types instead).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.chart.support import CHART, SCENARIOS, build_tool, scenario_id
from tests.support.control_plane import ControlPlane
from tests.support.e2e import Rest, kubectl, kubectl_json

ADDON_GROUP = "monitoring.coreos.com/"


@pytest.fixture(scope="module")
def helm() -> Path:
    return build_tool("helm")


def _render(helm: Path, namespace: str, values: Path | None, *sets: str) -> list[dict[str, Any]]:
    args = [str(helm), "template", "rocky", str(CHART), "--namespace", namespace]
    args += ["--values", str(values)] if values else []
    for item in sets:
        args += ["--set", item]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def _ensure_namespaces(rest: Rest, manifests: list[dict[str, Any]]) -> None:
    for name in sorted({m["metadata"].get("namespace") for m in manifests} - {None}):
        if not rest.exists(f"/api/v1/namespaces/{name}"):
            rest.post("/api/v1/namespaces", {"metadata": {"name": name}})


@pytest.mark.parametrize("values", SCENARIOS, ids=scenario_id)
def test_api_server_accepts_every_rendered_object(
    helm: Path, control_plane: ControlPlane, rest: Rest, namespace: str, values: Path | None
) -> None:
    # Per-test namespaces for the watched ones too, so scenarios never share objects.
    sets = (
        (f"watchNamespaces={{{namespace}-a,{namespace}-b}}",)
        if values and ("watchNamespaces" in (yaml.safe_load(values.read_text()) or {}))
        else ()
    )
    manifests = [
        m
        for m in _render(helm, namespace, values, *sets)
        if not m["apiVersion"].startswith(ADDON_GROUP)
    ]
    _ensure_namespaces(rest, manifests)
    stream = "\n---\n".join(yaml.safe_dump(m) for m in manifests)
    out = kubectl(control_plane, "apply", "--dry-run=server", "-f", "-", input=stream).stdout
    accepted = [line for line in out.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(manifests), out
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "ServiceAccount", "Service"} <= kinds
    if values is not None and values.name == "networkpolicy-values.yaml":
        assert "NetworkPolicy" in kinds


def test_runner_network_policy_is_stored_as_rendered(
    helm: Path, control_plane: ControlPlane, namespace: str
) -> None:
    (policy,) = [
        m
        for m in _render(helm, namespace, CHART / "ci" / "networkpolicy-values.yaml")
        if m["kind"] == "NetworkPolicy"
    ]
    kubectl(control_plane, "apply", "-f", "-", input=json.dumps(policy))
    stored = kubectl_json(
        control_plane, "get", "networkpolicy", policy["metadata"]["name"], "-n", namespace
    )
    # Nothing dropped or defaulted differently; the API omits the empty ingress list, which
    # means the same (Ingress in policyTypes with no rule: no ingress at all).
    rendered = {k: v for k, v in policy["spec"].items() if v != []}
    assert stored["spec"] == rendered
    assert "Ingress" in stored["spec"]["policyTypes"]
    assert not stored["spec"].get("ingress")


def test_api_server_refuses_what_the_values_schema_lets_through(
    helm: Path, control_plane: ControlPlane, namespace: str
) -> None:
    """The dry run really validates: a CIDR the values schema cannot judge is refused."""
    (policy,) = [
        m
        for m in _render(
            helm,
            namespace,
            None,
            "runner.networkPolicy.enabled=true",
            "runner.networkPolicy.warehouse[0].cidr=10.0.0.0/33",
        )
        if m["kind"] == "NetworkPolicy"
    ]
    proc = kubectl(
        control_plane, "apply", "--dry-run=server", "-f", "-", input=json.dumps(policy), check=False
    )
    assert proc.returncode != 0
    assert "cidr" in proc.stderr.lower(), proc.stderr
