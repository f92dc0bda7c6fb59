"""kopf handlers of RockySchedule: one daemon per schedule.

Each pass reads the schedule and its runs, asks
:func:`rocky_operator.logic.schedule.decide_schedule` what to do, carries it out (delete,
create, Events) and writes status once, only if it changed.
Then it sleeps until the next scheduled time, but at most :data:`POLL_SECONDS`, so that runs
finishing (history limits, ``Forbid``) and spec edits (``suspend``) are seen soon.

``rocky-operator run`` loads this module next to ``rocky_operator.handlers``; the operator's
ServiceAccount needs ``get/list/watch/patch`` on ``rockyschedules``, ``patch`` on
``rockyschedules/status``, ``update`` on ``rockyschedules/finalizers`` (owner references with
``blockOwnerDeletion``) and ``create/delete/list`` on ``rockyruns``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from rocky_operator.api import schedule as api
from rocky_operator.client.result import RockyClientError
from rocky_operator.client.schedules import ScheduleApi, ScheduleNotFoundError
from rocky_operator.kube.runtime import Runtime
from rocky_operator.logic.schedule import EventType, ScheduleEvent, decide_schedule
from rocky_operator.logic.schedule_objects import (
    build_run_manifest,
    build_schedule_status,
    is_owned_by,
    observe_child,
    parse_time,
)

#: Longest sleep between two passes of one schedule (seconds): how soon a finished run is
#: pruned or a spec edit takes effect. ``ROCKY_SCHEDULE_POLL_SECONDS`` overrides it.
POLL_SECONDS = float(os.environ.get("ROCKY_SCHEDULE_POLL_SECONDS", "15"))
#: Shortest sleep, so a clock a little behind the API server cannot make a busy loop.
MIN_SLEEP_SECONDS = 0.5


@dataclass(frozen=True)
class PassResult:
    events: tuple[ScheduleEvent, ...]
    sleep_seconds: float | None
    """None: the schedule is gone, stop."""


async def reconcile_schedule(
    client: ScheduleApi, namespace: str, name: str, now: datetime
) -> PassResult:
    """One pass over one schedule, in the operator's event loop."""
    try:
        obj = await client.get_schedule(namespace, name)
    except ScheduleNotFoundError:
        return PassResult((), None)
    meta = obj["metadata"]
    status: dict[str, Any] = obj.get("status") or {}
    generation = meta.get("generation")
    try:
        spec = api.RockyScheduleSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        new_status = {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "InvalidSpec",
                    "message": str(exc).replace("\n", " ")[:1000],
                    "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "observedGeneration": generation,
                }
            ],
            "observedGeneration": generation,
        }
        old_ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
        if not old_ready or old_ready[0].get("reason") != "InvalidSpec":
            await client.patch_schedule_status(namespace, name, new_status)
            event = ScheduleEvent(EventType.WARNING, "InvalidSpec", new_status_message(exc))
            return PassResult((event,), POLL_SECONDS)
        return PassResult((), POLL_SECONDS)

    uid = str(meta["uid"])
    children = [
        observe_child(run)
        for run in await client.list_runs(namespace, name)
        if is_owned_by(run, uid)
    ]
    decision = decide_schedule(
        spec,
        name=name,
        now=now,
        created_at=parse_time(meta.get("creationTimestamp")) or now,
        last_schedule_time=parse_time(status.get("lastScheduleTime")),
        last_successful_time=parse_time(status.get("lastSuccessfulTime")),
        children=children,
    )
    for run_name, _why in decision.delete:
        await client.delete_run(namespace, run_name)
    if decision.create is not None:
        await client.create_run(
            namespace,
            build_run_manifest(spec, schedule_name=name, schedule_uid=uid, run=decision.create),
        )
    new_status = build_schedule_status(
        decision,
        suspended=spec.suspend,
        now=now,
        generation=generation,
        previous_conditions=status.get("conditions") or [],
    )
    if any(status.get(k) != v for k, v in new_status.items()):
        await client.patch_schedule_status(namespace, name, new_status)
    events = decision.events + tuple(
        ScheduleEvent(EventType.NORMAL, "RunDeleted", f"deleted {run_name}: {why}")
        for run_name, why in decision.delete
    )
    sleep = POLL_SECONDS
    if decision.next_schedule_time is not None:
        until_next = (decision.next_schedule_time - now).total_seconds()
        sleep = min(sleep, until_next)
    return PassResult(events, max(MIN_SLEEP_SECONDS, sleep))


def new_status_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"spec.{where}: {err['msg']}" if where else err["msg"])
    return "; ".join(parts)[:1000]


@kopf.daemon(api.API_GROUP, api.API_VERSION, api.PLURAL, cancellation_timeout=10.0)
async def schedule_daemon(
    name: str | None,
    namespace: str | None,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    **_: Any,
) -> None:
    """Keep one RockySchedule's runs on schedule until the schedule is deleted."""
    if name is None or namespace is None:  # RockySchedule is namespaced: cannot happen
        raise kopf.PermanentError("a RockySchedule without name or namespace")
    runtime: Runtime = memo.runtime
    client = ScheduleApi(runtime.client)  # the operator's one API client
    while not stopped:
        try:
            result = await reconcile_schedule(client, namespace, name, datetime.now(UTC))
        except RockyClientError as exc:
            # An API error (converted once, in client.schedules): try again next pass.
            # Anything else is a bug: kopf logs it and restarts the daemon after a backoff.
            logger.warning("schedule pass failed: %s", exc)
            await stopped.wait(POLL_SECONDS)
            continue
        for event in result.events:
            kopf.event(body, type=event.type.value, reason=event.reason, message=event.message)
            logger.info("%s: %s", event.reason, event.message)
        if result.sleep_seconds is None:
            return
        await stopped.wait(result.sleep_seconds)
