"""RockySchedule decisions: given the schedule, the clock and the runs it made, what next.

Pure, like the rest of ``logic``: the handler reads the schedule and its child RockyRuns, passes
``now`` in, and carries out the returned :class:`ScheduleDecision` (create one run, delete some,
emit events, write status). Nothing here reads a clock or talks to the API, so every CronJob-like
corner (missed times, deadlines, concurrency, history) is a table-driven unit test.

Differences from the CronJob controller, on purpose:

* Run names are ``<schedule>-<unix minutes of the scheduled time>``, so the same scheduled time
  can never create two runs, even if the operator dies between creating a run and recording it.
* ``Forbid`` skips a scheduled time that comes while a run is active *for good* (one event), where
  CronJob keeps retrying it until the deadline passes. A replication that starts hours late,
  right after the previous one, is rarely what anyone wanted; the next scheduled time runs.
* More than :data:`MAX_MISSED` missed times (operator down for long, or a clock jump): nothing is
  started for them; the schedule moves on to its next time and says so in a Warning event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from croniter import croniter

from rocky_operator.api.schedule import (
    MAX_SCHEDULE_NAME_LENGTH,
    RockyScheduleSpec,
)

#: Phases after which a RockyRun never changes again.
FINISHED_PHASES = frozenset({"Succeeded", "PartialFailure", "Failed"})
FAILED_PHASES = frozenset({"PartialFailure", "Failed"})

#: More missed scheduled times than this are skipped (CronJob's bound).
MAX_MISSED = 100


_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class ScheduleEvent:
    """An Event to record on the RockySchedule (emitted once: each is tied to a transition)."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class ChildRun:
    """A RockyRun this schedule created, as observed."""

    name: str
    created_at: datetime
    phase: str | None = None
    """``status.phase``; None before the operator has looked at it."""
    scheduled_at: datetime | None = None
    """From the ``rocky.dev/scheduled-at`` annotation; falls back to ``created_at``."""
    finished_at: datetime | None = None
    """``status.completionTime``."""
    deleting: bool = False
    """``metadata.deletionTimestamp`` is set: it is on its way out."""

    @property
    def is_finished(self) -> bool:
        return self.phase in FINISHED_PHASES

    @property
    def sort_time(self) -> datetime:
        return self.scheduled_at or self.created_at


@dataclass(frozen=True)
class RunToCreate:
    """The one RockyRun to create now."""

    name: str
    scheduled_at: datetime
    resume_from: str | None = None
    """Set ``spec.resumeFrom`` to this run (``resumeFromLastFailures``)."""


@dataclass(frozen=True)
class ScheduleDecision:
    create: RunToCreate | None
    delete: tuple[tuple[str, str], ...]
    """(run name, why) to delete: history limits, or ``Replace``."""
    events: tuple[ScheduleEvent, ...]
    last_schedule_time: datetime | None
    last_successful_time: datetime | None
    active: tuple[str, ...]
    """Unfinished runs after this decision is carried out (oldest first)."""
    last_run: str | None
    """The newest run after this decision is carried out."""
    last_finished: ChildRun | None
    """The newest finished run (drives the LastRunSucceeded condition)."""
    next_schedule_time: datetime | None
    """The next scheduled time after ``now``; None while suspended or invalid."""
    problem: str | None = None
    """Why nothing can be scheduled at all (e.g. the schedule's name is too long)."""
    missed: int = field(default=0)
    """Scheduled times due since the last one acted on (for tests and logs)."""


def run_name(schedule_name: str, scheduled_at: datetime) -> str:
    """``<schedule>-<unix minutes>``: deterministic, so creating it twice is a 409, not a twin.

    Names longer than :data:`MAX_SCHEDULE_NAME_LENGTH` are refused by :func:`decide_schedule`;
    here they are shortened with a hash so the function is total.
    """
    minutes = int(scheduled_at.timestamp()) // 60
    base = schedule_name
    if len(base) > MAX_SCHEDULE_NAME_LENGTH:
        digest = hashlib.sha256(base.encode()).hexdigest()[:6]
        base = f"{base[: MAX_SCHEDULE_NAME_LENGTH - 7].rstrip('-')}-{digest}"
    return f"{base}-{minutes}"


def _expression(spec: RockyScheduleSpec) -> str:
    return _MACROS.get(spec.schedule, spec.schedule)


def _times_after(spec: RockyScheduleSpec, start: datetime) -> croniter:
    zone = ZoneInfo(spec.time_zone)
    return croniter(_expression(spec), start.astimezone(zone))


def next_time(spec: RockyScheduleSpec, after: datetime) -> datetime:
    """The first scheduled time strictly after ``after`` (UTC)."""
    result: datetime = _times_after(spec, after).get_next(datetime)
    return result.astimezone(UTC)


def latest_time(spec: RockyScheduleSpec, now: datetime) -> datetime:
    """The latest scheduled time at or before ``now`` (UTC)."""
    # get_prev is strictly before its start; cron times are whole minutes, so a start one
    # second later makes "at or before now" exact.
    result: datetime = _times_after(spec, now + timedelta(seconds=1)).get_prev(datetime)
    return result.astimezone(UTC)


def due_times(
    spec: RockyScheduleSpec, earliest: datetime, now: datetime, *, limit: int = MAX_MISSED + 1
) -> tuple[int, datetime | None]:
    """Count scheduled times in ``(earliest, now]`` (up to ``limit``) and return the latest.

    Counting stops at ``limit``; the latest is then found from ``now`` directly, so an
    every-minute schedule after a year of downtime costs ``limit`` steps, not half a million.
    """
    it = _times_after(spec, earliest)
    count = 0
    latest: datetime | None = None
    while count < limit:
        t: datetime = it.get_next(datetime).astimezone(UTC)
        if t > now:
            return count, latest
        count += 1
        latest = t
    return count, latest_time(spec, now)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("schedule decisions need aware datetimes")
    return value.astimezone(UTC)


def decide_schedule(
    spec: RockyScheduleSpec,
    *,
    name: str,
    now: datetime,
    created_at: datetime,
    last_schedule_time: datetime | None,
    last_successful_time: datetime | None,
    children: Sequence[ChildRun],
) -> ScheduleDecision:
    """Decide what one reconcile pass of a RockySchedule does.

    ``children`` are the RockyRuns labelled with this schedule's name. At most one run is
    created per pass: only the latest due scheduled time ever runs, as with CronJob.
    """
    now = _utc(now)
    created_at = _utc(created_at)
    live = [c for c in children if not c.deleting]
    by_name = {c.name: c for c in children}
    active = sorted((c for c in live if not c.is_finished), key=lambda c: c.sort_time)
    finished = sorted((c for c in live if c.is_finished), key=lambda c: c.sort_time, reverse=True)
    last_finished = finished[0] if finished else None

    succeeded_times = [
        _utc(c.finished_at or c.created_at) for c in finished if c.phase == "Succeeded"
    ]
    if last_successful_time is not None:
        succeeded_times.append(_utc(last_successful_time))
    new_last_successful = max(succeeded_times, default=None)

    events: list[ScheduleEvent] = []
    delete: dict[str, str] = {}
    create: RunToCreate | None = None
    new_last_schedule = _utc(last_schedule_time) if last_schedule_time else None
    missed = 0
    problem: str | None = None

    if len(name) > MAX_SCHEDULE_NAME_LENGTH:
        problem = (
            f"the schedule's name has {len(name)} characters; at most "
            f"{MAX_SCHEDULE_NAME_LENGTH} leave room for the run suffix within the 63 "
            "characters of a label value"
        )
    elif not spec.suspend:
        since = new_last_schedule or created_at
        earliest = since
        if spec.starting_deadline_seconds is not None:
            earliest = max(since, now - timedelta(seconds=spec.starting_deadline_seconds))
        missed, due = due_times(spec, earliest, now)
        if due is None and earliest > since:
            # Every due time is older than startingDeadlineSeconds: record them as missed,
            # once (they become the last schedule time, so the next pass is quiet).
            too_late, latest_missed = due_times(spec, since, now)
            if latest_missed is not None:
                events.append(
                    ScheduleEvent(
                        EventType.WARNING,
                        "MissedSchedule",
                        f"{too_late if too_late <= MAX_MISSED else f'more than {MAX_MISSED}'} "
                        f"scheduled time(s) up to {rfc3339(latest_missed)} passed more than "
                        f"startingDeadlineSeconds ({spec.starting_deadline_seconds}) ago; "
                        "not started",
                    )
                )
                new_last_schedule = latest_missed
                missed = too_late
        elif due is not None and missed > MAX_MISSED and spec.starting_deadline_seconds is None:
            events.append(
                ScheduleEvent(
                    EventType.WARNING,
                    "TooManyMissedTimes",
                    f"more than {MAX_MISSED} scheduled times missed since "
                    f"{rfc3339(earliest)}; none of them runs, the next is "
                    f"{rfc3339(next_time(spec, now))}. Set startingDeadlineSeconds to run "
                    "the latest missed time instead.",
                )
            )
            new_last_schedule = due
        elif due is not None:
            new_last_schedule = due
            wanted = run_name(name, due)
            if wanted in by_name:
                pass  # created by an earlier pass whose status write was lost
            elif active and spec.concurrency_policy == "Forbid":
                events.append(
                    ScheduleEvent(
                        EventType.NORMAL,
                        "SkippedConcurrent",
                        f"skipped the run due at {rfc3339(due)}: "
                        f"{', '.join(c.name for c in active)} still running "
                        "(concurrencyPolicy Forbid)",
                    )
                )
            else:
                if spec.concurrency_policy == "Replace":
                    for c in active:
                        delete[c.name] = f"replaced by {wanted} (concurrencyPolicy Replace)"
                resume_from = None
                if (
                    spec.resume_from_last_failures
                    and last_finished is not None
                    and last_finished.phase in FAILED_PHASES
                ):
                    resume_from = last_finished.name
                create = RunToCreate(wanted, due, resume_from)
                late = now - due
                message = f"created {wanted} for {rfc3339(due)}"
                if late >= timedelta(minutes=1):
                    message += f" ({int(late.total_seconds())} s late)"
                if resume_from:
                    message += f", resuming from {resume_from}"
                events.append(ScheduleEvent(EventType.NORMAL, "RunCreated", message))

    # History: newest first; the newest finished run stays while resumeFromLastFailures may
    # still point the next run at it.
    protected = (
        {last_finished.name}
        if spec.resume_from_last_failures
        and last_finished is not None
        and last_finished.phase in FAILED_PHASES
        else set()
    )
    succeeded = [c for c in finished if c.phase == "Succeeded"]
    failed = [c for c in finished if c.phase in FAILED_PHASES]
    for runs, limit, what in (
        (succeeded, spec.successful_runs_history_limit, "successful"),
        (failed, spec.failed_runs_history_limit, "failed"),
    ):
        for c in runs[limit:]:
            if c.name not in protected:
                delete.setdefault(c.name, f"{what} runs history limit is {limit}")

    remaining_active = [c.name for c in active if c.name not in delete]
    if create is not None:
        remaining_active.append(create.name)
    newest = sorted(live, key=lambda c: c.sort_time)
    last_run = create.name if create else (newest[-1].name if newest else None)

    next_schedule = None if spec.suspend or problem else next_time(spec, now)
    return ScheduleDecision(
        create=create,
        delete=tuple(delete.items()),
        events=tuple(events),
        last_schedule_time=new_last_schedule,
        last_successful_time=new_last_successful,
        active=tuple(remaining_active),
        last_run=last_run,
        last_finished=last_finished,
        next_schedule_time=next_schedule,
        problem=problem,
        missed=missed,
    )


def rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as Kubernetes writes times."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
