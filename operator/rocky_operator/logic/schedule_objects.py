"""RockySchedule objects: the status written after a decision, the RockyRun manifest a
decision creates, and what the schedule reads back from its child runs.

Pure, like :mod:`rocky_operator.logic.schedule` (the decisions themselves): dicts in, dicts out,
the clock passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rocky_operator.api.schedule import (
    ANNOTATION_SCHEDULED_AT,
    API_GROUP,
    API_VERSION,
    KIND,
    LABEL_SCHEDULE,
    RockyScheduleSpec,
)
from rocky_operator.api.spec import KIND as RUN_KIND
from rocky_operator.logic.schedule import (
    ChildRun,
    RunToCreate,
    ScheduleDecision,
    rfc3339,
)


def format_time(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``, as Kubernetes writes times."""
    return None if value is None else rfc3339(value)


def parse_time(value: str | None) -> datetime | None:
    """Parse a Kubernetes time (``2026-01-01T00:00:00Z``); None stays None."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _condition(
    previous: Sequence[Mapping[str, Any]],
    type_: str,
    status: str,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> dict[str, object]:
    """A metav1.Condition-shaped dict; lastTransitionTime only moves when status changes."""
    old = next((c for c in previous if c.get("type") == type_), None)
    transition = (
        old["lastTransitionTime"]
        if old is not None and old.get("status") == status and old.get("lastTransitionTime")
        else rfc3339(now)
    )
    cond: dict[str, object] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def build_schedule_status(
    decision: ScheduleDecision,
    *,
    suspended: bool,
    now: datetime,
    generation: int | None,
    previous_conditions: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The RockySchedule ``status`` (by alias) after ``decision`` is carried out."""
    if decision.problem:
        ready = ("False", "InvalidSchedule", decision.problem)
    elif suspended:
        ready = ("False", "Suspended", "spec.suspend is true: no new runs start")
    else:
        ready = (
            "True",
            "Scheduled",
            f"next run at {format_time(decision.next_schedule_time)}",
        )
    last = decision.last_finished
    if last is None:
        last_run = ("Unknown", "NoFinishedRun", "no run of this schedule has finished yet")
    elif last.phase == "Succeeded":
        last_run = ("True", "Succeeded", f"{last.name} succeeded")
    else:
        last_run = ("False", str(last.phase), f"{last.name} ended {last.phase}")
    conditions = [
        _condition(previous_conditions, "Ready", *ready, now, generation),
        _condition(previous_conditions, "LastRunSucceeded", *last_run, now, generation),
    ]
    return {
        "lastScheduleTime": format_time(decision.last_schedule_time),
        "lastSuccessfulTime": format_time(decision.last_successful_time),
        "active": list(decision.active),
        "lastRun": decision.last_run,
        "nextScheduleTime": format_time(decision.next_schedule_time),
        "conditions": conditions,
        "observedGeneration": generation,
    }


def build_run_manifest(
    spec: RockyScheduleSpec,
    *,
    schedule_name: str,
    schedule_uid: str,
    run: RunToCreate,
) -> dict[str, Any]:
    """The RockyRun the schedule creates: the template, its name, labels, owner, resumeFrom.

    The schedule is the run's controller owner, so deleting the schedule garbage-collects its
    runs (and their pods), as with CronJob and Job.
    """
    template = spec.run_template
    run_spec: dict[str, Any] = template.spec.model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    run_spec.pop("resumeFrom", None)
    run_spec.pop("resumeKinds", None)
    if run.resume_from:
        run_spec["resumeFrom"] = run.resume_from
        if template.spec.resume_kinds:
            run_spec["resumeKinds"] = list(template.spec.resume_kinds)
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": RUN_KIND,
        "metadata": {
            "name": run.name,
            "labels": {**template.metadata.labels, LABEL_SCHEDULE: schedule_name},
            "annotations": {
                **template.metadata.annotations,
                ANNOTATION_SCHEDULED_AT: rfc3339(run.scheduled_at),
            },
            "ownerReferences": [
                {
                    "apiVersion": f"{API_GROUP}/{API_VERSION}",
                    "kind": KIND,
                    "name": schedule_name,
                    "uid": schedule_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": run_spec,
    }


def observe_child(obj: Mapping[str, Any]) -> ChildRun:
    """A RockyRun object (as the API returns it) as the decision sees it."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    created = parse_time(meta.get("creationTimestamp")) or datetime.fromtimestamp(0, UTC)
    try:
        scheduled = parse_time((meta.get("annotations") or {}).get(ANNOTATION_SCHEDULED_AT))
    except ValueError:
        scheduled = None
    return ChildRun(
        name=str(meta.get("name")),
        created_at=created,
        phase=status.get("phase"),
        scheduled_at=scheduled,
        finished_at=parse_time(status.get("completionTime")),
        deleting=bool(meta.get("deletionTimestamp")),
    )


def is_owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    """The run's controller owner is the schedule with this uid (labels alone can be forged
    or copied; the owner reference cannot point at a schedule by accident)."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)
