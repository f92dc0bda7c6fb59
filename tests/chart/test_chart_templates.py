"""The Helm chart: `helm lint --strict`, `helm template` output valid against the Kubernetes
OpenAPI schemas for the defaults and every ci/*-values.yaml, and the properties the chart
promises (one Recreate replica, probes, restricted security context, default resources,
least-privilege RBAC cluster-wide or per namespace, 63-character names, values documented and
typed, the CRD copy in step with crds/).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from tests.chart.support import (
    CHART,
    KUBERNETES_VERSION,
    NAMESPACE,
    REPO,
    SCENARIOS,
    Render,
    find,
    only,
    scenario_id,
)

#: Kinds served by CRDs of add-ons (Prometheus Operator); kubernetes-validate has no schema
#: for them: they are decoded strictly into the Prometheus Operator's Go types instead
#: (tools/monitoring-crd-check), and their rules checked by promtool (test_chart_monitoring).
ADDON_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


@pytest.mark.parametrize("values", SCENARIOS, ids=scenario_id)
def test_helm_lint_strict(helm: Path, values: Path | None) -> None:
    args = [str(helm), "lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    if values is not None:
        args += ["--values", str(values)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout
    assert "[ERROR]" not in proc.stdout, proc.stdout
    assert "[WARNING]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("values", SCENARIOS, ids=scenario_id)
def test_rendered_manifests_validate_against_kubernetes_schemas(
    render: Render, values: Path | None
) -> None:
    manifests = render(values=[values] if values else [])
    validated = set()
    for manifest in manifests:
        if (manifest["apiVersion"], manifest["kind"]) in ADDON_KINDS:
            continue
        # strict: unknown fields are errors too (a typo'd key would otherwise be dropped).
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        validated.add(manifest["kind"])
    assert {"Deployment", "Service", "ServiceAccount", "ClusterRole"} <= validated


@pytest.mark.parametrize("values", SCENARIOS, ids=scenario_id)
def test_prometheus_operator_objects_decode_strictly(
    helm: Path, monitoring_crd_check: Path, values: Path | None
) -> None:
    args = [str(helm), "template", "rocky", str(CHART), "--namespace", NAMESPACE]
    args += ["--values", str(values)] if values else []
    rendered = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    proc = subprocess.run(
        [str(monitoring_crd_check)],
        input=rendered,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    expected = sum(
        1
        for doc in yaml.safe_load_all(rendered)
        if doc and (doc["apiVersion"], doc["kind"]) in ADDON_KINDS
    )
    assert f"{expected} Prometheus Operator object(s) decoded strictly" in proc.stdout


def test_monitoring_crd_check_rejects_unknown_fields(
    render: Render, monitoring_crd_check: Path
) -> None:
    """The checker really is strict: a misspelt ServiceMonitor field is an error."""
    (monitor,) = find(render(set_values=["serviceMonitor.enabled=true"]), "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["honorLabel"] = monitor["spec"]["endpoints"][0].pop(
        "honorLabels"
    )
    proc = subprocess.run(
        [str(monitoring_crd_check)],
        input=yaml.safe_dump(monitor),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert 'unknown field "honorLabel"' in proc.stderr


def test_chart_crds_validate_and_match_generated_crd() -> None:
    """charts/rocky/crds/ is a copy of the generated crds/ (Helm installs it from there)."""
    generated = sorted((REPO / "crds").glob("*.yaml"))
    if not generated:
        pytest.skip("crds/ has no generated CRD yet (rocky-operator crd)")
    for source in generated:
        copy = CHART / "crds" / source.name
        assert copy.exists(), f"{copy} missing: cp {source} {copy}"
        assert copy.read_text() == source.read_text(), (
            f"{copy} drifted from {source}: cp {source} {copy}"
        )
        for doc in yaml.safe_load_all(copy.read_text()):
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert sorted(p.name for p in (CHART / "crds").glob("*.yaml")) == [p.name for p in generated]


def test_defaults_operator_deployment(render: Render) -> None:
    deployment = only(render(), "Deployment")
    spec = deployment["spec"]
    # Two replicas, one leader (the Lease): a rolling update hands over, never two acting.
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["rocky-operator"]
    assert container["args"] == [
        "run",
        "--all-namespaces",
        "--metrics-port=8080",
        "--leader-election-lease=rocky-leader",
        f"--leader-election-namespace={NAMESPACE}",
        "--lease-duration-seconds=12",
        "--renew-deadline-seconds=8",
        "--retry-period-seconds=1",
        f"--runner-image={container['image']}",
        "--runner-allowed-images=",
        "--runner-allowed-service-accounts=rocky-runner",
        "--runner-allowed-volume-types=persistentVolumeClaim,configMap,secret,emptyDir",
        "--runner-allowed-mount-paths=/data,/mnt,/srv,/var/lib/rocky",
        "--runner-allowed-env-sources=value,secretKeyRef,configMapKeyRef",
    ]  # cluster-wide: no --runner-service-account (that account is only in the release ns)
    assert container["resources"]["requests"]  # test_chart_runner_network.py: the values
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert pod["serviceAccountName"] == "rocky"
    assert pod["automountServiceAccountToken"] is True


def test_operator_args_parse_with_the_real_command_line(render: Render) -> None:
    """Every argument the chart passes is one `rocky-operator run` accepts."""
    from rocky_operator.commands import run as run_command

    for values in SCENARIOS:
        deployment = only(render(values=[values] if values else []), "Deployment")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"][0] == "run"
        parser = argparse.ArgumentParser(exit_on_error=False)
        run_command.add_arguments(parser)
        args = parser.parse_args(container["args"][1:])
        assert (
            args.metrics_port
            == deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
        )


def test_defaults_meet_restricted_pod_security_standard(render: Render) -> None:
    """The checks of the "restricted" Pod Security Standard that a manifest can show."""
    for manifest in render():
        if manifest["kind"] == "Deployment":
            pod = manifest["spec"]["template"]["spec"]
        elif manifest["kind"] == "Pod":
            pod = manifest["spec"]
        else:
            continue
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert sc["readOnlyRootFilesystem"] is True
        assert not any(k in pod for k in ("hostNetwork", "hostPID", "hostIPC"))


def test_metrics_service_selects_the_operator_pod(render: Render) -> None:
    manifests = render()
    service = only(manifests, "Service")
    pod_labels = only(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    assert service["metadata"]["name"] == "rocky-metrics"


def _rules_by_resource(role: dict[str, Any]) -> dict[str, set[str]]:
    rules: dict[str, set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                rules.setdefault(f"{group}/{resource}", set()).update(rule["verbs"])
    return rules


#: What the operator does with each resource (see templates/rbac.yaml), and nothing more.
NAMESPACED_RULES = {
    "rocky.dev/rockyruns": {"get", "list", "watch", "create", "delete"},
    "rocky.dev/rockyruns/status": {"patch"},
    "rocky.dev/rockyruns/finalizers": {"update"},
    "rocky.dev/rockyschedules": {"get", "list", "watch", "patch"},
    "rocky.dev/rockyschedules/status": {"patch"},
    "rocky.dev/rockyschedules/finalizers": {"update"},
    "/pods": {"list", "watch", "create", "delete"},
    "/pods/log": {"get"},
    "/configmaps": {"get", "list", "create", "update", "patch"},
    "/events": {"create"},
}
CLUSTER_RULES = {"apiextensions.k8s.io/customresourcedefinitions": {"list", "watch"}}


ELECTION = "rocky-leader-election"


def test_leader_election_lease_rbac_is_namespaced_and_minimal(render: Render) -> None:
    """The Lease verbs, in the release namespace only, whatever the watched namespaces."""
    for values in ([], ["watchNamespaces={team-a}"]):
        manifests = render(set_values=values)
        (role,) = [
            r for r in find(manifests, "Role") if r["metadata"]["name"] == "rocky-leader-election"
        ]
        assert role["metadata"]["namespace"] == NAMESPACE
        assert role["rules"] == [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "verbs": ["get", "create", "update"]}
        ]  # fmt: skip
        (binding,) = [
            b
            for b in find(manifests, "RoleBinding")
            if b["metadata"]["name"] == "rocky-leader-election"
        ]
        assert binding["metadata"]["namespace"] == NAMESPACE
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ELECTION
        }  # fmt: skip
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "rocky", "namespace": NAMESPACE}
        ]
        for cluster_role in find(manifests, "ClusterRole"):
            assert "leases" not in json.dumps(cluster_role["rules"])
    custom = render(set_values=["leaderElection.leaseName=ops-lease", "replicas=3"])
    deployment = only(custom, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert (
        "--leader-election-lease=ops-lease"
        in (deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    )


def _without_leader_election(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in find(manifests, kind) if not m["metadata"]["name"].endswith("-election")]


def test_cluster_wide_rbac_is_least_privilege(render: Render) -> None:
    manifests = render()
    assert not _without_leader_election(manifests, "Role")
    assert not _without_leader_election(manifests, "RoleBinding")
    role = only(manifests, "ClusterRole")
    assert _rules_by_resource(role) == NAMESPACED_RULES | CLUSTER_RULES
    binding = only(manifests, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rocky", "namespace": NAMESPACE}
    ]
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in role["rules"])


def test_watch_namespaces_gives_roles_per_namespace(render: Render) -> None:
    manifests = render(set_values=["watchNamespaces={team-a,team-b}"])
    roles = _without_leader_election(manifests, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert _rules_by_resource(role) == NAMESPACED_RULES
    bindings = _without_leader_election(manifests, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["subjects"][0]["namespace"] == NAMESPACE
        assert binding["roleRef"]["kind"] == "Role"
    # Only kopf's discovery (CRDs, and the namespaces it resolves its list against) stays
    # cluster-wide.
    assert _rules_by_resource(only(manifests, "ClusterRole")) == CLUSTER_RULES | {
        "/namespaces": {"list", "watch"}
    }
    args = only(manifests, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args
    assert "--namespace=team-b" in args
    assert "--all-namespaces" not in args
    # The runner ServiceAccount exists in every watched namespace: runs default to it.
    assert "--runner-service-account=rocky-runner" in args
    runner_accounts = [
        sa for sa in find(manifests, "ServiceAccount") if sa["metadata"]["name"] == "rocky-runner"
    ]
    assert sorted(sa["metadata"]["namespace"] for sa in runner_accounts) == [
        "rocky-system",
        "team-a",
        "team-b",
    ]
    assert all(sa["automountServiceAccountToken"] is False for sa in runner_accounts)


def test_addons_off_by_default_and_on_when_enabled(render: Render) -> None:
    kinds = {m["kind"] for m in render()}
    assert "ServiceMonitor" not in kinds
    assert "PrometheusRule" not in kinds
    assert not any(m["kind"] == "ConfigMap" for m in render())
    manifests = render(
        set_values=[
            "serviceMonitor.enabled=true",
            "prometheusRule.enabled=true",
            "dashboard.enabled=true",
        ]
    )
    monitor = only(manifests, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["honorLabels"] is True
    service = only(manifests, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    dashboard = only(manifests, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["rocky-operator.json"])["uid"] == "rocky-operator"


def test_helm_test_pod_reads_the_metrics_service(render: Render) -> None:
    manifests = render()
    pods = find(manifests, "Pod")
    (pod,) = pods
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    compile(script, "helm-test", "exec")  # the embedded script is valid Python
    assert f"http://rocky-metrics.{NAMESPACE}.svc:8080/metrics" in script
    assert not find(render(set_values=["tests.enabled=false"]), "Pod")


@pytest.mark.parametrize(
    ("release", "override"),
    [("a" * 70, None), ("x", "y" * 80), ("rocky-" + "z" * 60, None)],
)
def test_names_fit_in_63_characters(render: Render, release: str, override: str | None) -> None:
    release = release[:53]  # helm itself refuses release names longer than 53
    sets = [f"fullnameOverride={override}"] if override else []
    for manifest in render(release=release, set_values=sets):
        name = manifest["metadata"]["name"]
        assert len(name) <= 63, name
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
    names = {m["metadata"]["name"] for m in render(release=release, set_values=sets)}
    assert any(n.endswith("-metrics") for n in names)
    assert any(n.endswith("-runner") for n in names)


def _values_without_comment(path: Path) -> list[str]:
    """Keys of values.yaml not directly preceded by a comment line."""
    missing = []
    previous = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        key = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*):", line)
        if key and not stripped.startswith("-") and not previous.startswith("#"):
            missing.append(key.group(1))
        if stripped:
            previous = stripped
    return missing


def test_every_values_key_has_a_comment_and_a_schema() -> None:
    values_path = CHART / "values.yaml"
    assert values_path.read_text().startswith("# yaml-language-server: $schema=values.schema.json")
    assert _values_without_comment(values_path) == []
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load(values_path.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(values, schema)

    def walk(node: dict[str, Any], schema_node: dict[str, Any], path: str) -> None:
        for key, value in node.items():
            props = schema_node.get("properties", {})
            assert key in props, f"{path}{key} is not in values.schema.json"
            assert props[key].get("description"), f"{path}{key} has no description in the schema"
            if isinstance(value, dict) and "properties" in props[key]:
                walk(value, props[key], f"{path}{key}.")

    walk(values, schema, "")


@pytest.mark.parametrize(
    "bad",
    ["image.pullPolicy=Sometimes", "watchNamespaces={Not_A_Namespace}", "metrics.port=0", "typo=1"],
)
def test_schema_rejects_bad_values(helm: Path, bad: str) -> None:
    proc = subprocess.run(
        [str(helm), "template", "r", str(CHART), "--set", bad],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr


def test_kube_version_constraint(helm: Path) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == ">=1.30.0-0"
    old = subprocess.run(
        [str(helm), "template", "r", str(CHART), "--kube-version", "1.29.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert old.returncode != 0
    assert "kubeVersion" in old.stderr
    new = subprocess.run(
        [str(helm), "template", "r", str(CHART), "--kube-version", "1.30.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert new.returncode == 0, new.stderr
