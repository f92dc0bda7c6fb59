"""RockySchedule decisions as a table of named scenarios (like CronJob's controller tests).

Each scenario gives the schedule spec, the clock, the last schedule time and the child runs,
and checks which run is created (name, resumeFrom), which are deleted, which events are emitted,
and the resulting last schedule time, active list and next wake-up. Plus: run names, time zones
across DST, the missed-times counter's bound, and the status conditions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from rocky_operator.api.schedule import MAX_SCHEDULE_NAME_LENGTH, RockyScheduleSpec
from rocky_operator.logic.schedule import (
    ChildRun,
    decide_schedule,
    due_times,
    next_time,
    run_name,
)
from rocky_operator.logic.schedule_objects import build_schedule_status

NAME = "nightly"


def t(text: str) -> datetime:
    """A UTC time from ``YYYY-MM-DDTHH:MM[:SS]``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def child(
    name: str, at: str, phase: str | None, *, finished: str | None = None, deleting: bool = False
) -> ChildRun:
    return ChildRun(
        name=name,
        created_at=t(at),
        scheduled_at=t(at),
        phase=phase,
        finished_at=t(finished) if finished else None,
        deleting=deleting,
    )


@dataclass(frozen=True)
class Scenario:
    name: str
    now: str
    spec: dict[str, Any] = field(default_factory=dict)
    created_at: str = "2026-01-01T00:30"
    last_schedule: str | None = None
    children: tuple[ChildRun, ...] = ()
    # expectations
    create: str | None = None
    resume_from: str | None = None
    delete: frozenset[str] = frozenset()
    events: tuple[str, ...] = ()
    last_schedule_after: str | None = None
    active: tuple[str, ...] = ()
    next_time: str | None = None


SCENARIOS = [
    Scenario(
        "first run at the first scheduled time after creation",
        now="2026-01-01T01:00:10",
        create="nightly-29453820",
        events=("RunCreated",),
        last_schedule_after="2026-01-01T01:00",
        active=("nightly-29453820",),
        next_time="2026-01-01T02:00",
    ),
    Scenario(
        "nothing due yet",
        now="2026-01-01T00:59",
        next_time="2026-01-01T01:00",
    ),
    Scenario(
        "nothing due since the last schedule time",
        now="2026-01-01T10:30",
        last_schedule="2026-01-01T10:00",
        children=(child("nightly-29454360", "2026-01-01T10:00", "Running"),),
        active=("nightly-29454360",),
        last_schedule_after="2026-01-01T10:00",
        next_time="2026-01-01T11:00",
    ),
    Scenario(
        "run already created by a pass whose status write was lost: no twin",
        now="2026-01-01T10:00:30",
        last_schedule="2026-01-01T09:00",
        children=(child("nightly-29454360", "2026-01-01T10:00", None),),
        active=("nightly-29454360",),
        last_schedule_after="2026-01-01T10:00",
        next_time="2026-01-01T11:00",
    ),
    Scenario(
        "missed several times without a deadline: only the latest runs",
        now="2026-01-01T10:20",
        last_schedule="2026-01-01T06:00",
        create="nightly-29454360",
        events=("RunCreated",),
        last_schedule_after="2026-01-01T10:00",
        active=("nightly-29454360",),
        next_time="2026-01-01T11:00",
    ),
    Scenario(
        "missed time within startingDeadlineSeconds still starts, late",
        now="2026-01-01T10:04",
        spec={"startingDeadlineSeconds": 300},
        last_schedule="2026-01-01T09:00",
        create="nightly-29454360",
        events=("RunCreated",),
        last_schedule_after="2026-01-01T10:00",
        active=("nightly-29454360",),
        next_time="2026-01-01T11:00",
    ),
    Scenario(
        "missed time past startingDeadlineSeconds is skipped, once, with a warning",
        now="2026-01-01T10:06",
        spec={"startingDeadlineSeconds": 300},
        last_schedule="2026-01-01T09:00",
        events=("MissedSchedule",),
        last_schedule_after="2026-01-01T10:00",
        next_time="2026-01-01T11:00",
    ),
    Scenario(
        "more than 100 missed times without a deadline: skipped with a warning",
        now="2026-01-09T10:30",
        last_schedule="2026-01-01T00:00",
        events=("TooManyMissedTimes",),
        last_schedule_after="2026-01-09T10:00",
        next_time="2026-01-09T11:00",
    ),
    Scenario(
        "more than 100 missed times but a deadline bounds the window: the latest runs",
        now="2026-01-09T10:30",
        spec={"schedule": "* * * * *", "startingDeadlineSeconds": 7200},
        last_schedule="2026-01-01T00:00",
        create=f"nightly-{int(t('2026-01-09T10:30').timestamp()) // 60}",
        events=("RunCreated",),
        last_schedule_after="2026-01-09T10:30",
        active=(f"nightly-{int(t('2026-01-09T10:30').timestamp()) // 60}",),
        next_time="2026-01-09T10:31",
    ),
    Scenario(
        "Forbid: a run is still going, the due time is skipped for good",
        now="2026-01-01T10:00:05",
        spec={"concurrencyPolicy": "Forbid"},
        last_schedule="2026-01-01T09:00",
        children=(child("nightly-29454300", "2026-01-01T09:00", "Running"),),
        events=("SkippedConcurrent",),
        last_schedule_after="2026-01-01T10:00",
        active=("nightly-29454300",),
        next_time="2026-01-01T11:00",
    ),
    Scenario(
        "Allow: starts alongside the running one",
        now="2026-01-01T10:00:05",
        spec={"concurrencyPolicy": "Allow"},
        last_schedule="2026-01-01T09:00",
        children=(child("nightly-29454300", "2026-01-01T09:00", "Running"),),
        create="nightly-29454360",
        events=("RunCreated",),
        last_schedule_after="2026-01-01T10:00",
        active=("nightly-29454300", "nightly-29454360"),
        next_time="2026-01-01T11:00",
    ),
    Scenario(
        "Replace: deletes the running one and starts the new one",
        now="2026-01-01T10:00:05",
        spec={"concurrencyPolicy": "Replace"},
        last_schedule="2026-01-01T09:00",
        children=(child("nightly-29454300", "2026-01-01T09:00", "Pending"),),
        create="nightly-29454360",
        delete=frozenset({"nightly-29454300"}),
        events=("RunCreated",),
        last_schedule_after="2026-01-01T10:00",
        active=("nightly-29454360",),
        next_time="2026-01-01T11:00",
    ),
    Scenario(
        "suspended: nothing starts, no next time, history still pruned",
        now="2026-01-01T10:00:05",
        spec={"suspend": True, "failedRunsHistoryLimit": 0},
        last_schedule="2026-01-01T09:00",
        children=(child("nightly-29454300", "2026-01-01T09:00", "Failed"),),
        delete=frozenset({"nightly-29454300"}),
        last_schedule_after="2026-01-01T09:00",
    ),
    Scenario(
        "history limits: keep the newest 3 successful and 1 failed",
        now="2026-01-01T10:30",
        last_schedule="2026-01-01T10:00",
        children=(
            child("nightly-29454120", "2026-01-01T06:00", "Succeeded"),
            child("nightly-29454180", "2026-01-01T07:00", "Failed"),
            child("nightly-29454240", "2026-01-01T08:00", "Succeeded"),
            child("nightly-29454270", "2026-01-01T08:30", "Succeeded"),
            child("nightly-29454300", "2026-01-01T09:00", "PartialFailure"),
            child("nightly-29454330", "2026-01-01T09:30", "Succeeded"),
            child("nightly-29454360", "2026-01-01T10:00", "Running"),
        ),
        delete=frozenset({"nightly-29454120", "nightly-29454180"}),
        active=("nightly-29454360",),
        last_schedule_after="2026-01-01T10:00",
        next_time="2026-01-01T11:00",
    ),
    Scenario(
        "runs already being deleted are neither counted nor deleted again",
        now="2026-01-01T10:30",
        spec={"successfulRunsHistoryLimit": 1},
        last_schedule="2026-01-01T10:00",
        children=(
            child("nightly-29454240", "2026-01-01T08:00", "Succeeded", deleting=True),
            child("nightly-29454300", "2026-01-01T09:00", "Succeeded"),
            child("nightly-29454360", "2026-01-01T10:00", "Succeeded"),
        ),
        delete=frozenset({"nightly-29454300"}),
        last_schedule_after="2026-01-01T10:00",
        next_time="2026-01-01T11:00",
    ),
    Scenario(
        "resumeFromLastFailures: the next run resumes from a partially failed last run",
        now="2026-01-01T10:00:05",
        spec={"resumeFromLastFailures": True},
        last_schedule="2026-01-01T09:00",
        children=(
            child("nightly-29454240", "2026-01-01T08:00", "Succeeded"),
            child("nightly-29454300", "2026-01-01T09:00", "PartialFailure"),
        ),
        create="nightly-29454360",
        resume_from="nightly-29454300",
        events=("RunCreated",),
        last_schedule_after="2026-01-01T10:00",
        active=("nightly-29454360",),
        next_time="2026-01-01T11:00",
    ),
    Scenario(
        "resumeFromLastFailures: a succeeded last run means a fresh run",
        now="2026-01-01T10:00:05",
        spec={"resumeFromLastFailures": True},
        last_schedule="2026-01-01T09:00",
        children=(
            child("nightly-29454240", "2026-01-01T08:00", "Failed"),
            child("nightly-29454300", "2026-01-01T09:00", "Succeeded"),
        ),
        create="nightly-29454360",
        events=("RunCreated",),
        last_schedule_after="2026-01-01T10:00",
        active=("nightly-29454360",),
        next_time="2026-01-01T11:00",
    ),
    Scenario(
        "resumeFromLastFailures keeps the run to resume from beyond failedRunsHistoryLimit 0",
        now="2026-01-01T10:00:05",
        spec={"resumeFromLastFailures": True, "failedRunsHistoryLimit": 0},
        last_schedule="2026-01-01T09:00",
        children=(
            child("nightly-29454240", "2026-01-01T08:00", "Failed"),
            child("nightly-29454300", "2026-01-01T09:00", "Failed"),
        ),
        create="nightly-29454360",
        resume_from="nightly-29454300",
        delete=frozenset({"nightly-29454240"}),
        events=("RunCreated",),
        last_schedule_after="2026-01-01T10:00",
        active=("nightly-29454360",),
        next_time="2026-01-01T11:00",
    ),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(sc: Scenario, make_schedule_spec: Callable[..., RockyScheduleSpec]) -> None:
    spec = make_schedule_spec(**sc.spec)
    d = decide_schedule(
        spec,
        name=NAME,
        now=t(sc.now),
        created_at=t(sc.created_at),
        last_schedule_time=t(sc.last_schedule) if sc.last_schedule else None,
        last_successful_time=None,
        children=sc.children,
    )
    assert (d.create.name if d.create else None) == sc.create
    assert (d.create.resume_from if d.create else None) == sc.resume_from
    assert {name for name, _ in d.delete} == set(sc.delete)
    assert tuple(e.reason for e in d.events) == sc.events
    assert d.last_schedule_time == (t(sc.last_schedule_after) if sc.last_schedule_after else None)
    assert d.active == sc.active
    assert d.next_schedule_time == (t(sc.next_time) if sc.next_time else None)
    if d.create:
        assert d.create.scheduled_at == d.last_schedule_time


def test_decision_is_idempotent_once_carried_out(
    make_schedule_spec: Callable[..., RockyScheduleSpec],
) -> None:
    """Feeding back the created run and the new last schedule time creates nothing more."""
    spec = make_schedule_spec(concurrencyPolicy="Allow")
    now = t("2026-01-01T10:00:05")
    first = decide_schedule(
        spec,
        name=NAME,
        now=now,
        created_at=t("2026-01-01T00:00"),
        last_schedule_time=t("2026-01-01T09:00"),
        last_successful_time=None,
        children=(),
    )
    assert first.create is not None
    created = ChildRun(first.create.name, now, None, scheduled_at=first.create.scheduled_at)
    for last in (first.last_schedule_time, t("2026-01-01T09:00")):  # status written or lost
        again = decide_schedule(
            spec,
            name=NAME,
            now=now + timedelta(seconds=20),
            created_at=t("2026-01-01T00:00"),
            last_schedule_time=last,
            last_successful_time=None,
            children=(created,),
        )
        assert again.create is None
        assert again.events == ()
        assert again.active == (first.create.name,)


def test_missed_schedule_warning_is_emitted_once(
    make_schedule_spec: Callable[..., RockyScheduleSpec],
) -> None:
    spec = make_schedule_spec(startingDeadlineSeconds=60)
    kwargs: dict[str, Any] = {
        "name": NAME,
        "created_at": t("2026-01-01T00:00"),
        "last_successful_time": None,
        "children": (),
    }
    first = decide_schedule(
        spec, now=t("2026-01-01T10:05"), last_schedule_time=t("2026-01-01T09:00"), **kwargs
    )
    assert [e.reason for e in first.events] == ["MissedSchedule"]
    second = decide_schedule(
        spec, now=t("2026-01-01T10:05:30"), last_schedule_time=first.last_schedule_time, **kwargs
    )
    assert second.events == ()
    assert second.create is None


def test_last_successful_time_never_goes_back(
    make_schedule_spec: Callable[..., RockyScheduleSpec],
) -> None:
    spec = make_schedule_spec()
    d = decide_schedule(
        spec,
        name=NAME,
        now=t("2026-01-01T10:30"),
        created_at=t("2026-01-01T00:00"),
        last_schedule_time=t("2026-01-01T10:00"),
        last_successful_time=t("2026-01-01T09:40"),
        children=(
            child("nightly-29454300", "2026-01-01T09:00", "Succeeded", finished="2026-01-01T09:20"),
        ),
    )
    assert d.last_successful_time == t("2026-01-01T09:40")
    d2 = decide_schedule(
        spec,
        name=NAME,
        now=t("2026-01-01T10:30"),
        created_at=t("2026-01-01T00:00"),
        last_schedule_time=t("2026-01-01T10:00"),
        last_successful_time=t("2026-01-01T08:00"),
        children=(
            child("nightly-29454300", "2026-01-01T09:00", "Succeeded", finished="2026-01-01T09:20"),
        ),
    )
    assert d2.last_successful_time == t("2026-01-01T09:20")


def test_run_name_is_deterministic_and_label_safe() -> None:
    assert run_name("nightly", t("2026-01-01T10:00")) == "nightly-29454360"
    assert run_name("nightly", t("2026-01-01T10:00:59")) == "nightly-29454360"
    longest = "a" * MAX_SCHEDULE_NAME_LENGTH
    assert len(run_name(longest, t("2026-01-01T10:00"))) <= 63
    too_long = "b" * 80
    assert len(run_name(too_long, t("2026-01-01T10:00"))) <= 63
    assert run_name(too_long, t("2026-01-01T10:00")) != run_name("b" * 81, t("2026-01-01T10:00"))


def test_too_long_schedule_name_is_a_problem_not_a_run(
    make_schedule_spec: Callable[..., RockyScheduleSpec],
) -> None:
    d = decide_schedule(
        make_schedule_spec(),
        name="x" * (MAX_SCHEDULE_NAME_LENGTH + 1),
        now=t("2026-01-01T10:00:05"),
        created_at=t("2026-01-01T00:00"),
        last_schedule_time=None,
        last_successful_time=None,
        children=(),
    )
    assert d.create is None
    assert d.problem is not None
    assert "63" in d.problem
    status = build_schedule_status(d, suspended=False, now=t("2026-01-01T10:00:05"), generation=1)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSchedule")


@pytest.mark.parametrize(
    ("zone", "after", "expected_utc"),
    [
        # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC after the spring change.
        ("Europe/Berlin", "2026-03-27T12:00", "2026-03-28T08:00"),
        ("Europe/Berlin", "2026-03-28T12:00", "2026-03-29T07:00"),
        ("America/New_York", "2026-01-05T15:00", "2026-01-06T14:00"),
        ("UTC", "2026-01-05T15:00", "2026-01-06T09:00"),
    ],
)
def test_time_zone_is_applied_across_dst(
    zone: str, after: str, expected_utc: str, make_schedule_spec: Callable[..., RockyScheduleSpec]
) -> None:
    spec = make_schedule_spec(schedule="0 9 * * *", timeZone=zone)
    assert next_time(spec, t(after)) == t(expected_utc)


def test_macro_schedules(make_schedule_spec: Callable[..., RockyScheduleSpec]) -> None:
    assert next_time(make_schedule_spec(schedule="@daily"), t("2026-01-05T15:00")) == t(
        "2026-01-06T00:00"
    )
    assert next_time(make_schedule_spec(schedule="@hourly"), t("2026-01-05T15:00")) == t(
        "2026-01-05T16:00"
    )


def test_counting_missed_times_is_bounded(
    make_schedule_spec: Callable[..., RockyScheduleSpec],
) -> None:
    """A year of an every-minute schedule: counted up to the bound, latest still exact."""
    spec = make_schedule_spec(schedule="* * * * *")
    count, latest = due_times(spec, t("2025-01-01T00:00"), t("2026-01-01T10:30:30"), limit=101)
    assert count == 101
    assert latest == t("2026-01-01T10:30")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"schedule": "61 * * * *"}, "not a valid cron expression"),
        ({"schedule": "* * * * * *"}, "has 6 fields"),
        ({"schedule": "@reboot"}, "unknown macro"),
        ({"schedule": "TZ=UTC 0 * * * *"}, "spec.timeZone"),
        ({"timeZone": "Mars/Olympus"}, "not an IANA time zone"),
        ({"concurrencyPolicy": "Sometimes"}, "Allow"),
        ({"successfulRunsHistoryLimit": -1}, "greater than or equal to 0"),
    ],
)
def test_invalid_specs_are_refused_with_a_clear_message(
    fields: dict[str, Any], message: str, make_schedule_spec: Callable[..., RockyScheduleSpec]
) -> None:
    with pytest.raises(ValidationError, match=message):
        make_schedule_spec(**fields)


def test_status_conditions_keep_their_transition_time(
    make_schedule_spec: Callable[..., RockyScheduleSpec],
) -> None:
    spec = make_schedule_spec()
    children = (child("nightly-29454300", "2026-01-01T09:00", "PartialFailure"),)
    kwargs: dict[str, Any] = {
        "name": NAME,
        "created_at": t("2026-01-01T00:00"),
        "last_successful_time": None,
        "last_schedule_time": t("2026-01-01T09:00"),
        "children": children,
    }
    d1 = decide_schedule(spec, now=t("2026-01-01T09:30"), **kwargs)
    s1 = build_schedule_status(d1, suspended=False, now=t("2026-01-01T09:30"), generation=2)
    conds = {c["type"]: c for c in s1["conditions"]}
    assert conds["Ready"]["status"] == "True"
    assert conds["Ready"]["message"] == "next run at 2026-01-01T10:00:00Z"
    assert (conds["LastRunSucceeded"]["status"], conds["LastRunSucceeded"]["reason"]) == (
        "False",
        "PartialFailure",
    )
    d2 = decide_schedule(spec, now=t("2026-01-01T09:45"), **kwargs)
    s2 = build_schedule_status(
        d2,
        suspended=False,
        now=t("2026-01-01T09:45"),
        generation=2,
        previous_conditions=s1["conditions"],
    )
    assert s2["conditions"] == s1["conditions"]  # nothing changed, not even the times
    s3 = build_schedule_status(
        d2,
        suspended=True,
        now=t("2026-01-01T09:50"),
        generation=3,
        previous_conditions=s1["conditions"],
    )
    ready = next(c for c in s3["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == (
        "False",
        "Suspended",
        "2026-01-01T09:50:00Z",
    )
