"""A RockySchedule on the real control plane: it creates, keeps and prunes RockyRuns.

Every test runs the operator the way production does, ``rocky-operator run`` (the RockyRun and
RockySchedule handlers in one kopf process, its settings included; fixture ``start_operator``),
against the test kube-apiserver; the CRDs are applied with kubectl. Checked: deterministic run
names with an ownerReference, history limits (kept vs pruned), ``resumeFromLastFailures``,
status, the schedule's Events as the API server stores them, and garbage collection of the runs
when the schedule is deleted (kube-controller-manager). Real runs through a schedule:
test_schedule_runs.py.

History runs (finished earlier) are created with their final status before the operator starts,
so it never drives them and no pass sees half of the history.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.support import schedules as sk
from tests.support.control_plane import REPO, ControlPlane
from tests.support.e2e import OperatorProcess, kubectl_json, wait_for
from tests.support.schedules import StartOperator


@pytest.fixture
def schedule_controller(start_operator: StartOperator) -> OperatorProcess:
    return start_operator()


def test_schedule_creates_keeps_and_prunes_runs(
    control_plane: ControlPlane,
    namespace: str,
    custom: client.CustomObjectsApi,
    start_operator: StartOperator,
    tiny_warehouse: Path,
) -> None:
    ns = namespace
    # The schedule and its history, all before the operator starts.
    schedule = sk.create_schedule(
        custom,
        ns,
        "nightly",
        {
            "schedule": "* * * * *",
            "successfulRunsHistoryLimit": 1,
            "failedRunsHistoryLimit": 1,
            "resumeFromLastFailures": True,
            "runTemplate": {
                "metadata": {"labels": {"team": "data"}},
                "spec": sk.run_spec(tiny_warehouse),
            },
        },
    )
    uid = schedule["metadata"]["uid"]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    history = [("a", 30, "Succeeded"), ("b", 20, "Succeeded"), ("c", 10, "PartialFailure")]
    for _name, minutes_ago, phase in history:
        scheduled = now - timedelta(minutes=minutes_ago)
        name = f"nightly-{int(scheduled.timestamp()) // 60}"
        sk.create(
            custom,
            ns,
            "rockyruns",
            {
                "apiVersion": f"{sk.GROUP}/{sk.VERSION}",
                "kind": "RockyRun",
                "metadata": {
                    "name": name,
                    "labels": {"rocky.dev/schedule": "nightly"},
                    "annotations": {"rocky.dev/scheduled-at": sk.ts(scheduled)},
                    "ownerReferences": [
                        {
                            "apiVersion": f"{sk.GROUP}/{sk.VERSION}",
                            "kind": "RockySchedule",
                            "name": "nightly",
                            "uid": uid,
                            "controller": True,
                        }
                    ],
                },
                "spec": sk.run_spec(),
            },
        )
        sk.finish(custom, ns, name, phase)
    run_a, run_b, run_c = (
        f"nightly-{int((now - timedelta(minutes=m)).timestamp()) // 60}" for _, m, _ in history
    )
    b_done = sk.runs(custom, ns)[run_b]["status"]["completionTime"]
    # A run of someone else's with the label but no ownerReference: never touched.
    sk.create(
        custom,
        ns,
        "rockyruns",
        {
            "apiVersion": f"{sk.GROUP}/{sk.VERSION}",
            "kind": "RockyRun",
            "metadata": {"name": "hand-made", "labels": {"rocky.dev/schedule": "nightly"}},
            "spec": sk.run_spec(),
        },
    )
    sk.finish(custom, ns, "hand-made", "Succeeded")
    custom.patch_namespaced_custom_object_status(
        sk.GROUP,
        sk.VERSION,
        ns,
        "rockyschedules",
        "nightly",
        {"status": {"lastScheduleTime": sk.ts(now - timedelta(minutes=5))}},
        _content_type="application/merge-patch+json",
    )
    operator = start_operator()

    # Created: one run for the latest missed minute, resuming from the partially failed run.
    def created() -> dict[str, Any] | None:
        new = [
            r for n, r in sk.runs(custom, ns).items() if n not in (run_a, run_b, run_c, "hand-made")
        ]
        return new[0] if new else None

    run_d = wait_for(created, timeout=60, what="the scheduled run")
    sk.suspend(custom, ns, "nightly")  # no further minute's run while the test looks
    d_name = run_d["metadata"]["name"]
    scheduled_at = run_d["metadata"]["annotations"]["rocky.dev/scheduled-at"]
    assert d_name == f"nightly-{int(datetime.fromisoformat(scheduled_at).timestamp()) // 60}"
    assert run_d["spec"]["resumeFrom"] == run_c
    assert run_d["metadata"]["labels"] == {"team": "data", "rocky.dev/schedule": "nightly"}
    owner = run_d["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("RockySchedule", uid, True)

    # Pruned at once: the oldest succeeded run (a) is beyond successfulRunsHistoryLimit 1.
    wait_for(lambda: run_a not in sk.runs(custom, ns), timeout=30, what=f"{run_a} pruned")
    assert {run_b, run_c, d_name, "hand-made"} <= set(sk.runs(custom, ns))

    # The run controller drives d: c (written by this test) has no stored RunOutput, so
    # resuming from it is refused before any table (Failed, ResumeSourceNotFound).
    d_done = wait_for(lambda: sk.finished(custom, ns, d_name), timeout=120, what=f"{d_name} done")
    assert d_done["status"]["phase"] == "Failed"
    assert d_done["status"]["exitCode"] == 1
    # Now d is the newest failed run (kept: the next run would resume from it); c goes.
    wait_for(lambda: run_c not in sk.runs(custom, ns), timeout=30, what=f"{run_c} pruned")
    assert {run_b, d_name, "hand-made"} == set(sk.runs(custom, ns))
    last = wait_for(
        lambda: sk.last_run_condition(custom, ns, "nightly", d_name),
        timeout=30,
        what=f"LastRunSucceeded about {d_name}",
    )
    assert (last["status"], last["reason"]) == ("False", "Failed")
    status = sk.get_schedule(custom, ns, "nightly")["status"]
    assert status["lastRun"] == d_name
    assert status["active"] == []
    assert status["lastSuccessfulTime"] == b_done  # b is the latest run that succeeded

    # The schedule's Events, posted through kopf by the same process as the run controller's.
    def schedule_events() -> set[str] | None:
        reasons = {e["reason"] for e in sk.events(control_plane, ns, "nightly")}
        return reasons if {"RunCreated", "RunDeleted"} <= reasons else None

    wait_for(schedule_events, timeout=30, what="the schedule's RunCreated and RunDeleted Events")
    by_reason = {e["reason"]: e for e in sk.events(control_plane, ns, "nightly")}
    assert by_reason["RunCreated"]["message"].startswith(f"created {d_name} for ")
    assert f"resuming from {run_c}" in by_reason["RunCreated"]["message"]
    assert by_reason["RunCreated"]["involvedObject"]["kind"] == "RockySchedule"
    deleted = [e["message"] for e in sk.events(control_plane, ns, "nightly")]
    assert any(m.startswith(f"deleted {run_a}: ") for m in deleted)
    assert any(m.startswith(f"deleted {run_c}: ") for m in deleted)
    # ... and the run controller's own, on the run.
    wait_for(
        lambda: any(
            e["reason"] == "ResumeSourceNotFound" for e in sk.events(control_plane, ns, d_name)
        ),
        timeout=30,  # posted right after the final status
        what=f"the run controller's ResumeSourceNotFound Event on {d_name}",
    )
    # kopf posts no Events of its own log lines (settings.posting.level).
    items = kubectl_json(control_plane, "-n", ns, "get", "events")["items"]
    assert [e["message"] for e in items if e["reason"] == "Logging"] == []

    # Deleting the schedule garbage-collects its runs (ownerReference), not the hand-made one.
    custom.delete_namespaced_custom_object(sk.GROUP, sk.VERSION, ns, "rockyschedules", "nightly")
    wait_for(
        lambda: set(sk.runs(custom, ns)) == {"hand-made"},
        timeout=60,
        what="runs garbage-collected with their schedule",
    )
    assert "Traceback" not in operator.log.read_text(errors="replace")


def test_invalid_schedule_is_rejected_by_the_api_server(
    control_plane: ControlPlane,
    namespace: str,
    custom: client.CustomObjectsApi,
    schedule_controller: OperatorProcess,
) -> None:
    def create(name: str, **spec: Any) -> str:
        body = {
            "apiVersion": f"{sk.GROUP}/{sk.VERSION}",
            "kind": "RockySchedule",
            "metadata": {"name": name},
            "spec": {"schedule": "@daily", "runTemplate": {"spec": sk.run_spec()}, **spec},
        }
        with pytest.raises(client.ApiException) as err:
            sk.create(custom, namespace, "rockyschedules", body)
        assert err.value.status == 422
        return str(err.value.body)

    assert "concurrencyPolicy" in create("bad-policy", concurrencyPolicy="Sometimes")
    assert "successfulRunsHistoryLimit" in create("bad-limit", successfulRunsHistoryLimit=-1)
    # (API server CEL rules run only once the schema checks pass.)
    assert "at most 52 characters" in create("x" * 53)

    # A cron expression is only a string to the API server: the controller refuses it.
    sk.create_schedule(
        custom,
        namespace,
        "bad-cron",
        {"schedule": "61 * * * *", "runTemplate": {"spec": sk.run_spec()}},
    )

    def refused() -> dict[str, Any] | None:
        status: dict[str, Any] = sk.get_schedule(custom, namespace, "bad-cron").get("status") or {}
        ready = {c["type"]: c for c in status.get("conditions") or []}.get("Ready")
        return ready if ready and ready["reason"] == "InvalidSpec" else None

    ready = wait_for(refused, timeout=30, what="Ready False InvalidSpec")
    assert ready["status"] == "False"
    assert "not a valid cron expression" in ready["message"]
    runs: dict[str, Any] = custom.list_namespaced_custom_object(  # type: ignore[assignment]
        sk.GROUP, sk.VERSION, namespace, "rockyruns"
    )
    assert runs["items"] == []


def test_gitops_examples_pass_server_side_validation(
    control_plane: ControlPlane, namespace: str, schedule_controller: OperatorProcess
) -> None:
    """The example manifests as the API server sees them (CRD schema and CEL rules)."""
    from tests.support.e2e import kubectl

    examples = REPO / "examples"
    out = kubectl(
        control_plane,
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-k",
        str(examples / "gitops" / "flux" / "replication"),
    ).stdout
    assert "rockyrun.rocky.dev/backfill-globex-2026-11-29-1 created (server dry run)" in out
    assert "rockyschedule.rocky.dev/nightly created (server dry run)" in out
    # generateName works with create (and Argo CD hooks), not with apply.
    out = kubectl(
        control_plane,
        "create",
        "--dry-run=server",
        "-n",
        namespace,
        "-o",
        "name",
        "-f",
        str(examples / "gitops" / "argocd" / "rockyrun-presync-hook.yaml"),
    ).stdout
    assert out.startswith("rockyrun.rocky.dev/sync-replication-")
    refused = kubectl(
        control_plane,
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        str(examples / "gitops" / "argocd" / "rockyrun-presync-hook.yaml"),
        check=False,
    )
    assert refused.returncode != 0
    assert "cannot use generate name with apply" in refused.stderr
    kubectl(
        control_plane,
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        str(examples / "dagster" / "rockyrun.yaml"),
    )
