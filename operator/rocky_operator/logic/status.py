"""The RockyRun status, built from a decision (pure).

The conditions are the contract (shaped like metav1.Condition); ``phase`` is the
one-word summary for the printer column. A condition keeps its
``lastTransitionTime`` while its ``status`` does not change, so rebuilding the status
from the same observation yields the same document and the operator can skip the
write.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from rocky_operator.api.status import (
    CONDITION_ACCEPTED,
    CONDITION_COMPLETE,
    CONDITION_FAILED,
    CONDITION_PROGRESSING,
    MAX_STATUS_ERROR_CHARS,
    MAX_STATUS_ERRORS,
    MAX_STATUS_MATERIALIZATIONS,
    Condition,
    OutputRef,
    RockyRunStatus,
    TableCounts,
)
from rocky_operator.logic.decide import Attempt, Decision, TableState
from rocky_operator.logic.resume_chain import CARRIED_KEYS
from rocky_operator.logic.run_output import exit_code, run_status
from rocky_runner.contract import FailureKind

PHASE_BY_RUN_STATUS = {
    "success": "Succeeded",
    "partial_failure": "PartialFailure",
    "failure": "Failed",
}


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, as the API server writes times."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: Sequence[Condition],
    *,
    type: str,
    status: bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Conditions with one of them set; ``lastTransitionTime`` moves only on a change."""
    value = "True" if status else "False"
    previous = next((c for c in conditions if c.type == type), None)
    since = (
        previous.last_transition_time
        if previous is not None and previous.status == value
        else timestamp(now)
    )
    new = Condition(
        type=type,
        status=value,
        reason=reason,
        message=message[:32768],
        last_transition_time=since,
        observed_generation=generation,
    )
    return [*(c for c in conditions if c.type != type), new]


def set_conditions(
    conditions: Sequence[Condition],
    updates: Mapping[str, tuple[bool, str]],
    *,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Several conditions set with one message: ``{type: (status, reason)}``, in order."""
    result = list(conditions)
    for type_, (status, reason) in updates.items():
        result = set_condition(
            result,
            type=type_,
            status=status,
            reason=reason,
            message=message,
            now=now,
            generation=generation,
        )
    return result


def count_retries(attempts: Iterable[Attempt]) -> dict[str, int]:
    """Retries by the failure_kind of the attempt that was retried."""
    by_table: dict[str, dict[int, Attempt]] = {}
    for a in attempts:
        by_table.setdefault(a.table, {})[a.number] = a
    counts: Counter[str] = Counter()
    for numbers in by_table.values():
        for number in numbers:
            before = numbers.get(number - 1)
            if number > 1:
                kind = (before.failure_kind if before else None) or FailureKind.UNKNOWN
                counts[kind.value] += 1
    return dict(sorted(counts.items()))


#: Condition reason of a run whose plan has no table (Accepted, Complete and Failed).
REASON_NO_TABLES = "NoTablesMatched"


def _tallies(decision: Decision) -> tuple[Counter[TableState], dict[str, int]]:
    """Tables by state and final failures by kind: from the outcomes' own tally when they
    keep one (an incremental decision: O(changes), not O(tables)), else by reading all."""
    tally = getattr(decision.outcomes, "tally", None)
    if callable(tally):
        found = tally()
        if found is not None:
            states, kinds = found
            return states, dict(sorted(kinds.items()))
    outcomes = list(decision.outcomes.values())
    kinds = Counter(
        (o.failure_kind or FailureKind.UNKNOWN).value
        for o in outcomes
        if o.state is TableState.FAILED
    )
    return Counter(o.state for o in outcomes), dict(sorted(kinds.items()))


def table_counts(decision: Decision, resumed: int, attempts: int, excluded: int = 0) -> TableCounts:
    states, _kinds = _tallies(decision)
    return _counts(states, len(decision.outcomes), resumed, attempts, excluded)


def _counts(
    states: Mapping[TableState, int], planned: int, resumed: int, attempts: int, excluded: int
) -> TableCounts:
    return TableCounts(
        planned=planned,
        pending=states.get(TableState.PENDING, 0),
        running=states.get(TableState.RUNNING, 0),
        waiting_retry=states.get(TableState.WAITING_RETRY, 0),
        copied=states.get(TableState.COPIED, 0),
        failed=states.get(TableState.FAILED, 0),
        not_attempted=states.get(TableState.NOT_ATTEMPTED, 0),
        resumed=resumed,
        excluded=excluded,
        attempts=attempts,
    )


def failure_counts(decision: Decision) -> dict[str, int]:
    return _tallies(decision)[1]


def bound_run_output(full: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """A copy of the RunOutput small enough for the status, and whether it was cut.

    Counts (``tables_copied``, ``tables_failed``...) stay exact; the lists keep their
    first entries and error texts their first :data:`MAX_STATUS_ERROR_CHARS` characters.
    """
    doc = copy.deepcopy(dict(full))
    truncated = False
    for key in CARRIED_KEYS:  # a resumed run's chain (logic/resume_chain.py)
        carried = doc.get(key)
        if isinstance(carried, list) and len(carried) > MAX_STATUS_MATERIALIZATIONS:
            doc[key], truncated = carried[:MAX_STATUS_MATERIALIZATIONS], True
    errors = list(doc.get("errors") or [])
    if len(errors) > MAX_STATUS_ERRORS:
        errors, truncated = errors[:MAX_STATUS_ERRORS], True
    for error in errors:
        text = error.get("error")
        if isinstance(text, str) and len(text) > MAX_STATUS_ERROR_CHARS:
            error["error"] = text[:MAX_STATUS_ERROR_CHARS] + "… (cut; see rocky-operator output)"
            truncated = True
    doc["errors"] = errors
    materializations = list(doc.get("materializations") or [])
    if len(materializations) > MAX_STATUS_MATERIALIZATIONS:
        materializations, truncated = materializations[:MAX_STATUS_MATERIALIZATIONS], True
    doc["materializations"] = materializations
    for key in ("contained", "excluded_tables", "drift"):
        part = doc.get(key)
        if key != "drift" and isinstance(part, list) and len(part) > MAX_STATUS_ERRORS:
            doc[key], truncated = part[:MAX_STATUS_ERRORS], True
        if key == "drift" and isinstance(part, dict):
            actions = part.get("actions_taken") or []
            if len(actions) > MAX_STATUS_ERRORS:
                part["actions_taken"], truncated = actions[:MAX_STATUS_ERRORS], True
    return doc, truncated


def build_status(
    *,
    decision: Decision,
    attempts: Collection[Attempt],
    resumed: int,
    previous: RockyRunStatus,
    generation: int | None,
    start_time: datetime,
    now: datetime,
    run_output: Mapping[str, Any] | None = None,
    output: OutputRef | None = None,
    excluded: int = 0,
    no_tables: str | None = None,
    retries: Mapping[str, int] | None = None,
) -> RockyRunStatus:
    """Status of an accepted run; ``run_output`` (complete) is given once it finished.

    ``no_tables`` (:func:`~rocky_operator.logic.tables.no_tables_message`) marks a plan
    of zero tables: every condition's reason is then ``NoTablesMatched``, so the run
    cannot read as a plain success (its exit code stays 0, as ``rocky run``'s).
    ``retries``: :func:`count_retries` of ``attempts`` when the caller keeps it up to date.
    """
    states, failures = _tallies(decision)
    counts = _counts(states, len(decision.outcomes), resumed, len(attempts), excluded)
    retried = dict(retries) if retries is not None else count_retries(attempts)
    conditions = set_condition(
        previous.conditions,
        type=CONDITION_ACCEPTED,
        status=True,
        reason=REASON_NO_TABLES if no_tables else "Planned",
        message=no_tables
        or (
            f"{counts.planned} tables planned"
            + (f", {resumed} skipped by resumeFrom" if resumed else "")
            + (f", {excluded} excluded (see runOutput.excluded_tables)" if excluded else "")
        ),
        now=now,
        generation=generation,
    )
    summary = (
        f"{counts.copied} copied, {counts.failed} failed, {counts.running} running, "
        f"{counts.pending} pending, {counts.waiting_retry} waiting to retry, "
        f"{counts.not_attempted} not attempted" + (f", {excluded} excluded" if excluded else "")
    )
    if decision.finished:
        outcome = run_status(counts.copied, counts.failed, counts.not_attempted)
        phase = PHASE_BY_RUN_STATUS[outcome]
        code = exit_code(outcome)
        reason = {
            "Succeeded": "Succeeded",
            "PartialFailure": "PartialFailure",
            "Failed": "AllFailed",
        }[phase]
        message = summary + (f"; stopped early: {decision.reason}" if decision.reason else "")
        failed = phase == "Failed"
        if no_tables:
            reason, message = REASON_NO_TABLES, f"{no_tables}; nothing was copied"
        conditions = set_conditions(
            conditions,
            {
                CONDITION_PROGRESSING: (False, "Finished"),
                CONDITION_COMPLETE: (True, reason),
                CONDITION_FAILED: (
                    failed,
                    reason if failed or no_tables else "TablesCopied",
                ),
            },
            message=message,
            now=now,
            generation=generation,
        )
        bounded, truncated = bound_run_output(run_output) if run_output else (None, False)
        return RockyRunStatus(
            phase=phase,
            exit_code=code,
            observed_generation=generation,
            start_time=timestamp(start_time),
            completion_time=timestamp(now),
            message=message,
            conditions=conditions,
            tables=counts,
            failures=failures,
            retries=retried,
            run_output=bounded,
            run_output_truncated=truncated,
            output=output,
        )
    message = summary + (f"; {decision.reason}" if decision.reason else "")
    conditions = set_conditions(
        conditions,
        {
            CONDITION_PROGRESSING: (True, "TablesRunning" if not decision.reason else "Stopping"),
            CONDITION_COMPLETE: (False, "Running"),
        },
        message=message,
        now=now,
        generation=generation,
    )
    return RockyRunStatus(
        phase="Running",
        observed_generation=generation,
        start_time=timestamp(start_time),
        message=message,
        conditions=conditions,
        tables=counts,
        failures=failures,
        retries=retried,
    )


def build_planning_status(
    *, previous: RockyRunStatus, generation: int | None, now: datetime
) -> RockyRunStatus:
    """A run whose tables are being discovered: Pending, Accepted unknown yet."""
    condition = Condition(
        type=CONDITION_ACCEPTED,
        status="Unknown",
        reason="Planning",
        message="validating the spec and discovering tables",
        last_transition_time=timestamp(now),
        observed_generation=generation,
    )
    return RockyRunStatus(
        phase="Pending",
        observed_generation=generation,
        start_time=previous.start_time or timestamp(now),
        message="discovering tables",
        conditions=[*(c for c in previous.conditions if c.type != CONDITION_ACCEPTED), condition],
    )


def build_rejected_status(
    *,
    reason: str,
    message: str,
    previous: RockyRunStatus,
    generation: int | None,
    now: datetime,
    run_output: Mapping[str, Any] | None,
) -> RockyRunStatus:
    """A run that never starts (bad spec, missing Secret, discovery failed): Failed, 1."""
    conditions = set_conditions(
        previous.conditions,
        {
            CONDITION_ACCEPTED: (False, reason),
            CONDITION_PROGRESSING: (False, reason),
            CONDITION_COMPLETE: (True, reason),
            CONDITION_FAILED: (True, reason),
        },
        message=message,
        now=now,
        generation=generation,
    )
    bounded, truncated = bound_run_output(run_output) if run_output else (None, False)
    return RockyRunStatus(
        phase="Failed",
        exit_code=1,
        observed_generation=generation,
        start_time=previous.start_time or timestamp(now),
        completion_time=timestamp(now),
        message=message,
        conditions=conditions,
        run_output=bounded,
        run_output_truncated=truncated,
    )


def status_document(status: RockyRunStatus) -> dict[str, Any]:
    """The status as the API stores it (camelCase; unset optional fields omitted)."""
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)
