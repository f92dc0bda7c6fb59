"""The one decision point of a run: given what was observed, what happens next.

Both executors drive this function: the local executor (one subprocess per
attempt) and the Kubernetes operator (one pod per attempt). They observe attempts,
call :func:`decide` with the current time, carry out ``start`` and ``abort``, and
wake up again when an attempt finishes or at ``requeue_at``.

The function is level-based and idempotent: it looks only at the observed
attempts, never at what it answered before, so observing the same attempt twice,
or deciding twice in a row, changes nothing. It never asks to start an attempt
number that was already observed, so with deterministic attempt names an attempt
can never run twice.

Pure: the clock is the ``now`` argument; no I/O, no logging.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from rocky_operator.logic.policy import RunPolicy, backoff_delay
from rocky_operator.logic.write_groups import FileAccess, FileLocks
from rocky_runner.contract import FailureKind, TableResult


class AttemptState(StrEnum):
    """What an observed attempt (one runner process or pod) is doing."""

    RUNNING = "running"
    COPIED = "copied"
    FAILED = "failed"
    STOPPED = "stopped"
    """Stopped by the run itself (fail-fast, cancellation) before it committed: not a
    failure of the table. A table whose last attempt was stopped counts as not
    attempted; one that committed anyway is COPIED."""


@dataclass(frozen=True)
class Attempt:
    """One runner process / pod, as observed."""

    table: str
    """Table key (``PlannedTable.key``)."""
    number: int
    """1-based attempt number."""
    state: AttemptState
    started_at: datetime
    finished_at: datetime | None = None
    failure_kind: FailureKind | None = None
    """Set when FAILED; a FAILED attempt without one counts as ``unknown``."""
    error: str | None = None
    result: TableResult | None = None
    """The decoded result message, when there is one."""


class TableState(StrEnum):
    """Where one table stands."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING_RETRY = "waiting-retry"
    COPIED = "copied"
    FAILED = "failed"
    NOT_ATTEMPTED = "not-attempted"


#: States a table does not leave any more within this run.
TERMINAL_STATES = frozenset({TableState.COPIED, TableState.FAILED, TableState.NOT_ATTEMPTED})


@dataclass(frozen=True)
class TableOutcome:
    """Where one table stands after this decision."""

    table: str
    state: TableState
    attempts: int
    """Attempts made so far, including one started by this decision."""
    failure_kind: FailureKind | None = None
    error: str | None = None
    """The last failure; for NOT_ATTEMPTED (and breaker-failed) tables, why it never ran."""
    retry_at: datetime | None = None
    result: TableResult | None = None
    # Additive to the agreed interface (INTERFACES.md): useful to build the RunOutput.
    started_at: datetime | None = None
    """When the attempt this outcome comes from started."""
    finished_at: datetime | None = None
    """When that attempt finished."""
    blocked_by: tuple[str, ...] = ()
    """For NOT_ATTEMPTED: the table keys whose failure stopped it (fail-fast)."""
    history: tuple[Attempt, ...] = field(default=(), compare=False)
    """Every observed attempt of the table, by number."""


@dataclass(frozen=True)
class Decision:
    """What to do now, and where every table stands."""

    start: tuple[tuple[str, int], ...]
    """(table key, attempt number) to start now, in order."""
    abort: tuple[tuple[str, int], ...]
    """Running attempts to stop (fail-fast, cancellation)."""
    outcomes: Mapping[str, TableOutcome]
    """Every table of the run exactly once."""
    finished: bool
    """Nothing running and nothing more to start: the run's outcome is final."""
    requeue_at: datetime | None
    """Earliest future retry time to wake up at (None: wait for an attempt to end)."""
    reason: str | None
    """Why the run stopped early: fail-fast, the breaker, or cancellation."""


_STATE_RANK = {
    AttemptState.RUNNING: 0,
    AttemptState.STOPPED: 1,
    AttemptState.FAILED: 1,
    AttemptState.COPIED: 2,
}


def _merge(attempts: Iterable[Attempt], known: set[str]) -> dict[str, dict[int, Attempt]]:
    """Attempts per table and number; a repeated observation keeps the furthest state.

    An attempt moves only forward (running -> copied/failed), so of two observations
    of one attempt the finished one is the newer. Attempts of unknown tables are ignored.
    """
    by_table: dict[str, dict[int, Attempt]] = {}
    for attempt in attempts:
        if attempt.table not in known:
            continue
        numbers = by_table.setdefault(attempt.table, {})
        seen = numbers.get(attempt.number)
        if seen is None or _STATE_RANK[attempt.state] > _STATE_RANK[seen.state]:
            numbers[attempt.number] = attempt
    return by_table


def _kind(attempt: Attempt) -> FailureKind:
    return attempt.failure_kind or FailureKind.UNKNOWN


def _observed_outcome(key: str, history: tuple[Attempt, ...], policy: RunPolicy) -> TableOutcome:
    """The state of a table from its own attempts only (before run-wide halts)."""
    if not history:
        return TableOutcome(table=key, state=TableState.PENDING, attempts=0)
    latest = history[-1]
    copied = [a for a in history if a.state is AttemptState.COPIED]
    if copied:
        won = copied[-1]
        return TableOutcome(
            table=key,
            state=TableState.COPIED,
            attempts=latest.number,
            result=won.result,
            started_at=won.started_at,
            finished_at=won.finished_at,
            history=history,
        )
    running = [a for a in history if a.state is AttemptState.RUNNING]
    if running:
        return TableOutcome(
            table=key,
            state=TableState.RUNNING,
            attempts=latest.number,
            started_at=running[-1].started_at,
            history=history,
        )
    if latest.state is AttemptState.STOPPED:
        # Not the table's failure: it may start again (a new attempt number) unless the
        # run is halting, which is what stopped it (then it is not attempted).
        return TableOutcome(
            table=key,
            state=TableState.PENDING,
            attempts=latest.number,
            error=latest.error,
            started_at=latest.started_at,
            finished_at=latest.finished_at,
            history=history,
        )
    kind = _kind(latest)
    rule = policy.rule_for(kind)
    retries_used = latest.number - 1
    failed = TableOutcome(
        table=key,
        state=TableState.FAILED,
        attempts=latest.number,
        failure_kind=kind,
        error=latest.error or (latest.result.error if latest.result else None),
        result=latest.result,
        started_at=latest.started_at,
        finished_at=latest.finished_at,
        history=history,
    )
    if retries_used < rule.max_retries:
        ended = latest.finished_at or latest.started_at
        retry_at = ended + timedelta(seconds=backoff_delay(rule, retries_used + 1))
        return replace(failed, state=TableState.WAITING_RETRY, retry_at=retry_at)
    return failed


def not_attempted(outcome: TableOutcome, note: str, blocked: tuple[str, ...]) -> TableOutcome:
    """A pending table the run will not start (any more): never started, or its attempt
    was stopped by the run before it committed (the note then says so)."""
    if outcome.attempts:
        note = note.replace("not attempted:", "not attempted: stopped in flight,", 1)
    return replace(
        outcome, state=TableState.NOT_ATTEMPTED, error=note, blocked_by=blocked, retry_at=None
    )


def _give_up(outcome: TableOutcome) -> TableOutcome:
    """A table waiting for a retry that will not come: its last failure is final."""
    return replace(outcome, state=TableState.FAILED, retry_at=None)


def decide(
    tables: Sequence[str],
    attempts: Iterable[Attempt],
    policy: RunPolicy,
    now: datetime,
    *,
    cancelled: bool = False,
    halt: str | None = None,
    files: Mapping[str, FileAccess] | None = None,
) -> Decision:
    """Decide what happens next in a run.

    ``tables`` are the table keys of the run in start order; ``attempts`` every
    attempt observed so far (any order, repeats allowed). Running attempts count
    against ``policy.concurrency``; due retries go first, then new tables in order.

    ``files`` (:func:`~rocky_operator.logic.write_groups.write_groups`) says which
    database files each table locks: a table whose files conflict with a running one
    (one writer per DuckDB file) waits, and the tables after it may start instead.

    ``halt`` stops the run for that reason, as cancellation does (running attempts
    aborted, pending tables not attempted, naming it): a spec the runner policy now
    refuses after an operator restart (``kube/prepare.py``).
    """
    order = list(dict.fromkeys(tables))
    position = {key: i for i, key in enumerate(order)}
    merged = _merge(attempts, set(order))
    histories = {
        key: tuple(merged.get(key, {})[n] for n in sorted(merged.get(key, {}))) for key in order
    }
    outcomes = {key: _observed_outcome(key, histories[key], policy) for key in order}
    running = [
        (key, a.number) for key in order for a in histories[key] if a.state is AttemptState.RUNNING
    ]

    # Halts, in priority order: cancellation, fail-fast, the auth breaker.
    reason: str | None = None
    halt_all = False
    blocked: tuple[str, ...] = ()
    not_attempted_note = ""
    final_failures = sorted(
        (o for o in outcomes.values() if o.state is TableState.FAILED),
        key=lambda o: (o.finished_at or o.started_at or now, position[o.table]),
    )
    auth_failures = sum(
        1
        for key in order
        for a in histories[key]
        if a.state is AttemptState.FAILED and _kind(a) is FailureKind.AUTH_FAILED
    )
    breaker_open = 0 < policy.auth_failed_threshold <= auth_failures
    if cancelled or halt:
        halt_all = True
        reason = halt or "cancelled"
        not_attempted_note = f"not attempted: {halt or 'the run was cancelled'}"
    elif policy.fail_fast and final_failures:
        first = final_failures[0]
        halt_all = True
        blocked = tuple(o.table for o in final_failures)
        reason = f"fail-fast: {first.table} failed ({first.failure_kind})"
        not_attempted_note = f"not attempted: fail-fast after table {first.table} failed"
        not_attempted_note += f" ({first.failure_kind})"

    start: list[tuple[str, int]] = []
    abort: tuple[tuple[str, int], ...] = ()
    if halt_all:
        abort = tuple(running)
        for key, outcome in outcomes.items():
            if outcome.state is TableState.PENDING:
                outcomes[key] = not_attempted(outcome, not_attempted_note, blocked)
            elif outcome.state is TableState.WAITING_RETRY:
                outcomes[key] = _give_up(outcome)
    else:
        if breaker_open:
            reason = (
                f"circuit breaker open: {auth_failures} auth-failed results "
                f"(threshold {policy.auth_failed_threshold})"
            )
            note = (
                "not attempted: the circuit breaker opened after "
                f"{auth_failures} auth-failed results against the warehouse "
                f"(threshold {policy.auth_failed_threshold})"
            )
            for key, outcome in outcomes.items():
                if outcome.state is TableState.PENDING:
                    outcomes[key] = TableOutcome(
                        table=key,
                        state=TableState.FAILED,
                        attempts=0,
                        failure_kind=FailureKind.AUTH_FAILED,
                        error=note,
                    )
        slots = max(policy.concurrency - len(running), 0)
        access = files or {}
        locks = FileLocks()
        for key, _number in running:
            locks.take(access.get(key))
        due = sorted(
            (
                o
                for o in outcomes.values()
                if o.state is TableState.WAITING_RETRY
                and o.retry_at is not None
                and o.retry_at <= now
            ),
            key=lambda o: (o.retry_at or now, position[o.table]),
        )
        fresh = [o for o in outcomes.values() if o.state is TableState.PENDING]
        for outcome in [*due, *fresh]:
            if len(start) >= slots:
                break
            if not locks.is_free_for(access.get(outcome.table)):
                continue  # its write group is busy: wait for the file's writer to end
            locks.take(access.get(outcome.table))
            number = outcome.attempts + 1
            start.append((outcome.table, number))
            outcomes[outcome.table] = TableOutcome(
                table=outcome.table,
                state=TableState.RUNNING,
                attempts=number,
                started_at=now,
                history=outcome.history,
            )

    future_retries = [
        o.retry_at
        for o in outcomes.values()
        if o.state is TableState.WAITING_RETRY and o.retry_at is not None and o.retry_at > now
    ]
    requeue_at = min(future_retries) if future_retries else None
    finished = (
        not running and not start and all(o.state in TERMINAL_STATES for o in outcomes.values())
    )
    return Decision(
        start=tuple(start),
        abort=abort,
        outcomes=MappingProxyType(outcomes),
        finished=finished,
        requeue_at=requeue_at,
        reason=reason,
    )
