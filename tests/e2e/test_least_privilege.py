"""The operator under exactly the chart's RBAC, on the real kube-apiserver.

The chart is rendered with `helm template` (watchNamespaces = the test namespace); its
ServiceAccount, Roles and bindings are applied; the operator runs as that ServiceAccount
(a token from the TokenRequest API, not an admin credential) through discovery pods,
a run with every failure kind, a run whose Secret is missing, and a RockySchedule's run.
The apiserver's audit log then shows every request the operator made: none was denied,
the roles hold no Secret access, and every verb the roles grant was used by this run,
or is named below with the code path that needs it (so an unused grant cannot linger).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.chart.support import CHART, build_tool
from tests.support.control_plane import ControlPlane, audit_offset
from tests.support.e2e import OperatorProcess, Rest, apply_crds, kubectl, wait_for

from rocky_operator.demo.warehouse import build_warehouse

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo" / "rockyrun.yaml"
FINISHED = ("Succeeded", "PartialFailure", "Failed")
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")

#: Granted but not exercised by this test, each with the code path that needs it.
NOT_EXERCISED: dict[tuple[str, str, str], str] = {
    ("rocky.dev", "rockyruns", "delete"): "RockySchedule history limits prune old runs",
    ("rocky.dev", "rockyruns/finalizers", "update"): (
        "ownerReferences with blockOwnerDeletion under OwnerReferencesPermissionEnforcement "
        "(an admission check, not a request)"
    ),
    ("rocky.dev", "rockyschedules/finalizers", "update"): (
        "runs owned by their schedule with blockOwnerDeletion (admission check)"
    ),
    ("", "configmaps", "update"): "a RunOutput or journal ConfigMap rewritten whole",
}


def _render(helm: Path, release: str, system_ns: str, watched: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(helm), "template", release, str(CHART), "--namespace", system_ns,
         "--set", f"watchNamespaces[0]={watched}"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(out) if d]


def granted_verbs(manifests: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every rule of the rendered Role / ClusterRole."""
    out: set[tuple[str, str, str]] = set()
    for doc in manifests:
        if doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc.get("rules") or []:
                for group in rule.get("apiGroups", [""]):
                    for resource in rule["resources"]:
                        out.update((group, resource, verb) for verb in rule["verbs"])
    return out


def operator_requests(cp: ControlPlane, since: int, username: str) -> list[dict[str, Any]]:
    events = []
    with cp.audit_log.open("rb") as fh:
        fh.seek(since)
        for line in fh:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("user", {}).get("username") == username:
                events.append(event)
    return events


def _key(event: dict[str, Any]) -> tuple[str, str, str]:
    ref = event.get("objectRef") or {}
    resource = ref.get("resource", "")
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    return ref.get("apiGroup", ""), resource, event["verb"]


def _kubeconfig_with_token(cp: ControlPlane, token: str, path: Path) -> Path:
    doc = json.loads(cp.kubeconfig.read_text())
    doc["users"] = [{"name": "sa", "user": {"token": token}}]
    for ctx in doc["contexts"]:
        ctx["context"]["user"] = "sa"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def chart_operator(
    control_plane: ControlPlane, namespace: str, rest: Rest, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, list[dict[str, Any]], str]]:
    helm = build_tool("helm")
    release = f"lp{secrets.token_hex(3)}"
    system_ns = f"{release}-system"
    rest.post("/api/v1/namespaces", {"metadata": {"name": system_ns}})
    rendered = _render(helm, release, system_ns, namespace)
    manifests = [m for m in rendered if m["kind"] in RBAC_KINDS]
    # The chart's leader election (a Lease in the release namespace, its own Role) as deployed.
    deployment = next(m for m in rendered if m["kind"] == "Deployment")
    election = tuple(
        arg
        for arg in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        if arg.startswith(("--leader-election-", "--lease-", "--renew-", "--retry-"))
    )
    assert f"--leader-election-namespace={system_ns}" in election, election
    kubectl(control_plane, "apply", "-f", "-", input=yaml.safe_dump_all(manifests))
    account = next(
        m["metadata"]["name"]
        for m in manifests
        if m["kind"] == "ServiceAccount" and m["metadata"]["namespace"] == system_ns
        and not m["metadata"]["name"].endswith("-runner")
    )  # fmt: skip
    token = rest.post(
        f"/api/v1/namespaces/{system_ns}/serviceaccounts/{account}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"expirationSeconds": 3600}},
    )["status"]["token"]  # fmt: skip
    apply_crds(control_plane, "rockyruns.rocky.dev", "rockyschedules.rocky.dev")
    kubeconfig = _kubeconfig_with_token(control_plane, token, tmp_path / "sa.kubeconfig")
    operator = OperatorProcess(
        control_plane,
        namespace,
        tmp_path / "operator.log",
        extra_args=("--stuck-grace-seconds", "2", *election),
        env={"KUBECONFIG": str(kubeconfig), "ROCKY_SCHEDULE_POLL_SECONDS": "1"},
    )
    username = f"system:serviceaccount:{system_ns}:{account}"
    try:
        yield operator, manifests, username
    finally:
        operator.stop()
        for kind in ("ClusterRoleBinding", "ClusterRole"):
            for m in manifests:
                if m["kind"] == kind:
                    kubectl(control_plane, "delete", kind.lower(), m["metadata"]["name"],
                            "--ignore-not-found", check=False)  # fmt: skip


def _get(cp: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any]:
    out = kubectl(cp, "-n", namespace, "get", kind, name, "-o", "json", check=False)
    return dict(json.loads(out.stdout)) if out.returncode == 0 else {}


def _finished(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    run = _get(cp, namespace, "rockyrun", name)
    return run if (run.get("status") or {}).get("phase") in FINISHED else None


def _demo_spec(warehouse: Path) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(DEMO.read_text())["spec"]
    spec["adapter"]["duckdb"]["path"] = str(warehouse)
    spec["runner"].pop("volumes", None)
    spec["runner"].pop("volumeMounts", None)
    return spec


def _apply(cp: ControlPlane, namespace: str, kind: str, name: str, spec: dict[str, Any]) -> None:
    doc = {
        "apiVersion": "rocky.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }
    kubectl(cp, "-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(doc))


def test_operator_under_the_charts_rbac_is_never_denied(
    control_plane: ControlPlane,
    namespace: str,
    chart_operator: tuple[OperatorProcess, list[dict[str, Any]], str],
    tmp_path: Path,
) -> None:
    operator, manifests, username = chart_operator
    granted = granted_verbs(manifests)
    assert not {g for g in granted if g[1].startswith("secrets")}, "the operator reads no Secret"
    since = audit_offset(control_plane)
    operator.start()
    warehouse = build_warehouse(tmp_path / "warehouse").warehouse
    cp = control_plane

    # A run with every failure kind, discovered by its discovery pod.
    _apply(cp, namespace, "RockyRun", "demo", _demo_spec(warehouse))
    demo = wait_for(lambda: _finished(cp, namespace, "demo"), timeout=240, what="demo finished")
    assert demo["status"]["phase"] == "PartialFailure", demo["status"]
    assert demo["status"]["tables"]["copied"] > 0

    # A run whose Secret is missing: the discovery pod cannot start; auth-failed, no table pod.
    missing = {
        **_demo_spec(warehouse),
        "adapter": {
            "type": "snowflake",
            "snowflake": {"account": "acct", "user": "etl",
                          "passwordSecretRef": {"name": "not-there", "key": "password"}},
        },
    }  # fmt: skip
    _apply(cp, namespace, "RockyRun", "no-secret", missing)
    refused = wait_for(lambda: _finished(cp, namespace, "no-secret"), timeout=120, what="no-secret")
    conditions = {c["type"]: c for c in refused["status"]["conditions"]}
    assert refused["status"]["phase"] == "Failed"
    assert conditions["Accepted"]["reason"] == "SecretNotFound", conditions
    assert "not-there" in conditions["Accepted"]["message"]

    # A schedule's run (the schedule controller: create runs, patch its status).
    spec = _demo_spec(warehouse)
    spec["filter"] = "tenant=acme,region=us_west,source=shopify"
    schedule = {"schedule": "* * * * *", "suspend": True, "runTemplate": {"spec": spec}}
    _apply(cp, namespace, "RockySchedule", "minutely", schedule)
    wait_for(
        lambda: (_get(cp, namespace, "rockyschedule", "minutely").get("status") or {}).get(
            "conditions"
        ),
        timeout=60,
        what="the schedule's first status",
    )
    last = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    kubectl(cp, "-n", namespace, "patch", "rockyschedule", "minutely", "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": {"lastScheduleTime": last}}))  # fmt: skip
    kubectl(cp, "-n", namespace, "patch", "rockyschedule", "minutely", "--type=merge",
            "-p", json.dumps({"spec": {"suspend": False}}))  # fmt: skip

    def scheduled_run() -> str | None:
        out = kubectl(cp, "-n", namespace, "get", "rockyrun", "-o", "json").stdout
        names = [r["metadata"]["name"] for r in json.loads(out)["items"]]
        return next((n for n in names if n.startswith("minutely-")), None)

    run_name = wait_for(scheduled_run, timeout=90, what="the scheduled run")
    wait_for(lambda: _finished(cp, namespace, run_name), timeout=180, what=f"{run_name} done")

    def discovery_pods() -> list[str]:
        pods = json.loads(kubectl(cp, "-n", namespace, "get", "pods", "-o", "json").stdout)
        return [p["metadata"]["name"] for p in pods["items"]
                if p["metadata"]["name"].endswith("-discovery")]  # fmt: skip

    # Deleted by the operator before planning; gone once the node agent confirms (a deleted
    # pod stays listed, terminating, until its node does): wait for that, not a moment.
    wait_for(lambda: discovery_pods() == [], timeout=60, what="the discovery pod gone")
    operator.stop()

    events = operator_requests(cp, since, username)
    assert events, "no request of the operator's ServiceAccount in the audit log"
    denied = sorted({_key(e) for e in events if (e.get("responseStatus") or {}).get("code") == 403})
    assert denied == [], f"denied under the chart's RBAC: {denied}"
    used = {_key(e) for e in events}
    assert not {u for u in used if u[1].startswith("secrets")}
    assert ("", "pods/log", "get") in used  # the discovery pod's answer
    unused = sorted(granted - used - set(NOT_EXERCISED))
    assert unused == [], f"granted by the chart but never used (drop them or say why): {unused}"
    print("\nused verbs:", sorted(used))
