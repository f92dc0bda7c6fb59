"""Table outcomes -> Rocky's RunOutput JSON (``rocky run --output json``).

The document validates against Rocky's published schema
(``contracts/rocky-run.schema.json``) and parses with ``rocky_sdk.parse_rocky_output``.

Every table of the run appears exactly once:

- copied -> ``materializations[*]`` (with the attempt trail when it was retried);
- failed -> ``errors[*] {asset_key, error, failure_kind}``; this includes tables the
  auth circuit breaker never launched (``auth-failed``, error saying so);
- not attempted (fail-fast, cancellation) -> ``contained[*]``, Rocky's list of
  work withheld because of a failure named in ``errors``: ``model`` is the asset key
  joined by ``/``, ``blocked_by`` the failed tables that stopped it, ``unblock_hint``
  the reason. They are counted in ``tables_skipped``;
- excluded (a listed name the source lacks, a view while views are not replicated)
  -> ``excluded_tables[*] {asset_key, source_schema, table_name, reason}``, Rocky's list
  of requested tables that never reached execution (present only when not empty, as
  Rocky writes it). Not failures: they do not change ``status``.

Requested = ``tables_copied`` + ``tables_failed`` + ``tables_skipped`` +
``len(excluded_tables)``.

``status`` on the wire uses the schema's spelling (``Success`` / ``PartialFailure``
/ ``Failure``): the schema's ``RunStatus`` enum accepts only those, and rocky-sdk
keeps ``status`` as a free string, so this is the one spelling both accept.
:func:`run_status` names the same three outcomes in DESIGN.md's words
(``success`` / ``partial_failure`` / ``failure``), which are also the values of the
``status`` label of the ``rocky_runs_total`` metric.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from rocky_operator import __version__
from rocky_operator.logic.decide import TableOutcome, TableState
from rocky_operator.logic.run_output_tables import (
    duration_between,
    materialization,
    permissions,
    table_drift_actions,
)
from rocky_operator.logic.tables import Exclusion, PlannedTable, readable
from rocky_runner.contract import FailureKind

RunStatus = Literal["success", "partial_failure", "failure"]

#: ``status`` as it appears in the JSON (the schema's RunStatus enum).
WIRE_STATUS: Mapping[RunStatus, str] = {
    "success": "Success",
    "partial_failure": "PartialFailure",
    "failure": "Failure",
}
STATUS_BY_WIRE: Mapping[str, RunStatus] = {
    **{v: k for k, v in WIRE_STATUS.items()},
    **{k: k for k in WIRE_STATUS},
}

EXIT_CODES: Mapping[RunStatus, int] = {"success": 0, "partial_failure": 2, "failure": 1}

#: Prefix of the ``unblock_hint`` of a not-attempted table.
NOT_ATTEMPTED_HINT = "re-run the tables that did not copy (rocky-operator local --resume-from)"


def run_status(copied: int, failed: int, not_attempted: int) -> RunStatus:
    """``success`` when nothing failed; ``failure`` when something failed or was left
    out and nothing copied (nothing could run, or every table failed); otherwise
    ``partial_failure``. An empty run (the filter matched nothing) is a success."""
    if failed == 0 and not_attempted == 0:
        return "success"
    if copied == 0:
        return "failure"
    return "partial_failure"


def exit_code(status: str) -> int:
    """``rocky run``'s exit code: 0 success, 2 partial failure, 1 failure.

    Accepts both spellings (``partial_failure`` and the wire's ``PartialFailure``);
    anything else is a failure.
    """
    known = STATUS_BY_WIRE.get(status)
    return EXIT_CODES[known] if known else 1


def _error_text(outcome: TableOutcome) -> str:
    if outcome.error:
        return outcome.error
    kind = outcome.failure_kind or FailureKind.UNKNOWN
    return f"table failed ({kind}) after {outcome.attempts} attempt(s); no error message"


def build_run_output(
    tables: Sequence[PlannedTable],
    outcomes: Mapping[str, TableOutcome],
    *,
    started_at: datetime,
    finished_at: datetime,
    filter: str,
    resumed_from: str | None = None,
    concurrency: int = 1,
    interrupted: bool = False,
    excluded: Sequence[Exclusion] = (),
) -> dict[str, Any]:
    """The RunOutput of a run whose tables stand as ``outcomes`` say; ``excluded`` are the
    requested tables the plan left out.

    A table without an outcome, or one still pending / running / waiting for a retry
    (the run was stopped before it ended), is reported as not attempted or failed so
    that every table is accounted for exactly once.
    """
    materializations: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    contained: list[dict[str, Any]] = []
    drift_actions: list[dict[str, Any]] = []
    by_key = {t.key: t for t in tables}
    names = {t.key: t.asset_key for t in tables}  # people read asset keys, not table keys
    processed = 0
    execution_failed = 0
    for table in tables:
        outcome = outcomes.get(table.key) or TableOutcome(
            table=table.key, state=TableState.NOT_ATTEMPTED, attempts=0
        )
        if outcome.attempts > 0:
            processed += 1
        if outcome.state is TableState.COPIED:
            materializations.append(materialization(table, outcome))
            drift_actions.extend(table_drift_actions(table, outcome))
        elif outcome.state in (TableState.FAILED, TableState.WAITING_RETRY):
            errors.append(
                {
                    "asset_key": list(table.asset_key),
                    "error": readable(_error_text(outcome), names),
                    "failure_kind": (outcome.failure_kind or FailureKind.UNKNOWN).value,
                }
            )
            if outcome.attempts > 0:
                execution_failed += 1
        elif outcome.state is TableState.RUNNING and outcome.attempts > 0:
            # The run was stopped while this attempt ran and its end was never
            # observed: it may or may not have written; retrying it is safe.
            errors.append(
                {
                    "asset_key": list(table.asset_key),
                    "error": (f"the run ended while attempt {outcome.attempts} was still running"),
                    "failure_kind": FailureKind.TRANSIENT.value,
                }
            )
            execution_failed += 1
        else:
            reason = readable(
                outcome.error or "not attempted: the run ended before this table started", names
            )
            contained.append(
                {
                    "model": "/".join(table.asset_key),
                    "blocked_by": [
                        "/".join(by_key[k].asset_key) for k in outcome.blocked_by if k in by_key
                    ],
                    "unblock_hint": f"{reason}; {NOT_ATTEMPTED_HINT}",
                }
            )
    status = run_status(len(materializations), len(errors), len(contained))
    doc: dict[str, Any] = {
        "version": __version__,
        "command": "run",
        "pipeline_type": "replication",
        "status": WIRE_STATUS[status],
        "filter": filter,
        "duration_ms": duration_between(started_at, finished_at),
        "tables_copied": len(materializations),
        "tables_failed": len(errors),
        "tables_skipped": len(contained),
        "materializations": materializations,
        "errors": errors,
        "check_results": [],
        "execution": {
            "concurrency": concurrency,
            "tables_processed": processed,
            "tables_failed": execution_failed,
        },
        "drift": {
            "tables_checked": len(materializations),
            "tables_drifted": len({a["table"] for a in drift_actions}),
            "actions_taken": drift_actions,
        },
        "permissions": permissions(tables, outcomes),
        "interrupted": interrupted,
        "resumed_from": resumed_from,
    }
    if contained:
        doc["contained"] = contained
    if excluded:
        doc["excluded_tables"] = [e.as_output() for e in excluded]
    return doc


def build_failed_run_output(
    error: str,
    *,
    started_at: datetime,
    finished_at: datetime,
    filter: str = "",
    failure_kind: FailureKind = FailureKind.UNKNOWN,
    resumed_from: str | None = None,
) -> dict[str, Any]:
    """The RunOutput of a run that could not start at all (discovery failed).

    Status ``Failure`` (exit code 1), no tables, and one error with an empty asset
    key that says why, so a consumer reading only ``errors`` still sees the cause. That
    error is counted in ``tables_failed`` (1, as Rocky counts a failure before execution
    there), so ``tables_failed`` always equals ``len(errors)``; ``execution.tables_failed``
    stays 0 (nothing was executed).
    """
    doc = build_run_output(
        [],
        {},
        started_at=started_at,
        finished_at=finished_at,
        filter=filter,
        resumed_from=resumed_from,
    )
    doc["status"] = WIRE_STATUS["failure"]
    doc["errors"] = [{"asset_key": [], "error": error, "failure_kind": failure_kind.value}]
    doc["tables_failed"] = len(doc["errors"])
    return doc


def run_output_status(doc: Mapping[str, Any]) -> RunStatus:
    """The status of a RunOutput document in DESIGN.md's words."""
    return STATUS_BY_WIRE.get(str(doc.get("status")), "failure")
