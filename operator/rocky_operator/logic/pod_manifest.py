"""Runner pod manifests: one attempt of one table, and the run's discovery pod.

Every runner pod gets a deterministic name, the run's labels and owner reference, a
restricted security context, and credentials only by Secret reference.

Pure: no client, no clock, no logging.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rocky_operator.api.spec import API_GROUP, API_VERSION, KIND, RockyRunSpec
from rocky_operator.logic.pods import (
    ANNOTATION_ASSET_KEY,
    CONTAINER_NAME,
    LABEL_ATTEMPT,
    LABEL_ROLE,
    LABEL_RUN,
    LABEL_TABLE,
)
from rocky_operator.logic.tables import PlannedTable, attempt_name
from rocky_runner.contract import (
    DEFAULT_RESULT_PATH,
    ENV_REDACT_ENV,
    ENV_RESULT_PATH,
    ENV_TASK,
)


def owner_reference(run_name: str, run_uid: str) -> dict[str, Any]:
    """The controller owner reference to the RockyRun: pods and ConfigMaps go with it."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": run_name,
        "uid": run_uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def pod_labels(run_name: str, key: str, attempt: int) -> dict[str, str]:
    return {
        LABEL_RUN: run_name,
        LABEL_TABLE: key,
        LABEL_ATTEMPT: str(attempt),
        LABEL_ROLE: "runner",
        "app.kubernetes.io/name": "rocky-runner",
        "app.kubernetes.io/managed-by": "rocky-operator",
    }


_RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


#: The runner image when neither the RockyRun nor the operator names one.
DEFAULT_RUNNER_IMAGE = "ghcr.io/rocky-dev/rocky-operator:0.1.0"


@dataclass(frozen=True)
class RunnerDefaults:
    """What the operator fills in where ``spec.runner`` says nothing."""

    image: str = DEFAULT_RUNNER_IMAGE
    """Runner image (``rocky-operator run --runner-image``)."""
    service_account_name: str | None = None
    """Runner ServiceAccount (``--runner-service-account``)."""
    image_pull_secrets: tuple[str, ...] = ()
    """Secrets for pulling the runner image (``--runner-image-pull-secrets``; the chart's
    ``imagePullSecrets``): on every runner pod, whichever ServiceAccount it runs as."""


def runner_pod_spec(
    spec: RockyRunSpec,
    defaults: RunnerDefaults,
    *,
    first_env: Mapping[str, str],
    command: Sequence[str],
) -> dict[str, Any]:
    """The pod spec every runner pod of a run shares (copy attempts and discovery).

    ``first_env`` is the role's own task variable; then the result path, HOME and TMPDIR on
    the ``/tmp`` emptyDir (the root filesystem is read-only; DuckDB writes extension and
    spill files under HOME), the adapter's Secret references and the run's own env.
    """
    runner = spec.runner
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in first_env.items()]
    env += [
        {"name": ENV_RESULT_PATH, "value": DEFAULT_RESULT_PATH},
        {"name": "HOME", "value": "/tmp"},
        {"name": "TMPDIR", "value": "/tmp"},
    ]
    for env_name, ref in sorted(spec.adapter.secret_refs().items()):
        env.append(
            {"name": env_name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        )
    # The run's own env from Secrets: the runner redacts their values too.
    secret_sourced = sorted(
        {
            item["name"]
            for item in runner.env or []
            if isinstance(item.get("name"), str)
            and isinstance(item.get("valueFrom"), dict)
            and item["valueFrom"].get("secretKeyRef")
        }
    )
    if secret_sourced:
        env.append({"name": ENV_REDACT_ENV, "value": ",".join(secret_sourced)})
    env.extend(runner.env or [])
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": runner.image or defaults.image,
        "imagePullPolicy": runner.image_pull_policy,
        "command": list(command),
        "env": env,
        "terminationMessagePath": DEFAULT_RESULT_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": dict(_RESTRICTED_CONTAINER),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *(runner.volume_mounts or [])],
    }
    if runner.resources:
        container["resources"] = dict(runner.resources)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}, *(runner.volumes or [])],
    }
    service_account = runner.service_account_name or defaults.service_account_name
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    if defaults.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in defaults.image_pull_secrets]
    if runner.node_selector:
        pod_spec["nodeSelector"] = dict(runner.node_selector)
    if runner.tolerations:
        pod_spec["tolerations"] = list(runner.tolerations)
    return pod_spec


def build_pod(
    *,
    run_name: str,
    run_uid: str,
    namespace: str,
    spec: RockyRunSpec,
    table: PlannedTable,
    attempt: int,
    defaults: RunnerDefaults = RunnerDefaults(),
) -> dict[str, Any]:
    """The Pod manifest of one attempt of one table.

    ``defaults`` fill what ``spec.runner`` leaves unset (image, ServiceAccount): they are
    the operator's settings, so one Helm value moves every run to a new runner image.

    The name is deterministic (``attempt_name``), so creating it twice is a 409, never a
    second runner.
    """
    pod_spec = runner_pod_spec(
        spec,
        defaults,
        first_env={ENV_TASK: table.task.model_dump_json(by_alias=True)},
        command=spec.runner.command,
    )
    if spec.runner.active_deadline_seconds:
        pod_spec["activeDeadlineSeconds"] = spec.runner.active_deadline_seconds
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": attempt_name(run_name, table.key, attempt),
            "namespace": namespace,
            "labels": pod_labels(run_name, table.key, attempt),
            "annotations": {ANNOTATION_ASSET_KEY: json.dumps(list(table.asset_key))},
            "ownerReferences": [owner_reference(run_name, run_uid)],
        },
        "spec": pod_spec,
    }
