"""A RockySchedule on the real control plane: it creates, keeps and prunes RockyRuns.

The schedule controller (``rocky_operator.schedule_handlers``) runs as a kopf process against
the test kube-apiserver; the CRDs are applied with kubectl. The RockyRuns' progress is written
into their status subresource by the test, the way the RockyRun controller would, so this test
checks the schedule's side alone: deterministic run names with an ownerReference, history
limits (kept vs pruned), ``resumeFromLastFailures``, status and Events, and garbage collection
of the runs when the schedule is deleted (kube-controller-manager).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.support.control_plane import REPO, ControlPlane
from tests.support.e2e import (
    BackgroundProcess,
    OperatorProcess,
    apply_crds,
    kubectl_json,
    start_process,
    wait_for,
)

GROUP, VERSION = "rocky.dev", "v1alpha1"


def _schedule(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, ns, "rockyschedules", name
    )
    return obj


def _create(custom: client.CustomObjectsApi, ns: str, plural: str, body: Any) -> dict[str, Any]:
    obj: dict[str, Any] = custom.create_namespaced_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, ns, plural, body
    )
    return obj


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def schedule_controller(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[BackgroundProcess]:
    apply_crds(control_plane, "rockyruns.rocky.dev", "rockyschedules.rocky.dev")
    proc = start_process(
        control_plane,
        [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--standalone",
            "--namespace",
            namespace,
            "-m",
            "rocky_operator.schedule_handlers",
        ],
        log=tmp_path / "schedule-controller.log",
        env={"ROCKY_SCHEDULE_POLL_SECONDS": "1"},
    )
    try:
        yield proc
    finally:
        proc.terminate()


def _run_spec() -> dict[str, Any]:
    return {
        "adapter": {"type": "duckdb", "duckdb": {"path": "/data/warehouse.duckdb"}},
        "source": {"schemaPattern": {"components": ["tenant", "region", "source"]}},
        "target": {"catalogTemplate": "warehouse", "schemaTemplate": "{tenant}__{source}"},
    }


def _finish(custom: client.CustomObjectsApi, ns: str, name: str, phase: str) -> None:
    """Write a finished status, as the RockyRun controller would."""
    now = _ts(datetime.now(UTC))
    reason = {"Succeeded": "Succeeded", "PartialFailure": "PartialFailure"}[phase]
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        ns,
        "rockyruns",
        name,
        {
            "status": {
                "phase": phase,
                "exitCode": 0 if phase == "Succeeded" else 2,
                "completionTime": now,
                "conditions": [
                    {
                        "type": "Complete",
                        "status": "True",
                        "reason": reason,
                        "message": phase,
                        "lastTransitionTime": now,
                    }
                ],
            }
        },
        _content_type="application/merge-patch+json",
    )


def _runs(custom: client.CustomObjectsApi, ns: str) -> dict[str, dict[str, Any]]:
    listed: dict[str, Any] = custom.list_namespaced_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, ns, "rockyruns"
    )
    items = listed["items"]
    return {r["metadata"]["name"]: r for r in items if not r["metadata"].get("deletionTimestamp")}


def test_schedule_creates_keeps_and_prunes_runs(
    control_plane: ControlPlane,
    namespace: str,
    custom: client.CustomObjectsApi,
    schedule_controller: BackgroundProcess,
) -> None:
    ns = namespace
    # Suspended first, so the history below is in place before the first pass that schedules.
    schedule = _create(
        custom,
        ns,
        "rockyschedules",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RockySchedule",
            "metadata": {"name": "nightly"},
            "spec": {
                "schedule": "* * * * *",
                "suspend": True,
                "successfulRunsHistoryLimit": 1,
                "failedRunsHistoryLimit": 1,
                "resumeFromLastFailures": True,
                "runTemplate": {"metadata": {"labels": {"team": "data"}}, "spec": _run_spec()},
            },
        },
    )
    uid = schedule["metadata"]["uid"]
    wait_for(
        lambda: (_schedule(custom, ns, "nightly").get("status") or {}).get("conditions"),
        what="the schedule's first status (suspended)",
        timeout=60,
    )

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    history = [("a", 30, "Succeeded"), ("b", 20, "Succeeded"), ("c", 10, "PartialFailure")]
    for _name, minutes_ago, phase in history:
        scheduled = now - timedelta(minutes=minutes_ago)
        name = f"nightly-{int(scheduled.timestamp()) // 60}"
        _create(
            custom,
            ns,
            "rockyruns",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "RockyRun",
                "metadata": {
                    "name": name,
                    "labels": {"rocky.dev/schedule": "nightly"},
                    "annotations": {"rocky.dev/scheduled-at": _ts(scheduled)},
                    "ownerReferences": [
                        {
                            "apiVersion": f"{GROUP}/{VERSION}",
                            "kind": "RockySchedule",
                            "name": "nightly",
                            "uid": uid,
                            "controller": True,
                        }
                    ],
                },
                "spec": _run_spec(),
            },
        )
        _finish(custom, ns, name, phase)
    run_a, run_b, run_c = (
        f"nightly-{int((now - timedelta(minutes=m)).timestamp()) // 60}" for _, m, _ in history
    )
    # A run of someone else's with the label but no ownerReference: never touched.
    _create(
        custom,
        ns,
        "rockyruns",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RockyRun",
            "metadata": {"name": "hand-made", "labels": {"rocky.dev/schedule": "nightly"}},
            "spec": _run_spec(),
        },
    )
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        ns,
        "rockyschedules",
        "nightly",
        {"status": {"lastScheduleTime": _ts(now - timedelta(minutes=5))}},
        _content_type="application/merge-patch+json",
    )
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        "rockyschedules",
        "nightly",
        {"spec": {"suspend": False}},
        _content_type="application/merge-patch+json",
    )

    # Created: one run for the latest missed minute, resuming from the partially failed run.
    def created() -> dict[str, Any] | None:
        new = [
            r for n, r in _runs(custom, ns).items() if n not in (run_a, run_b, run_c, "hand-made")
        ]
        return new[0] if new else None

    run_d = wait_for(created, timeout=60, what="the scheduled run")
    d_name = run_d["metadata"]["name"]
    scheduled_at = run_d["metadata"]["annotations"]["rocky.dev/scheduled-at"]
    assert d_name == f"nightly-{int(datetime.fromisoformat(scheduled_at).timestamp()) // 60}"
    assert run_d["spec"]["resumeFrom"] == run_c
    assert run_d["metadata"]["labels"] == {"team": "data", "rocky.dev/schedule": "nightly"}
    owner = run_d["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("RockySchedule", uid, True)

    # Kept and pruned: one succeeded (b) and one failed (c) kept, the oldest succeeded (a) gone.
    wait_for(lambda: run_a not in _runs(custom, ns), timeout=30, what=f"{run_a} pruned")
    names = set(_runs(custom, ns))
    assert {run_b, run_c, d_name, "hand-made"} <= names

    status = wait_for(
        lambda: (
            (s := _schedule(custom, ns, "nightly").get("status") or {}).get("active") == [d_name]
            and s
        ),
        timeout=30,
        what="status.active",
    )
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["LastRunSucceeded"]["reason"] == "PartialFailure"
    assert status["lastRun"] == d_name

    # The new run succeeds: now b is the one beyond the limit; c stays (failed limit 1).
    _finish(custom, ns, d_name, "Succeeded")
    wait_for(lambda: run_b not in _runs(custom, ns), timeout=30, what=f"{run_b} pruned")

    def last_run_succeeded() -> dict[str, Any] | None:
        status: dict[str, Any] = _schedule(custom, ns, "nightly").get("status") or {}
        conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
        return status if conds.get("LastRunSucceeded") == "True" else None

    status = wait_for(last_run_succeeded, timeout=30, what="LastRunSucceeded True")
    d_done = _runs(custom, ns)[d_name]["status"]["completionTime"]
    assert status["lastSuccessfulTime"] == d_done  # the new run's completion, later than b's
    assert {run_c, d_name} <= set(_runs(custom, ns))

    events = kubectl_json(control_plane, "-n", ns, "get", "events")["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == "nightly"}
    assert {"RunCreated", "RunDeleted"} <= reasons

    # Deleting the schedule garbage-collects its runs (ownerReference), not the hand-made one.
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "rockyschedules", "nightly")
    wait_for(
        lambda: set(_runs(custom, ns)) == {"hand-made"},
        timeout=60,
        what="runs garbage-collected with their schedule",
    )
    assert "Traceback" not in schedule_controller.output()


def test_invalid_schedule_is_rejected_by_the_api_server(
    control_plane: ControlPlane,
    namespace: str,
    custom: client.CustomObjectsApi,
    schedule_controller: BackgroundProcess,
) -> None:
    def create(name: str, **spec: Any) -> str:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RockySchedule",
            "metadata": {"name": name},
            "spec": {"schedule": "@daily", "runTemplate": {"spec": _run_spec()}, **spec},
        }
        with pytest.raises(client.ApiException) as err:
            _create(custom, namespace, "rockyschedules", body)
        assert err.value.status == 422
        return str(err.value.body)

    assert "concurrencyPolicy" in create("bad-policy", concurrencyPolicy="Sometimes")
    assert "successfulRunsHistoryLimit" in create("bad-limit", successfulRunsHistoryLimit=-1)
    # (API server CEL rules run only once the schema checks pass.)
    assert "at most 52 characters" in create("x" * 53)

    # A cron expression is only a string to the API server: the controller refuses it.
    _create(
        custom,
        namespace,
        "rockyschedules",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RockySchedule",
            "metadata": {"name": "bad-cron"},
            "spec": {"schedule": "61 * * * *", "runTemplate": {"spec": _run_spec()}},
        },
    )

    def refused() -> dict[str, Any] | None:
        status: dict[str, Any] = _schedule(custom, namespace, "bad-cron").get("status") or {}
        ready = {c["type"]: c for c in status.get("conditions") or []}.get("Ready")
        return ready if ready and ready["reason"] == "InvalidSpec" else None

    ready = wait_for(refused, timeout=30, what="Ready False InvalidSpec")
    assert ready["status"] == "False"
    assert "not a valid cron expression" in ready["message"]
    runs: dict[str, Any] = custom.list_namespaced_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, namespace, "rockyruns"
    )
    assert runs["items"] == []


def test_gitops_examples_pass_server_side_validation(
    control_plane: ControlPlane, namespace: str, schedule_controller: BackgroundProcess
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


@pytest.mark.slow
def test_schedule_runs_real_runs_through_the_operator(
    control_plane: ControlPlane, namespace: str, custom: client.CustomObjectsApi, tmp_path: Path
) -> None:
    """Schedule -> RockyRuns executed by `rocky-operator run` (runner pods under the node agent)
    -> the next run resumes from the partially failed one -> the older failed run is pruned."""

    import yaml

    from rocky_operator.demo.warehouse import build_warehouse

    apply_crds(control_plane, "rockyruns.rocky.dev", "rockyschedules.rocky.dev")
    warehouse = build_warehouse(tmp_path / "warehouse")
    operator = OperatorProcess(
        control_plane,
        namespace,
        tmp_path / "operator.log",
        env={"ROCKY_SCHEDULE_POLL_SECONDS": "1"},
    )
    operator.start()
    try:
        demo = yaml.safe_load((REPO / "examples" / "demo" / "rockyrun.yaml").read_text())
        run_spec = demo["spec"]
        run_spec["adapter"]["duckdb"]["path"] = str(warehouse.warehouse)
        run_spec["runner"].pop("volumes", None)
        run_spec["runner"].pop("volumeMounts", None)
        run_spec["filter"] = "tenant=acme,region=us_west,source=shopify"
        run_spec["source"]["tables"] = ["products", "refunds"]  # refunds: query-rejected
        _create(
            custom,
            namespace,
            "rockyschedules",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "RockySchedule",
                "metadata": {"name": "minutely"},
                "spec": {
                    "schedule": "* * * * *",
                    "suspend": True,
                    "successfulRunsHistoryLimit": 1,
                    "failedRunsHistoryLimit": 1,
                    "resumeFromLastFailures": True,
                    "runTemplate": {"spec": run_spec},
                },
            },
        )
        wait_for(
            lambda: (_schedule(custom, namespace, "minutely").get("status") or {}).get(
                "conditions"
            ),
            timeout=60,
            what="the schedule's first status",
        )
        # Pretend the last scheduled time was 5 minutes ago: the latest missed minute runs now.
        custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            "rockyschedules",
            "minutely",
            {"status": {"lastScheduleTime": _ts(datetime.now(UTC) - timedelta(minutes=5))}},
            _content_type="application/merge-patch+json",
        )
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "rockyschedules",
            "minutely",
            {"spec": {"suspend": False}},
            _content_type="application/merge-patch+json",
        )

        def finished(name: str) -> dict[str, Any] | None:
            run = _runs(custom, namespace).get(name)
            phase = ((run or {}).get("status") or {}).get("phase")
            return run if phase in ("Succeeded", "PartialFailure", "Failed") else None

        first_name = wait_for(
            lambda: next(iter(_runs(custom, namespace)), None),
            timeout=60,
            what="the first scheduled run",
        )
        first = wait_for(lambda: finished(first_name), timeout=120, what=f"{first_name} done")
        assert first["status"]["phase"] == "PartialFailure"
        assert first["status"]["failures"] == {"query-rejected": 1}

        # The next minute: a second run, resuming from the first's failures only.
        second_name = wait_for(
            lambda: next((n for n in _runs(custom, namespace) if n != first_name), None),
            timeout=90,
            what="the second scheduled run",
        )
        assert int(second_name.rsplit("-", 1)[1]) > int(first_name.rsplit("-", 1)[1])
        second = wait_for(lambda: finished(second_name), timeout=120, what=f"{second_name} done")
        assert second["spec"]["resumeFrom"] == first_name
        assert second["status"]["tables"]["copied"] == 0  # products was copied by the first
        assert second["status"]["failures"] == {"query-rejected": 1}

        # Kept: the newest failed run; pruned: the older one (failedRunsHistoryLimit 1).
        wait_for(
            lambda: first_name not in _runs(custom, namespace),
            timeout=30,
            what=f"{first_name} pruned",
        )
        assert second_name in _runs(custom, namespace)
        status = _schedule(custom, namespace, "minutely")["status"]
        last = {c["type"]: c for c in status["conditions"]}["LastRunSucceeded"]
        assert (last["status"], last["reason"]) == ("False", "Failed")
        print(
            f"\nschedule: created {first_name} (PartialFailure) and {second_name} "
            f"(resumeFrom {first_name}, Failed); kept {second_name}, pruned {first_name}"
        )
    finally:
        operator.stop()
