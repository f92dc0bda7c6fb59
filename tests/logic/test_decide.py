"""The decision core as a table of named scenarios, plus properties over random histories.

Each scenario gives the tables of a run, the attempts observed so far, the policy
and the time, and states what ``decide`` must answer: which attempts to start or
abort, where each table stands, whether the run is finished and when to wake up.
The property tests check the invariants for any attempt history: every table is
accounted for exactly once, repeated observations change nothing, no observed
attempt is started again, and the concurrency bound holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.logic.decide import (
    TERMINAL_STATES,
    Attempt,
    AttemptState,
    Decision,
    TableState,
    decide,
)
from rocky_operator.logic.policy import RunPolicy
from rocky_runner.contract import FailureKind

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def running(table: str, n: int = 1, start: float = 0) -> Attempt:
    return Attempt(table=table, number=n, state=AttemptState.RUNNING, started_at=at(start))


def copied(table: str, n: int = 1, start: float = 0, end: float = 1) -> Attempt:
    return Attempt(
        table=table, number=n, state=AttemptState.COPIED, started_at=at(start), finished_at=at(end)
    )


def failed(
    table: str, kind: FailureKind | None, n: int = 1, start: float = 0, end: float = 1
) -> Attempt:
    return Attempt(
        table=table,
        number=n,
        state=AttemptState.FAILED,
        started_at=at(start),
        finished_at=at(end),
        failure_kind=kind,
        error=f"{table} attempt {n} failed" if kind else "no result",
    )


def spec_policy(**spec: object) -> RunPolicy:
    doc: dict[str, object] = {
        "adapter": {"type": "duckdb", "duckdb": {"path": "/tmp/w.duckdb"}},
        "source": {"schemaPattern": {"components": ["tenant"]}},
        "target": {"catalogTemplate": "wh", "schemaTemplate": "{tenant}"},
    }
    doc.update(spec)
    return RunPolicy.from_spec(RockyRunSpec.model_validate(doc))


@dataclass
class Scenario:
    tables: Sequence[str]
    attempts: Sequence[Attempt]
    policy: RunPolicy
    now: datetime
    start: Sequence[tuple[str, int]] = ()
    abort: Sequence[tuple[str, int]] = ()
    states: dict[str, TableState] = field(default_factory=dict)
    kinds: dict[str, FailureKind | None] = field(default_factory=dict)
    finished: bool = False
    requeue_at: datetime | None = None
    reason: str | None = None
    error_contains: dict[str, str] = field(default_factory=dict)
    cancelled: bool = False


ABCDE = ["a", "b", "c", "d", "e"]

SCENARIOS: dict[str, Scenario] = {
    "first pass starts up to concurrency": Scenario(
        tables=ABCDE,
        attempts=[],
        policy=RunPolicy(concurrency=3),
        now=at(0),
        start=[("a", 1), ("b", 1), ("c", 1)],
        states={"a": TableState.RUNNING, "d": TableState.PENDING, "e": TableState.PENDING},
    ),
    "too many running starts nothing": Scenario(
        tables=ABCDE,
        attempts=[running("a"), running("b"), running("c")],
        policy=RunPolicy(concurrency=2),
        now=at(5),
        start=[],
        states={"a": TableState.RUNNING, "d": TableState.PENDING},
    ),
    "copied table finishes": Scenario(
        tables=["a", "b"],
        attempts=[copied("a"), running("b")],
        policy=RunPolicy(concurrency=1),
        now=at(2),
        states={"a": TableState.COPIED, "b": TableState.RUNNING},
    ),
    "a finished table frees its slot for the next": Scenario(
        tables=["a", "b", "c"],
        attempts=[copied("a"), running("b")],
        policy=RunPolicy(concurrency=2),
        now=at(2),
        start=[("c", 1)],
        states={"a": TableState.COPIED, "c": TableState.RUNNING},
    ),
    "transient retried after backoff": Scenario(
        tables=["a", "b"],
        attempts=[failed("a", FailureKind.TRANSIENT, end=5), copied("b")],
        policy=RunPolicy(concurrency=4),
        now=at(15),
        start=[("a", 2)],
        states={"a": TableState.RUNNING, "b": TableState.COPIED},
    ),
    "retry not yet due requeues at retry time": Scenario(
        tables=["a", "b"],
        attempts=[failed("a", FailureKind.TRANSIENT, end=5), copied("b")],
        policy=RunPolicy(concurrency=4),
        now=at(14),
        start=[],
        states={"a": TableState.WAITING_RETRY},
        requeue_at=at(15),
    ),
    "second retry waits twice as long": Scenario(
        tables=["a"],
        attempts=[
            failed("a", FailureKind.TRANSIENT, n=1, end=5),
            failed("a", FailureKind.TRANSIENT, n=2, start=15, end=20),
        ],
        policy=RunPolicy(),
        now=at(21),
        states={"a": TableState.WAITING_RETRY},
        requeue_at=at(40),
    ),
    "connection-failed exhausts retries": Scenario(
        tables=["a"],
        attempts=[
            failed("a", FailureKind.CONNECTION_FAILED, n=n, start=100 * n, end=100 * n + 1)
            for n in (1, 2, 3, 4)
        ],
        policy=RunPolicy(),
        now=at(1000),
        states={"a": TableState.FAILED},
        kinds={"a": FailureKind.CONNECTION_FAILED},
        finished=True,
    ),
    "quota-exceeded extended backoff": Scenario(
        tables=["a"],
        attempts=[failed("a", FailureKind.QUOTA_EXCEEDED, end=0)],
        policy=RunPolicy(),
        now=at(30),
        states={"a": TableState.WAITING_RETRY},
        requeue_at=at(60),
    ),
    "auth-failed never retried": Scenario(
        tables=["a", "b"],
        attempts=[failed("a", FailureKind.AUTH_FAILED), copied("b")],
        policy=RunPolicy(),
        now=at(3600),
        states={"a": TableState.FAILED, "b": TableState.COPIED},
        kinds={"a": FailureKind.AUTH_FAILED},
        finished=True,
    ),
    "a failure without a kind counts as unknown and is not retried": Scenario(
        tables=["a"],
        attempts=[failed("a", None)],
        policy=RunPolicy(),
        now=at(3600),
        states={"a": TableState.FAILED},
        kinds={"a": FailureKind.UNKNOWN},
        finished=True,
    ),
    "per-kind override from spec.retry": Scenario(
        tables=["a", "b"],
        attempts=[
            failed("a", FailureKind.QUERY_REJECTED, end=0),
            failed("b", FailureKind.TRANSIENT, end=0),
        ],
        policy=spec_policy(
            retry={
                "query-rejected": {"maxRetries": 1, "backoffSeconds": 2},
                "transient": {"maxRetries": 0},
            }
        ),
        now=at(2),
        start=[("a", 2)],
        states={"a": TableState.RUNNING, "b": TableState.FAILED},
    ),
    "fail-fast aborts running and leaves the rest not attempted": Scenario(
        tables=ABCDE,
        attempts=[
            copied("a"),
            failed("b", FailureKind.QUERY_REJECTED, end=2),
            running("c"),
            failed("d", FailureKind.TRANSIENT, end=1),
        ],
        policy=RunPolicy(concurrency=3, fail_fast=True),
        now=at(3),
        abort=[("c", 1)],
        states={
            "a": TableState.COPIED,
            "b": TableState.FAILED,
            "c": TableState.RUNNING,
            "d": TableState.FAILED,
            "e": TableState.NOT_ATTEMPTED,
        },
        kinds={"d": FailureKind.TRANSIENT},
        reason="fail-fast: b failed (query-rejected)",
        error_contains={"e": "fail-fast"},
    ),
    "fail-fast finishes once the aborted attempt is observed": Scenario(
        tables=["a", "b", "c"],
        attempts=[
            failed("a", FailureKind.NOT_FOUND, end=1),
            failed("b", FailureKind.TRANSIENT, end=4),
        ],
        policy=RunPolicy(concurrency=2, fail_fast=True),
        now=at(5),
        states={"a": TableState.FAILED, "b": TableState.FAILED, "c": TableState.NOT_ATTEMPTED},
        finished=True,
        reason="fail-fast: a failed (not-found)",
    ),
    "breaker opens after N auth-failed and reports the never-launched tables as auth-failed not attempted": Scenario(  # noqa: E501
        tables=["a", "b", "c", "d", "e", "f"],
        attempts=[
            failed("a", FailureKind.AUTH_FAILED),
            failed("b", FailureKind.AUTH_FAILED),
            failed("c", FailureKind.AUTH_FAILED),
            running("d"),
        ],
        policy=RunPolicy(concurrency=4, auth_failed_threshold=3),
        now=at(2),
        states={
            "a": TableState.FAILED,
            "d": TableState.RUNNING,
            "e": TableState.FAILED,
            "f": TableState.FAILED,
        },
        kinds={"e": FailureKind.AUTH_FAILED, "f": FailureKind.AUTH_FAILED},
        reason="circuit breaker open: 3 auth-failed results (threshold 3)",
        error_contains={"e": "not attempted", "f": "circuit breaker"},
    ),
    "breaker below threshold keeps launching": Scenario(
        tables=["a", "b", "c"],
        attempts=[failed("a", FailureKind.AUTH_FAILED), failed("b", FailureKind.AUTH_FAILED)],
        policy=RunPolicy(concurrency=4, auth_failed_threshold=3),
        now=at(2),
        start=[("c", 1)],
    ),
    "breaker threshold 0 disables": Scenario(
        tables=["a", "b", "c", "d"],
        attempts=[failed(t, FailureKind.AUTH_FAILED) for t in "abc"],
        policy=spec_policy(circuitBreaker={"authFailedThreshold": 0}),
        now=at(2),
        start=[("d", 1)],
        reason=None,
    ),
    "cancelled run": Scenario(
        tables=["a", "b", "c", "d"],
        attempts=[copied("a"), running("b"), failed("c", FailureKind.TRANSIENT, end=1)],
        policy=RunPolicy(concurrency=2),
        now=at(2),
        cancelled=True,
        abort=[("b", 1)],
        states={
            "a": TableState.COPIED,
            "b": TableState.RUNNING,
            "c": TableState.FAILED,
            "d": TableState.NOT_ATTEMPTED,
        },
        reason="cancelled",
        error_contains={"d": "cancelled"},
    ),
    "all finished": Scenario(
        tables=["a", "b", "c"],
        attempts=[
            copied("a"),
            failed("b", FailureKind.NOT_FOUND),
            failed("c", FailureKind.TRANSIENT, n=1, end=1),
            copied("c", n=2, start=20, end=21),
        ],
        policy=RunPolicy(),
        now=at(30),
        states={"a": TableState.COPIED, "b": TableState.FAILED, "c": TableState.COPIED},
        finished=True,
    ),
    "empty run is finished at once": Scenario(
        tables=[], attempts=[], policy=RunPolicy(), now=at(0), finished=True
    ),
    "due retries go before new tables": Scenario(
        tables=["a", "b", "c"],
        attempts=[failed("c", FailureKind.TRANSIENT, end=0)],
        policy=RunPolicy(concurrency=2),
        now=at(10),
        start=[("c", 2), ("a", 1)],
        states={"b": TableState.PENDING},
    ),
    "attempts of tables outside the run are ignored": Scenario(
        tables=["a"],
        attempts=[running("zz"), copied("a")],
        policy=RunPolicy(concurrency=1),
        now=at(2),
        states={"a": TableState.COPIED},
        finished=True,
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_scenario(scenario: Scenario) -> None:
    decision = decide(
        scenario.tables,
        scenario.attempts,
        scenario.policy,
        scenario.now,
        cancelled=scenario.cancelled,
    )
    assert list(decision.start) == list(scenario.start)
    assert list(decision.abort) == list(scenario.abort)
    assert decision.finished is scenario.finished
    assert decision.requeue_at == scenario.requeue_at
    assert decision.reason == scenario.reason
    assert set(decision.outcomes) == set(scenario.tables)
    for table, state in scenario.states.items():
        assert decision.outcomes[table].state is state, table
    for table, kind in scenario.kinds.items():
        assert decision.outcomes[table].failure_kind == kind, table
    for table, text in scenario.error_contains.items():
        assert text in (decision.outcomes[table].error or ""), table


def test_breaker_failed_tables_count_zero_attempts() -> None:
    decision = decide(
        ["a", "b", "c", "d"],
        [failed(t, FailureKind.AUTH_FAILED) for t in "abc"],
        RunPolicy(),
        at(2),
    )
    outcome = decision.outcomes["d"]
    assert outcome.attempts == 0
    assert decision.finished


def test_fail_fast_not_attempted_names_the_failed_table() -> None:
    decision = decide(
        ["a", "b"], [failed("a", FailureKind.UNKNOWN)], RunPolicy(fail_fast=True), at(2)
    )
    assert decision.outcomes["b"].blocked_by == ("a",)


def test_overrides_keep_unset_fields_of_the_default() -> None:
    policy = spec_policy(retry={"transient": {"maxRetries": 5}})
    rule = policy.rule_for(FailureKind.TRANSIENT)
    assert (rule.max_retries, rule.backoff_seconds) == (5, 10.0)
    assert policy.rule_for(FailureKind.QUOTA_EXCEEDED).backoff_seconds == 60.0


# --- properties over random attempt histories ---------------------------------------------

KINDS = [k for k in FailureKind if k is not FailureKind.COMPILE_ERROR]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[str], list[Attempt], RunPolicy, datetime, bool]:
    n_tables = draw(st.integers(min_value=0, max_value=8))
    tables = [f"t{i}" for i in range(n_tables)]
    attempts: list[Attempt] = []
    for table in tables:
        n_attempts = draw(st.integers(min_value=0, max_value=4))
        clock = 0.0
        for n in range(1, n_attempts + 1):
            last = n == n_attempts
            state = draw(st.sampled_from(list(AttemptState))) if last else AttemptState.FAILED
            begin = clock + draw(st.floats(min_value=0, max_value=120))
            end = begin + draw(st.floats(min_value=0, max_value=60))
            clock = end
            attempts.append(
                Attempt(
                    table=table,
                    number=n,
                    state=state,
                    started_at=at(begin),
                    finished_at=None if state is AttemptState.RUNNING else at(end),
                    failure_kind=draw(st.sampled_from(KINDS))
                    if state is AttemptState.FAILED
                    else None,
                )
            )
    policy = RunPolicy(
        concurrency=draw(st.integers(min_value=1, max_value=4)),
        fail_fast=draw(st.booleans()),
        auth_failed_threshold=draw(st.integers(min_value=0, max_value=3)),
    )
    now = at(draw(st.floats(min_value=0, max_value=2000)))
    return tables, attempts, policy, now, draw(st.booleans())


def _check_invariants(
    tables: list[str], attempts: list[Attempt], policy: RunPolicy, decision: Decision
) -> None:
    # Every table accounted for exactly once.
    assert sorted(decision.outcomes) == sorted(tables)
    assert all(o.table == key for key, o in decision.outcomes.items())
    # Never start an attempt that was observed, never twice, at most one per table.
    observed = {(a.table, a.number) for a in attempts}
    assert not observed & set(decision.start)
    assert len({t for t, _ in decision.start}) == len(decision.start)
    # Starting only ever takes the next number.
    for table, number in decision.start:
        before = max((a.number for a in attempts if a.table == table), default=0)
        assert number == before + 1
    # The concurrency bound holds (unless already exceeded by what runs).
    running = {(a.table, a.number) for a in attempts if a.state is AttemptState.RUNNING}
    running -= {(a.table, a.number) for a in attempts if a.state is not AttemptState.RUNNING}
    assert len(decision.start) <= max(policy.concurrency - len(running), 0)
    # Aborts only name running attempts; and finished means everything is terminal.
    assert set(decision.abort) <= running
    if decision.finished:
        assert not decision.start
        assert all(o.state in TERMINAL_STATES for o in decision.outcomes.values())
    # A copied table stays copied whatever else happens.
    for a in attempts:
        if a.state is AttemptState.COPIED:
            assert decision.outcomes[a.table].state is TableState.COPIED
    # Not-attempted tables never ran, or their last attempt was stopped by the run
    # before it committed (issue 10 case 3), and say why.
    for o in decision.outcomes.values():
        if o.state is TableState.NOT_ATTEMPTED:
            assert o.attempts == 0 or o.history[-1].state is AttemptState.STOPPED
            assert o.error


@given(histories())
@settings(max_examples=300, deadline=None)
def test_every_table_accounted_for_exactly_once(
    case: tuple[list[str], list[Attempt], RunPolicy, datetime, bool],
) -> None:
    tables, attempts, policy, now, cancelled = case
    decision = decide(tables, attempts, policy, now, cancelled=cancelled)
    _check_invariants(tables, attempts, policy, decision)


@given(histories(), st.randoms(use_true_random=False))
@settings(max_examples=200, deadline=None)
def test_duplicate_observation_of_the_same_attempt_is_idempotent(
    case: tuple[list[str], list[Attempt], RunPolicy, datetime, bool], rnd: object
) -> None:
    import random

    assert isinstance(rnd, random.Random)
    tables, attempts, policy, now, cancelled = case
    once = decide(tables, attempts, policy, now, cancelled=cancelled)
    # Repeat some observations (including a stale RUNNING view of finished attempts)
    # and shuffle the order: nothing may change.
    doubled = attempts + rnd.sample(attempts, k=len(attempts) // 2)
    stale = [
        Attempt(table=a.table, number=a.number, state=AttemptState.RUNNING, started_at=a.started_at)
        for a in attempts
        if a.state is not AttemptState.RUNNING
    ]
    mixed = doubled + stale
    rnd.shuffle(mixed)
    twice = decide(tables, mixed, policy, now, cancelled=cancelled)
    assert twice == once


@given(histories())
@settings(max_examples=200, deadline=None)
def test_an_attempt_never_started_twice(
    case: tuple[list[str], list[Attempt], RunPolicy, datetime, bool],
) -> None:
    """Carry out every decision (start = observe running) until the run is stable."""
    tables, attempts, policy, now, cancelled = case
    observed = list(attempts)
    started: set[tuple[str, int]] = set()
    for _ in range(20):
        decision = decide(tables, observed, policy, now, cancelled=cancelled)
        _check_invariants(tables, observed, policy, decision)
        for table, number in decision.start:
            assert (table, number) not in started
            started.add((table, number))
            observed.append(
                Attempt(table=table, number=number, state=AttemptState.RUNNING, started_at=now)
            )
        if not decision.start:
            break
    else:
        pytest.fail("decide kept starting attempts without any finishing")
