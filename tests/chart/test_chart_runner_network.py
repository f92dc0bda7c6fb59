"""The chart's runner NetworkPolicy (runner.networkPolicy) and the operator's default
resources, rendered by the real helm and validated against the Kubernetes OpenAPI schemas
(strict). tests/e2e/test_chart_server_validation.py sends the same objects to the real
kube-apiserver.

The NetworkPolicy is off by default (a warehouse's addresses are the cluster's to know; a
policy without them would cut every run off); enabled, it selects every runner pod the
operator makes (copy and discovery pods alike), denies all ingress, and allows egress only
to the configured warehouse CIDRs/ports, DNS and the extra rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from tests.chart.support import CHART, KUBERNETES_VERSION, NAMESPACE, Render, find, only

from rocky_operator.logic.discovery_pod import discovery_labels
from rocky_operator.logic.pod_manifest import pod_labels

SCENARIO = CHART / "ci" / "networkpolicy-values.yaml"


def _container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = only(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_operator_has_requests_and_a_memory_limit_by_default(render: Render) -> None:
    resources = _container(render())["resources"]
    assert resources == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "512Mi"},  # no CPU limit: throttling only delays reactions
    }


def test_operator_resources_can_be_replaced_or_removed(render: Render) -> None:
    custom = _container(
        render(set_values=["resources.requests.memory=1Gi", "resources.limits.memory=2Gi"])
    )["resources"]
    assert custom == {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    assert "resources" not in _container(render(set_values=["resources=null"]))


def test_no_network_policy_by_default(render: Render) -> None:
    assert not find(render(), "NetworkPolicy")


def _policies(render: Render, *sets: str, values: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    manifests = render(values=list(values), set_values=["runner.networkPolicy.enabled=true", *sets])
    policies = find(manifests, "NetworkPolicy")
    for policy in policies:
        kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)
    return policies


@pytest.mark.parametrize("labels", [pod_labels("r", "k" * 10, 1), discovery_labels("r")])
def test_policy_selects_every_runner_pod_and_nothing_else(
    render: Render, labels: dict[str, str]
) -> None:
    (policy,) = _policies(render)
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= labels.items()  # copy and discovery pods alike
    operator_labels = only(render(), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= operator_labels.items()


def test_enabled_without_endpoints_denies_all_but_dns(render: Render) -> None:
    (policy,) = _policies(render)
    spec = policy["spec"]
    assert policy["metadata"] == {
        "name": "rocky-runner",
        "namespace": NAMESPACE,
        "labels": policy["metadata"]["labels"],
    }
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == []  # runners serve nothing
    (dns,) = spec["egress"]
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    # Without DNS and endpoints nothing leaves the pod (an empty list, not a missing key,
    # which the API would read the same way: deny all).
    (closed,) = _policies(render, "runner.networkPolicy.dns.enabled=false")
    assert closed["spec"]["egress"] == []


def test_warehouse_endpoints_and_extra_rules(render: Render) -> None:
    (policy,) = _policies(render, values=(SCENARIO,))
    warehouse, any_port, dns, extra = policy["spec"]["egress"]
    assert warehouse == {
        "to": [{"ipBlock": {"cidr": "10.20.0.0/16", "except": ["10.20.99.0/24"]}}],
        "ports": [{"port": 443, "protocol": "TCP"}, {"port": 5432, "protocol": "TCP"}],
    }
    assert any_port == {"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}]}  # every port
    assert dns["ports"][0]["port"] == 53
    assert extra == {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "proxy"}}}],
        "ports": [{"port": 3128, "protocol": "TCP"}],
    }


def test_one_policy_per_runner_namespace(render: Render) -> None:
    policies = _policies(
        render,
        "watchNamespaces={team-a,team-b}",
        "runner.networkPolicy.namespaces={team-b,batch}",
    )
    assert sorted(p["metadata"]["namespace"] for p in policies) == [
        "batch",
        "rocky-system",
        "team-a",
        "team-b",
    ]
    assert len({yaml.safe_dump(p["spec"]) for p in policies}) == 1


@pytest.mark.parametrize(
    "bad",
    [
        "runner.networkPolicy.warehouse[0].port=443",  # no cidr, unknown key
        "runner.networkPolicy.warehouse[0].cidr=10.0.0.0/8,"
        "runner.networkPolicy.warehouse[0].ports[0].protocol=HTTP",
        "runner.networkPolicy.namespaces={Not_A_Namespace}",
        "runner.networkPolicy.enable=true",
    ],
)
def test_schema_rejects_bad_network_policy_values(helm: Path, bad: str) -> None:
    import subprocess

    proc = subprocess.run(
        [str(helm), "template", "r", str(CHART), "--set", bad],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
