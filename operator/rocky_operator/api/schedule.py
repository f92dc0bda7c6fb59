"""The RockySchedule resource: a RockyRun template started on a cron schedule.

Shaped after the Kubernetes CronJob (``schedule``, ``timeZone``, ``concurrencyPolicy``,
``startingDeadlineSeconds``, history limits, ``suspend``) so that people who know CronJob need
to learn one new field: ``resumeFromLastFailures``. These models are the single source of truth
for ``crds/rockyschedules.rocky.dev.yaml``; attribute docstrings become schema descriptions.
"""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from rocky_operator.api.spec import API_GROUP, API_VERSION, RockyRunSpec

__all__ = [
    "ANNOTATION_SCHEDULED_AT",
    "API_GROUP",
    "API_VERSION",
    "CRON_MACROS",
    "KIND",
    "LABEL_SCHEDULE",
    "MAX_SCHEDULE_NAME_LENGTH",
    "PLURAL",
    "SHORT_NAME",
    "ConcurrencyPolicy",
    "RockyScheduleSpec",
    "RockyScheduleStatus",
    "RunTemplate",
    "RunTemplateMetadata",
    "ScheduleCondition",
    "validate_cron",
]

KIND = "RockySchedule"
PLURAL = "rockyschedules"
#: ``rs`` is taken by ReplicaSet; ``rsched`` clashes with nothing built in.
SHORT_NAME = "rsched"

#: Label on every RockyRun a schedule created: the schedule's name. Children are listed by it.
LABEL_SCHEDULE = "rocky.dev/schedule"
#: Annotation on every RockyRun a schedule created: the scheduled time (RFC 3339, UTC), which
#: may be earlier than the creation time when a missed run is started late.
ANNOTATION_SCHEDULED_AT = "rocky.dev/scheduled-at"
#: Run names are ``<schedule>-<unix minutes>`` and become label values (at most 63 characters):
#: 52 + "-" + 8 digits of unix minutes (enough until the year 2160) = 61.
MAX_SCHEDULE_NAME_LENGTH = 52

ConcurrencyPolicy = Literal["Allow", "Forbid", "Replace"]

#: The ``@`` macros CronJob accepts (``@reboot`` has no meaning for a controller).
CRON_MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)


def validate_cron(expression: str) -> str:
    """Check a standard five-field cron expression (or a macro) and return it stripped.

    croniter also accepts a sixth (seconds) field and Jenkins ``H`` hashes; CronJob does not,
    and a schedule that fires every second would flood the namespace with RockyRuns, so both
    are refused here.
    """
    from croniter import croniter

    text = expression.strip()
    if text.startswith(("TZ=", "CRON_TZ=")):
        raise ValueError("set the time zone in spec.timeZone, not with TZ= in the schedule")
    if text.startswith("@"):
        if text not in CRON_MACROS:
            raise ValueError(
                f"schedule {text!r}: unknown macro; use one of {', '.join(sorted(CRON_MACROS))}"
            )
        return text
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"schedule {text!r} has {len(fields)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week)"
        )
    if not croniter.is_valid(text):
        raise ValueError(f"schedule {text!r} is not a valid cron expression")
    return text


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


class RunTemplateMetadata(_Model):
    """Labels and annotations copied onto every RockyRun the schedule creates."""

    labels: dict[str, str] = Field(default_factory=dict)
    """Labels of each created RockyRun (``rocky.dev/schedule`` is always added)."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Annotations of each created RockyRun."""


class RunTemplate(_Model):
    """What each scheduled RockyRun looks like."""

    metadata: RunTemplateMetadata = Field(default_factory=RunTemplateMetadata)
    """Labels and annotations of the created RockyRuns (their names are chosen by the schedule)."""
    spec: RockyRunSpec
    """The RockyRun spec. With ``resumeFromLastFailures`` the schedule sets ``resumeFrom``."""


class RockyScheduleSpec(_Model):
    """A RockyRun started on a cron schedule, like a CronJob starts Jobs."""

    schedule: Annotated[str, Field(min_length=1, max_length=256)]
    """Cron expression, five fields (``minute hour day-of-month month day-of-week``) or a macro
    such as ``@daily``, read in ``timeZone``."""
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    """IANA time zone name the schedule is read in, e.g. ``Europe/Berlin``."""
    run_template: RunTemplate
    """The RockyRun to create at each scheduled time."""
    concurrency_policy: ConcurrencyPolicy = "Forbid"
    """What to do when a scheduled time comes while an earlier run is still going:
    ``Forbid`` skips it (the default: two replications writing the same targets at once do
    each other no good), ``Allow`` starts it anyway, ``Replace`` deletes the running one first."""
    starting_deadline_seconds: Annotated[int, Field(ge=0)] | None = None
    """How late a missed scheduled time may still start a run; unset: no deadline. Only the
    latest missed time ever runs."""
    successful_runs_history_limit: Annotated[int, Field(ge=0, le=1000)] = 3
    """How many succeeded RockyRuns to keep."""
    failed_runs_history_limit: Annotated[int, Field(ge=0, le=1000)] = 1
    """How many PartialFailure or Failed RockyRuns to keep."""
    suspend: bool = False
    """Start no new runs (running ones go on; history is still pruned)."""
    resume_from_last_failures: bool = False
    """When the latest finished run did not fully succeed, the next run sets ``resumeFrom`` to
    it: only the tables it did not copy run again. That run is then kept until a later run
    finishes, even beyond the history limits."""

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return validate_cron(value)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"timeZone {value!r} is not an IANA time zone name") from exc
        return value


class ScheduleCondition(_Model):
    """Shaped like metav1.Condition."""

    type: str
    """``Ready`` (the schedule is active) or ``LastRunSucceeded``."""
    status: Literal["True", "False", "Unknown"]
    reason: str
    """CamelCase reason."""
    message: str = ""
    last_transition_time: str
    """RFC 3339 time the status last changed."""
    observed_generation: int | None = None


class RockyScheduleStatus(_Model):
    """What the schedule has done so far."""

    last_schedule_time: str | None = None
    """The latest scheduled time that was acted on (run created, or skipped on purpose)."""
    last_successful_time: str | None = None
    """When the latest run that succeeded finished."""
    active: list[str] = Field(default_factory=list)
    """Names of this schedule's RockyRuns that have not finished."""
    last_run: str | None = None
    """Name of the latest RockyRun this schedule created."""
    next_schedule_time: str | None = None
    """When the next run is due (unset while suspended)."""
    conditions: list[ScheduleCondition] = Field(default_factory=list)
    observed_generation: int | None = None


#: Printer columns of ``kubectl get rsched``, after CronJob's.
PRINTER_COLUMNS: list[dict[str, object]] = [
    {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
    {"name": "TimeZone", "type": "string", "jsonPath": ".spec.timeZone"},
    {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend"},
    {
        "name": "Last Run",
        "type": "string",
        "jsonPath": ".status.lastRun",
        "description": "The newest RockyRun this schedule created",
    },
    {"name": "Last Schedule", "type": "date", "jsonPath": ".status.lastScheduleTime"},
    {"name": "Next", "type": "date", "jsonPath": ".status.nextScheduleTime", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_schedule_crd() -> dict[str, Any]:
    """The RockySchedule CustomResourceDefinition, through the RockyRun CRD's renderer."""
    from rocky_operator.api.crd import crd_document, object_schema

    schema = object_schema(
        KIND,
        RockyScheduleSpec,
        RockyScheduleStatus,
        name_limit=MAX_SCHEDULE_NAME_LENGTH,
        name_reason="run names add a suffix and become 63-character label values",
    )
    return crd_document(
        kind=KIND,
        plural=PLURAL,
        short_name=SHORT_NAME,
        printer_columns=PRINTER_COLUMNS,
        schema=schema,
    )


def render_schedule_crd_yaml() -> str:
    """The RockySchedule CRD as YAML, exactly as committed under ``crds/``."""
    from rocky_operator.api.crd import crd_yaml

    return crd_yaml(
        build_schedule_crd(),
        "# Generated from operator/rocky_operator/api/schedule.py (and spec.py) by\n"
        "# render_schedule_crd_yaml(); do not edit. tests/consumers/test_schedule_crd.py fails "
        "on drift.\n",
    )
