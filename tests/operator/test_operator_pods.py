"""Runner pods: the manifest of an attempt, and the classification of observed pods.

One test per row of DESIGN.md's "what happened to the pod" table, plus the rules
around them (grace period for stuck pods, a valid message wins over the pod's fate,
pods that are not ours are ignored).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.logic.decide import AttemptState
from rocky_operator.logic.pod_manifest import DEFAULT_RUNNER_IMAGE, RunnerDefaults, build_pod
from rocky_operator.logic.pods import PodSettings, classify_pod, missing_pod_attempt
from rocky_operator.logic.tables import PlannedTable, plan_tables
from rocky_runner.contract import FailureKind, TableResult, decode_result, encode_result
from rocky_runner.discovery import DiscoveredTable

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _spec(**runner: Any) -> RockyRunSpec:
    return RockyRunSpec.model_validate(
        {
            "adapter": {
                "type": "snowflake",
                "snowflake": {
                    "account": "acme-prod",
                    "user": "rocky",
                    "passwordSecretRef": {"name": "sf-creds", "key": "password"},
                },
            },
            "source": {"schemaPattern": {"components": ["tenant", "source"]}},
            "target": {"catalogTemplate": "{tenant}_wh", "schemaTemplate": "staging__{source}"},
            "runner": {"image": "rocky:1", **runner},
        }
    )


def _table(spec: RockyRunSpec) -> PlannedTable:
    found = [
        DiscoveredTable(
            None, "src__acme__shopify", "orders", {"tenant": "acme", "source": "shopify"}
        )
    ]
    return plan_tables(spec, found)[0]


@pytest.mark.parametrize(
    ("runner", "defaults", "image", "service_account"),
    [
        pytest.param({}, RunnerDefaults(), DEFAULT_RUNNER_IMAGE, None, id="built-in default"),
        pytest.param(
            {},
            RunnerDefaults(image="reg/rocky:2", service_account_name="rocky-runner"),
            "reg/rocky:2",
            "rocky-runner",
            id="operator defaults fill an unset spec.runner",
        ),
        pytest.param(
            {"image": "mine:3", "serviceAccountName": "mine"},
            RunnerDefaults(image="reg/rocky:2", service_account_name="rocky-runner"),
            "mine:3",
            "mine",
            id="the run's own choice wins",
        ),
    ],
)
def test_runner_image_and_service_account_defaults(
    runner: dict[str, Any], defaults: RunnerDefaults, image: str, service_account: str | None
) -> None:
    spec = _spec(**runner)
    if "image" not in runner:
        spec = spec.model_copy(update={"runner": spec.runner.model_copy(update={"image": None})})
    pod = build_pod(
        run_name="r",
        run_uid="u",
        namespace="n",
        spec=spec,
        table=_table(spec),
        attempt=1,
        defaults=defaults,
    )
    assert pod["spec"]["containers"][0]["image"] == image
    assert pod["spec"].get("serviceAccountName") == service_account


def test_pod_manifest() -> None:
    spec = _spec(
        resources={"limits": {"memory": "1Gi"}},
        nodeSelector={"pool": "etl"},
        tolerations=[{"key": "etl", "operator": "Exists"}],
        activeDeadlineSeconds=900,
        serviceAccountName="rocky-runner",
    )
    table = _table(spec)
    pod = build_pod(
        run_name="nightly", run_uid="u-1", namespace="data", spec=spec, table=table, attempt=2
    )
    meta = pod["metadata"]
    assert meta["name"] == f"nightly-{table.key}-2"
    assert meta["labels"]["rocky.dev/run"] == "nightly"
    assert meta["labels"]["rocky.dev/table"] == table.key
    assert meta["labels"]["rocky.dev/attempt"] == "2"
    owner = meta["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("RockyRun", "u-1", True)
    pod_spec = pod["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    assert pod_spec["activeDeadlineSeconds"] == 900
    assert pod_spec["nodeSelector"] == {"pool": "etl"}
    assert pod_spec["tolerations"] == [{"key": "etl", "operator": "Exists"}]
    assert pod_spec["serviceAccountName"] == "rocky-runner"
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    container = pod_spec["containers"][0]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["resources"] == {"limits": {"memory": "1Gi"}}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e for e in container["env"]}
    assert env["ROCKY_SNOWFLAKE_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "sf-creds", "key": "password"}
    }
    assert "value" not in env["ROCKY_SNOWFLAKE_PASSWORD"]
    task = env["ROCKY_TASK"]["value"]
    assert '"asset_key":["snowflake","acme","shopify","orders"]' in task


def _pod(status: dict[str, Any], *, created: datetime = NOW, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "r-abc-1",
            "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "labels": {"rocky.dev/run": "r", "rocky.dev/table": "abc", "rocky.dev/attempt": "1"},
            **meta,
        },
        "spec": {"activeDeadlineSeconds": 60},
        "status": status,
    }


def _terminated(code: int, message: str | None = None, reason: str = "Error") -> dict[str, Any]:
    term: dict[str, Any] = {
        "exitCode": code,
        "reason": reason,
        "finishedAt": "2026-01-02T03:04:05Z",
    }
    if message is not None:
        term["message"] = message
    return {"name": "runner", "state": {"terminated": term}}


def _message(kind: FailureKind | None) -> str:
    outcome = "copied" if kind is None else "failed"
    return encode_result(
        TableResult(
            asset_key=["duckdb", "t"],
            outcome=outcome,
            failure_kind=kind,
            error="boom" if kind else None,
            rows_copied=7 if kind is None else None,
        )
    ).decode()


def test_row_valid_message_gives_its_kind() -> None:
    pod = _pod(
        {
            "phase": "Failed",
            "containerStatuses": [_terminated(14, _message(FailureKind.QUOTA_EXCEEDED))],
        }
    )
    attempt = classify_pod(pod, NOW)
    assert attempt is not None
    assert (attempt.state, attempt.failure_kind) == (
        AttemptState.FAILED,
        FailureKind.QUOTA_EXCEEDED,
    )
    assert attempt.result is not None
    assert attempt.error == "boom"


def test_row_valid_message_copied() -> None:
    pod = _pod({"phase": "Succeeded", "containerStatuses": [_terminated(0, _message(None))]})
    attempt = classify_pod(pod, NOW)
    assert attempt is not None
    assert attempt.state is AttemptState.COPIED
    assert attempt.result is not None
    assert attempt.result.rows_copied == 7


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (10, FailureKind.CONNECTION_FAILED),
        (11, FailureKind.AUTH_FAILED),
        (12, FailureKind.QUERY_REJECTED),
        (13, FailureKind.TRANSIENT),
        (14, FailureKind.QUOTA_EXCEEDED),
        (15, FailureKind.NOT_FOUND),
        (16, FailureKind.UNKNOWN),
    ],
)
@pytest.mark.parametrize(
    "message", [None, "Traceback (most recent call last): ...", '{"v": 1, "outcome": "fai']
)
def test_row_exit_code_without_readable_message(
    code: int, kind: FailureKind, message: str | None
) -> None:
    pod = _pod({"phase": "Failed", "containerStatuses": [_terminated(code, message)]})
    attempt = classify_pod(pod, NOW)
    assert attempt is not None
    assert attempt.failure_kind is kind
    assert f"code {code}" in (attempt.error or "")


def test_row_oom_or_other_crash_is_unknown() -> None:
    oom = classify_pod(
        _pod({"phase": "Failed", "containerStatuses": [_terminated(137, None, "OOMKilled")]}), NOW
    )
    assert oom is not None
    assert oom.failure_kind is FailureKind.UNKNOWN
    assert "OOMKilled" in (oom.error or "")
    assert "137" in (oom.error or "")
    crash = classify_pod(_pod({"phase": "Failed", "containerStatuses": [_terminated(1)]}), NOW)
    assert crash is not None
    assert crash.failure_kind is FailureKind.UNKNOWN
    assert "exit code 1" in (crash.error or "")


@pytest.mark.parametrize(
    "status",
    [
        {"phase": "Failed", "reason": "Evicted", "message": "low on memory"},
        {
            "phase": "Failed",
            "conditions": [
                {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
            ],
            "containerStatuses": [_terminated(143)],
        },
        {"phase": "Failed", "reason": "NodeLost"},
    ],
)
def test_row_disruption_is_transient(status: dict[str, Any]) -> None:
    attempt = classify_pod(_pod(status), NOW)
    assert attempt is not None
    assert attempt.failure_kind is FailureKind.TRANSIENT
    assert "disrupted" in (attempt.error or "")


def test_row_deadline_exceeded_is_transient() -> None:
    attempt = classify_pod(
        _pod(
            {
                "phase": "Failed",
                "reason": "DeadlineExceeded",
                "containerStatuses": [_terminated(143)],
            }
        ),
        NOW,
    )
    assert attempt is not None
    assert attempt.failure_kind is FailureKind.TRANSIENT
    assert "activeDeadlineSeconds" in (attempt.error or "")


def _waiting(reason: str) -> dict[str, Any]:
    return {
        "phase": "Pending",
        "containerStatuses": [
            {"name": "runner", "state": {"waiting": {"reason": reason, "message": "detail"}}}
        ],
    }


def test_row_missing_secret_is_auth_failed_after_grace() -> None:
    settings = PodSettings(stuck_grace_seconds=60)
    young = classify_pod(_pod(_waiting("CreateContainerConfigError")), NOW, settings)
    assert young is not None
    assert young.state is AttemptState.RUNNING
    old = classify_pod(
        _pod(_waiting("CreateContainerConfigError")), NOW + timedelta(seconds=61), settings
    )
    assert old is not None
    assert old.failure_kind is FailureKind.AUTH_FAILED
    assert "Secret" in (old.error or "")


def test_row_a_named_missing_secret_fails_within_the_short_grace() -> None:
    settings = PodSettings(stuck_grace_seconds=120)
    pod = _pod(_waiting("CreateContainerConfigError"))
    pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"] = (
        'secret "not-there" not found'
    )
    young = classify_pod(pod, NOW + timedelta(seconds=5), settings)
    assert young is not None
    assert young.state is AttemptState.RUNNING
    soon = classify_pod(pod, NOW + timedelta(seconds=11), settings)
    assert soon is not None
    assert soon.failure_kind is FailureKind.AUTH_FAILED
    assert 'secret "not-there" not found' in (soon.error or "")


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff"])
def test_row_image_pull_is_unknown_after_grace(reason: str) -> None:
    settings = PodSettings(stuck_grace_seconds=60)
    young = classify_pod(_pod(_waiting(reason)), NOW + timedelta(seconds=30), settings)
    assert young is not None
    assert young.state is AttemptState.RUNNING
    old = classify_pod(_pod(_waiting(reason)), NOW + timedelta(seconds=60), settings)
    assert old is not None
    assert old.failure_kind is FailureKind.UNKNOWN
    assert "image" in (old.error or "")


def test_row_deleted_by_someone_else_is_transient() -> None:
    deleting = classify_pod(
        _pod({"phase": "Running"}, deletionTimestamp="2026-01-02T03:04:05Z"), NOW
    )
    assert deleting is not None
    assert deleting.failure_kind is FailureKind.TRANSIENT
    gone = missing_pod_attempt("abc", 1, NOW, NOW)
    assert gone.failure_kind is FailureKind.TRANSIENT
    assert gone.state is AttemptState.FAILED


def test_valid_message_wins_over_eviction() -> None:
    pod = _pod(
        {
            "phase": "Failed",
            "reason": "Evicted",
            "containerStatuses": [_terminated(0, _message(None))],
        }
    )
    attempt = classify_pod(pod, NOW)
    assert attempt is not None
    assert attempt.state is AttemptState.COPIED


def test_running_and_foreign_pods() -> None:
    running = classify_pod(
        _pod(
            {
                "phase": "Running",
                "containerStatuses": [{"name": "runner", "state": {"running": {}}}],
            }
        ),
        NOW,
    )
    assert running is not None
    assert running.state is AttemptState.RUNNING
    foreign = _pod({})
    foreign["metadata"]["labels"] = {"app": "other"}
    assert classify_pod(foreign, NOW) is None


def test_message_codec_is_the_runners() -> None:
    assert decode_result(_message(FailureKind.TRANSIENT)).failure_kind is FailureKind.TRANSIENT


def test_pod_manifest_validates_against_the_kubernetes_schema() -> None:
    """The manifest is a valid core/v1 Pod of current Kubernetes (strict: no unknown
    fields), checked with the published OpenAPI schema (kubernetes-validate)."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    spec = _spec(
        resources={"limits": {"memory": "1Gi"}}, tolerations=[{"key": "etl", "operator": "Exists"}]
    )
    pod = build_pod(
        run_name="nightly",
        run_uid="u-1",
        namespace="data",
        spec=spec,
        table=_table(spec),
        attempt=1,
    )
    kubernetes_validate.validate(pod, "1.30.0", strict=True)
