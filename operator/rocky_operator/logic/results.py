"""A finished attempt from what its runner left: the result message, checked.

A decoded result message is well-formed JSON of the right shape, but that does not make
it true: a runner (or whatever wrote the file) may claim ``copied`` with a negative row
count, or ``copied`` while exiting with a failure code. :func:`result_attempt` checks
the values a RunOutput relies on (ranges) and that the outcome agrees with the exit
code the runner itself chose (DESIGN.md: 0 copied, 10..16 one per kind). On any
disagreement neither fact is trusted blindly: the attempt fails as ``unknown`` and the
error states both, for a person to look at.

:func:`stopped_by_run` reads the end of an attempt the run itself stopped (fail-fast,
cancellation): unless it committed (a copied result) or failed on its own, it was
stopped before its copy finished, which is not a failure of the table.

Used by the local executor (runner processes) and the operator (runner pods) alike.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from rocky_operator.logic.decide import Attempt, AttemptState
from rocky_runner.contract import FailureKind, TableResult, exit_code_for

#: Exit codes a process gets from a signal (128 + n in a container, negative locally)
#: are not the runner's own answer; agreement is checked only for codes below this.
_SIGNAL_EXIT_BASE = 128


def result_problems(result: TableResult, exit_code: int | None) -> list[str]:
    """What is wrong with a decoded result, given the runner's exit code (empty: nothing)."""
    problems: list[str] = []
    if result.rows_copied is not None and result.rows_copied < 0:
        problems.append(f"rows_copied is {result.rows_copied}, below 0")
    if result.duration_ms < 0:
        problems.append(f"duration_ms is {result.duration_ms}, below 0")
    if result.outcome == "copied" and result.failure_kind is not None:
        problems.append(f"outcome copied carries failure_kind {result.failure_kind}")
    if exit_code is not None and 0 <= exit_code < _SIGNAL_EXIT_BASE:
        kind = None if result.outcome == "copied" else result.failure_kind
        expected = exit_code_for(kind)
        if exit_code != expected:
            said = "copied" if kind is None else f"failed ({kind})"
            problems.append(
                f"the result says {said}, which exits {expected}, but the runner exited {exit_code}"
            )
    return problems


def _describe(result: TableResult) -> str:
    said = f"outcome {result.outcome}"
    if result.failure_kind is not None:
        said += f", failure_kind {result.failure_kind}"
    if result.rows_copied is not None:
        said += f", rows_copied {result.rows_copied}"
    if result.error:
        said += f", error {result.error[:300]!r}"
    return said


def result_attempt(
    *,
    table: str,
    number: int,
    started_at: datetime,
    finished_at: datetime,
    result: TableResult,
    exit_code: int | None,
    asset_key: Sequence[str] | None = None,
) -> Attempt:
    """The attempt a result message stands for, or a failed ``unknown`` one when the
    message contradicts itself, its exit code, or names another table."""
    problems = result_problems(result, exit_code)
    # A message cut to fit 4096 bytes may shorten its asset key (after its metadata).
    cut = bool(result.metadata.get("truncated"))
    if asset_key is not None and result.asset_key and not cut and result.asset_key != [*asset_key]:
        problems.append(f"the result names table {'/'.join(result.asset_key)}")
    if problems:
        return Attempt(
            table=table,
            number=number,
            state=AttemptState.FAILED,
            started_at=started_at,
            finished_at=finished_at,
            failure_kind=FailureKind.UNKNOWN,
            error=(
                "runner result not trusted: "
                + "; ".join(problems)
                + f" (result: {_describe(result)})"
            ),
        )
    copied = result.outcome == "copied"
    return Attempt(
        table=table,
        number=number,
        state=AttemptState.COPIED if copied else AttemptState.FAILED,
        started_at=started_at,
        finished_at=finished_at,
        failure_kind=None if copied else result.failure_kind,
        error=None if copied else result.error,
        result=result,
    )


def stopped_by_run(attempt: Attempt, reason: str = "the run stopped it") -> Attempt:
    """The end of an attempt the run told to stop: copied stays copied (it committed);
    a transient end (the runner's answer to SIGTERM) or an end without a result (killed
    after the grace period) is STOPPED; any other failure is the table's own."""
    if attempt.state is not AttemptState.FAILED:
        return attempt
    no_result = attempt.result is None and attempt.failure_kind is FailureKind.UNKNOWN
    if attempt.failure_kind is FailureKind.TRANSIENT or no_result:
        detail = f" ({attempt.error})" if attempt.error else ""
        return replace(
            attempt,
            state=AttemptState.STOPPED,
            failure_kind=None,
            error=f"stopped before it committed: {reason}{detail}",
        )
    return attempt
