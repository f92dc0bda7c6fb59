"""The incremental decision core answers exactly what the full recomputation answers.

``IncrementalDecider`` (issue 13 goal 3) keeps indexes instead of re-examining every
table on every pass. Its contract is ``decide()``'s: for the attempts observed so far,
in the order observed, the same starts, aborts, outcomes (with histories), finished
flag, wake-up time and reason. Checked on random histories fed in random batches, with
random write groups, policies, clocks and cancellations, and on simulated runs where the
decisions' starts are observed and finish with random outcomes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rocky_operator.logic.decide import Attempt, AttemptState, Decision, decide
from rocky_operator.logic.decide_incremental import IncrementalDecider
from rocky_operator.logic.policy import RetryRule, RunPolicy
from rocky_operator.logic.write_groups import FileAccess
from rocky_runner.contract import FailureKind

T0 = datetime(2026, 12, 2, tzinfo=UTC)
KINDS = [None, *FailureKind]
FILES = ["/w/main.duckdb", "/w/a.duckdb", "/w/b.duckdb"]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def assert_same(incremental: Decision, full: Decision) -> None:
    assert incremental.start == full.start
    assert incremental.abort == full.abort
    assert incremental.finished == full.finished
    assert incremental.requeue_at == full.requeue_at
    assert incremental.reason == full.reason
    assert dict(incremental.outcomes) == dict(full.outcomes)
    for key, outcome in full.outcomes.items():
        assert incremental.outcomes[key].history == outcome.history, key


access_strategy = st.one_of(
    st.none(),
    st.builds(
        lambda w, r: FileAccess(writes=frozenset({w}), reads=frozenset(r) - {w}),
        st.sampled_from(FILES),
        st.sets(st.sampled_from(FILES), max_size=2),
    ),
)

policy_strategy = st.builds(
    RunPolicy,
    concurrency=st.integers(min_value=1, max_value=4),
    fail_fast=st.booleans(),
    retry=st.fixed_dictionaries(
        {
            FailureKind.TRANSIENT: st.builds(
                RetryRule,
                st.integers(min_value=0, max_value=3),
                st.sampled_from([0.0, 5.0, 30.0]),
                st.sampled_from([0.0, 60.0]),
            ),
            FailureKind.AUTH_FAILED: st.just(RetryRule(1, 1.0, 1.0)),
        }
    ),
    auth_failed_threshold=st.integers(min_value=0, max_value=3),
)


@st.composite
def attempt_strategy(draw: st.DrawFn, tables: list[str]) -> Attempt:
    state = draw(st.sampled_from(list(AttemptState)))
    begin = draw(st.floats(min_value=0, max_value=300))
    end = None if state is AttemptState.RUNNING else begin + draw(st.sampled_from([0, 1, 40]))
    kind = draw(st.sampled_from(KINDS)) if state is AttemptState.FAILED else None
    return Attempt(
        table=draw(st.sampled_from([*tables, "not-in-run"])),
        number=draw(st.integers(min_value=1, max_value=4)),
        state=state,
        started_at=at(begin),
        finished_at=at(end) if end is not None else None,
        failure_kind=kind,
        error=f"error {draw(st.integers(0, 3))}" if state is AttemptState.FAILED else None,
    )


#: A run's tables, their file access, its policy, and batches of observed attempts.
History = tuple[list[str], dict[str, FileAccess], RunPolicy, list[list[Attempt]]]

#: A clock (seconds after T0) and a cancelled flag per batch of a history.
clocks_strategy = st.lists(st.tuples(st.floats(0, 600), st.booleans()), min_size=6, max_size=6)


@st.composite
def histories(draw: st.DrawFn) -> History:
    tables = [f"t{i}" for i in range(draw(st.integers(min_value=0, max_value=7)))]
    files = {t: a for t in tables if (a := draw(access_strategy)) is not None}
    batches = draw(
        st.lists(st.lists(attempt_strategy(tables or ["x"]), max_size=5), min_size=1, max_size=6)
    )
    return tables, files, draw(policy_strategy), batches


def replay(
    history: History, clocks: Sequence[tuple[float, bool]]
) -> Iterator[tuple[IncrementalDecider, list[Attempt], list[Attempt], datetime, bool]]:
    """A new decider observes the history's batches in turn; after each: the decider, the
    batch, every attempt observed so far (in order), the batch's clock and cancelled flag."""
    tables, files, policy, batches = history
    decider = IncrementalDecider(tables, policy, files=files)
    seen: list[Attempt] = []
    for batch, (seconds, cancelled) in zip(batches, clocks, strict=False):
        decider.observe(batch)
        seen.extend(batch)
        yield decider, batch, seen, at(seconds), cancelled


@given(histories(), clocks_strategy)
@settings(max_examples=400, deadline=None)
def test_incremental_equals_full_recomputation_on_random_histories(
    history: History, clocks: list[tuple[float, bool]]
) -> None:
    tables, files, policy, _batches = history
    for decider, _batch, seen, now, cancelled in replay(history, clocks):
        full = decide(tables, seen, policy, now, cancelled=cancelled, files=files)
        assert_same(decider.decide(now, cancelled=cancelled), full)
        # Level-based: deciding again without observing answers the same.
        assert_same(decider.decide(now, cancelled=cancelled), full)


@given(histories(), st.lists(st.floats(0, 600), min_size=6, max_size=6))
@settings(max_examples=200, deadline=None)
def test_incremental_equals_full_recomputation_when_halted(
    history: History, clocks: list[float]
) -> None:
    """A halt (the runner policy refusing the frozen spec after a restart) decides alike."""
    tables, files, policy, _batches = history
    halt = "spec.runner.image: image 'evil.io/x:1' is not allowed"
    for decider, _batch, seen, now, _ in replay(history, [(s, False) for s in clocks]):
        full = decide(tables, seen, policy, now, halt=halt, files=files)
        assert_same(decider.decide(now, halt=halt), full)
        assert full.start == ()
        assert full.reason == halt


@given(
    st.integers(min_value=0, max_value=25),
    policy_strategy,
    st.dictionaries(st.integers(0, 25), access_strategy),
    st.randoms(use_true_random=False),
)
@settings(max_examples=150, deadline=None)
def test_incremental_equals_full_recomputation_along_a_simulated_run(
    n_tables: int,
    policy: RunPolicy,
    access: dict[int, FileAccess | None],
    rng: random.Random,
) -> None:
    """A driver like the executors': starts are observed running, then finish at random."""
    tables = [f"t{i:02d}" for i in range(n_tables)]
    files = {f"t{i:02d}": a for i, a in access.items() if a is not None and i < n_tables}
    decider = IncrementalDecider(tables, policy, files=files)
    seen: list[Attempt] = []
    running: dict[tuple[str, int], Attempt] = {}
    clock = 0.0
    for _ in range(200):
        now = at(clock)
        cancelled = rng.random() < 0.02
        incremental = decider.decide(now, cancelled=cancelled)
        assert_same(
            incremental, decide(tables, seen, policy, now, cancelled=cancelled, files=files)
        )
        if incremental.finished:
            break
        new: list[Attempt] = []
        for key, number in incremental.start:
            attempt = Attempt(key, number, AttemptState.RUNNING, started_at=now)
            running[(key, number)] = attempt
            new.append(attempt)
        for ident in incremental.abort:
            stopped = running.pop(ident)
            new.append(
                Attempt(
                    ident[0],
                    ident[1],
                    AttemptState.FAILED,
                    stopped.started_at,
                    now,
                    FailureKind.TRANSIENT,
                    "aborted",
                )
            )
        for ident in list(running):
            if rng.random() < 0.4:
                started = running.pop(ident).started_at
                if rng.random() < 0.6:
                    new.append(Attempt(*ident, AttemptState.COPIED, started, now))
                else:
                    kind = rng.choice([FailureKind.TRANSIENT, FailureKind.AUTH_FAILED, None])
                    new.append(Attempt(*ident, AttemptState.FAILED, started, now, kind, "x"))
        if rng.random() < 0.2 and seen:
            new.append(rng.choice(seen))  # a repeated, stale observation
        decider.observe(new)
        seen.extend(new)
        clock += rng.choice([0.0, 1.0, 7.0, 40.0])
    else:
        pytest.fail("the simulated run did not finish in 200 passes")


def test_a_decision_read_after_a_later_observe_is_refused() -> None:
    decider = IncrementalDecider(["a", "b"], RunPolicy(concurrency=1))
    decision = decider.decide(T0)
    assert decision.start == (("a", 1),)
    decider.observe([Attempt("a", 1, AttemptState.RUNNING, T0)])
    with pytest.raises(RuntimeError, match="later observe"):
        decision.outcomes["a"]
