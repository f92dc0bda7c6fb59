"""RockySchedule helpers of the e2e tests: CustomObjects calls, status as the RockyRun controller
writes it, the schedule's conditions and Events. Kept free of pytest."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from tests.support.control_plane import ControlPlane
from tests.support.e2e import OperatorProcess, kubectl_json

GROUP, VERSION = "rocky.dev", "v1alpha1"

#: The e2e fixture ``start_operator``: starts `rocky-operator run` for the test namespace.
StartOperator = Callable[[], OperatorProcess]


def get_schedule(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, ns, "rockyschedules", name
    )
    return obj


def create(custom: client.CustomObjectsApi, ns: str, plural: str, body: Any) -> dict[str, Any]:
    obj: dict[str, Any] = custom.create_namespaced_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, ns, plural, body
    )
    return obj


def create_schedule(
    custom: client.CustomObjectsApi, ns: str, name: str, spec: dict[str, Any]
) -> dict[str, Any]:
    """Create the RockySchedule ``name`` with this spec; the created object."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RockySchedule",
        "metadata": {"name": name},
        "spec": spec,
    }
    return create(custom, ns, "rockyschedules", body)


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def run_spec(warehouse: Path | str = "/data/warehouse.duckdb") -> dict[str, Any]:
    return {
        "adapter": {"type": "duckdb", "duckdb": {"path": str(warehouse)}},
        "source": {"schemaPattern": {"components": ["tenant", "region", "source"]}},
        "target": {"catalogTemplate": "warehouse", "schemaTemplate": "{tenant}__{source}"},
    }


def finish(custom: client.CustomObjectsApi, ns: str, name: str, phase: str) -> None:
    """Write a finished status, as the RockyRun controller would."""
    now = ts(datetime.now(UTC))
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
                "observedGeneration": 1,
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


def runs(custom: client.CustomObjectsApi, ns: str) -> dict[str, dict[str, Any]]:
    listed: dict[str, Any] = custom.list_namespaced_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, ns, "rockyruns"
    )
    items = listed["items"]
    return {r["metadata"]["name"]: r for r in items if not r["metadata"].get("deletionTimestamp")}


def finished(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any] | None:
    run = runs(custom, ns).get(name)
    phase = ((run or {}).get("status") or {}).get("phase")
    return run if phase in ("Succeeded", "PartialFailure", "Failed") else None


def last_run_condition(
    custom: client.CustomObjectsApi, ns: str, schedule: str, run: str
) -> dict[str, Any] | None:
    """The schedule's LastRunSucceeded condition once it is about ``run`` (its message names
    the run): a pass that has not seen ``run`` finish still shows an earlier run's."""
    status = get_schedule(custom, ns, schedule).get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    last = conditions.get("LastRunSucceeded")
    return last if last and str(last.get("message", "")).startswith(f"{run} ") else None


def events(cp: ControlPlane, ns: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json(cp, "-n", ns, "get", "events")["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]


def suspend(custom: client.CustomObjectsApi, ns: str, name: str) -> None:
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        "rockyschedules",
        name,
        {"spec": {"suspend": True}},
        _content_type="application/merge-patch+json",
    )
