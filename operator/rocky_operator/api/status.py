"""The RockyRun status: what the operator reports back.

Like the spec, these models are rendered into the CRD, so the API server prunes
anything the operator writes that is not declared here. ``runOutput`` is the one
free-form part (Rocky's own contract, validated by its JSON schema, not by ours).

The status is bounded: a run of thousands of tables keeps its complete RunOutput in
ConfigMaps owned by the run (see ``output``), and ``runOutput`` here holds at most
:data:`MAX_STATUS_ERRORS` errors and :data:`MAX_STATUS_MATERIALIZATIONS`
materializations with error texts cut to :data:`MAX_STATUS_ERROR_CHARS` characters.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

#: Phases, one word for the printer column.
Phase = Literal["Pending", "Running", "Succeeded", "PartialFailure", "Failed"]
PHASES: tuple[str, ...] = ("Pending", "Running", "Succeeded", "PartialFailure", "Failed")
#: Terminal phases: once reached, the run never changes again.
FINISHED_PHASES: frozenset[str] = frozenset({"Succeeded", "PartialFailure", "Failed"})

#: Condition types the operator maintains.
CONDITION_ACCEPTED = "Accepted"
CONDITION_PROGRESSING = "Progressing"
CONDITION_COMPLETE = "Complete"
CONDITION_FAILED = "Failed"

#: Bounds of ``status.runOutput`` (the complete output lives in ConfigMaps).
MAX_STATUS_ERRORS = 100
MAX_STATUS_MATERIALIZATIONS = 100
MAX_STATUS_ERROR_CHARS = 512


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=True,
    )


class Condition(_Model):
    """Shaped like metav1.Condition: the machine-readable contract of the status."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    """Condition type: Accepted, Progressing, Complete or Failed."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: Annotated[
        str,
        Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"),
    ]
    """CamelCase reason, for machines."""
    message: Annotated[str, Field(max_length=32768)] = ""
    """Human-readable details."""
    last_transition_time: str
    """When ``status`` last changed (RFC 3339)."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The ``metadata.generation`` this condition was set for."""


class TableCounts(_Model):
    """Where the run's tables stand."""

    planned: Annotated[int, Field(ge=0)] = 0
    """Tables this run copies (after filter and resume)."""
    pending: Annotated[int, Field(ge=0)] = 0
    """Tables not started yet."""
    running: Annotated[int, Field(ge=0)] = 0
    """Tables with a runner pod in flight."""
    waiting_retry: Annotated[int, Field(ge=0)] = 0
    """Tables waiting for their next attempt (backoff)."""
    copied: Annotated[int, Field(ge=0)] = 0
    """Tables copied."""
    failed: Annotated[int, Field(ge=0)] = 0
    """Tables that failed for good (see ``failures`` by kind)."""
    not_attempted: Annotated[int, Field(ge=0)] = 0
    """Tables never started (fail-fast, or the run ended early)."""
    resumed: Annotated[int, Field(ge=0)] = 0
    """Tables skipped because the run named in ``spec.resumeFrom`` took care of them."""
    excluded: Annotated[int, Field(ge=0)] = 0
    """Requested tables not copied because the source lacks them (a name in
    ``source.tables``) or they are views; listed in ``runOutput.excluded_tables``."""
    attempts: Annotated[int, Field(ge=0)] = 0
    """Runner pods started so far (first attempts and retries)."""


class OutputRef(_Model):
    """Where the complete RunOutput is kept: ConfigMaps owned by this run."""

    config_maps: list[str] = Field(default_factory=list)
    """ConfigMaps holding the output, in order; concatenate their ``binaryData`` parts."""
    encoding: Literal["gzip"] = "gzip"
    """The concatenated parts are one gzip stream of the RunOutput JSON."""
    bytes: Annotated[int, Field(ge=0)] = 0
    """Size of the uncompressed JSON."""
    sha256: str = ""
    """SHA-256 of the uncompressed JSON."""


class RockyRunStatus(_Model):
    """Status of a RockyRun; written only by the operator."""

    phase: Phase | None = None
    """Pending, Running, Succeeded, PartialFailure or Failed."""
    exit_code: Annotated[int, Field(ge=0, le=2)] | None = None
    """What ``rocky run`` would exit with: 0 all copied, 2 partial, 1 nothing copied."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The ``metadata.generation`` of the spec this status describes."""
    start_time: str | None = None
    """When the operator accepted the run (RFC 3339)."""
    completion_time: str | None = None
    """When the run finished (RFC 3339)."""
    message: str | None = None
    """One line on where the run stands, for humans."""
    conditions: list[Condition] = Field(default_factory=list)
    """Accepted, Progressing, Complete, Failed."""
    tables: TableCounts = Field(default_factory=TableCounts)
    """Table counts."""
    failures: dict[str, int] = Field(default_factory=dict)
    """Tables that failed for good, by failure_kind."""
    retries: dict[str, int] = Field(default_factory=dict)
    """Retries started, by the failure_kind of the attempt that was retried."""
    run_output: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Rocky's RunOutput (``rocky run --output json``), bounded: see ``runOutputTruncated``."""
    run_output_truncated: bool = False
    """True when ``runOutput`` lists fewer errors / materializations than the run had, or
    shortened error texts; ``rocky-operator output NAME`` prints the complete output."""
    output: OutputRef | None = None
    """Where the complete RunOutput is kept."""
