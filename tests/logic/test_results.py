"""Checked runner results (issue 10 cases 3 and 6) and stopped attempts in decide.

Checks: a result whose values are out of range, or whose outcome disagrees with the
runner's exit code, or that names another table, becomes a failed ``unknown`` attempt
stating both facts, locally and from a pod; a consistent one passes unchanged; signal
deaths are not the runner's answer. An attempt the run stopped before it committed is
STOPPED, and a fail-fast run counts its table as not attempted, blocked by the failure.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rocky_operator.logic.decide import Attempt, AttemptState, TableState, decide
from rocky_operator.logic.pod_manifest import pod_labels
from rocky_operator.logic.pods import ANNOTATION_ASSET_KEY, classify_pod
from rocky_operator.logic.policy import RunPolicy
from rocky_operator.logic.results import result_attempt, stopped_by_run
from rocky_runner.contract import FailureKind, TableResult

T0 = datetime(2026, 12, 1, tzinfo=UTC)
KEY = ["duckdb", "acme", "shop", "orders"]


def _attempt(result: TableResult, code: int | None) -> Attempt:
    return result_attempt(
        table="k",
        number=1,
        started_at=T0,
        finished_at=T0,
        result=result,
        exit_code=code,
        asset_key=KEY,
    )


def copied(rows: int = 3) -> TableResult:
    return TableResult(asset_key=KEY, outcome="copied", rows_copied=rows)


def failed(kind: FailureKind) -> TableResult:
    return TableResult(asset_key=KEY, outcome="failed", failure_kind=kind, error="boom")


@pytest.mark.parametrize(
    ("result", "code", "fact"),
    [
        (copied(-5), 0, "rows_copied is -5"),
        (copied(), 12, "exited 12"),
        (failed(FailureKind.QUERY_REJECTED), 0, "exits 12, but the runner exited 0"),
        (failed(FailureKind.TRANSIENT), 15, "exited 15"),
        (TableResult(asset_key=["duckdb", "x"], outcome="copied", rows_copied=1), 0, "x"),
    ],
)
def test_disagreement_fails_as_unknown_with_both_facts(
    result: TableResult, code: int, fact: str
) -> None:
    attempt = _attempt(result, code)
    assert attempt.state is AttemptState.FAILED
    assert attempt.failure_kind is FailureKind.UNKNOWN
    assert attempt.error is not None
    assert fact in attempt.error
    assert f"outcome {result.outcome}" in attempt.error


@pytest.mark.parametrize(
    ("result", "code", "state"),
    [
        (copied(), 0, AttemptState.COPIED),
        (copied(), None, AttemptState.COPIED),
        (copied(), -9, AttemptState.COPIED),  # killed after it wrote: not its answer
        (failed(FailureKind.NOT_FOUND), 15, AttemptState.FAILED),
    ],
)
def test_consistent_results_pass(result: TableResult, code: int | None, state: str) -> None:
    attempt = _attempt(result, code)
    assert attempt.state is state
    assert attempt.result == result


def test_a_pod_result_is_checked_against_its_exit_code() -> None:
    message = json.dumps(
        {"v": 1, "asset_key": KEY, "outcome": "copied", "rows_copied": -5, "duration_ms": 1}
    )
    pod = {
        "metadata": {
            "name": "run-k-1",
            "labels": pod_labels("run", "k", 1),
            "annotations": {ANNOTATION_ASSET_KEY: json.dumps(KEY)},
        },
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "runner",
                    "state": {"terminated": {"exitCode": 12, "message": message}},
                }
            ],
        },
    }
    attempt = classify_pod(pod, T0)
    assert attempt is not None
    assert attempt.failure_kind is FailureKind.UNKNOWN
    assert attempt.error is not None
    assert "rows_copied is -5" in attempt.error
    assert "exited 12" in attempt.error


def test_stopped_by_run() -> None:
    base = Attempt("k", 1, AttemptState.FAILED, T0, T0, FailureKind.TRANSIENT, "SIGTERM")
    assert stopped_by_run(base).state is AttemptState.STOPPED
    own = Attempt("k", 1, AttemptState.FAILED, T0, T0, FailureKind.QUERY_REJECTED, "bad")
    assert stopped_by_run(own) == own
    done = Attempt("k", 1, AttemptState.COPIED, T0, T0)
    assert stopped_by_run(done) == done


def test_fail_fast_counts_a_stopped_attempt_as_not_attempted() -> None:
    later = T0 + timedelta(seconds=5)
    attempts = [
        Attempt("a", 1, AttemptState.FAILED, T0, later, FailureKind.QUERY_REJECTED, "bad"),
        Attempt("b", 1, AttemptState.STOPPED, T0, later, error="stopped"),
        Attempt("c", 1, AttemptState.COPIED, T0, later),
    ]
    decision = decide(["a", "b", "c", "d"], attempts, RunPolicy(fail_fast=True), later)
    assert decision.finished
    states = {k: o.state for k, o in decision.outcomes.items()}
    assert states == {
        "a": TableState.FAILED,
        "b": TableState.NOT_ATTEMPTED,
        "c": TableState.COPIED,
        "d": TableState.NOT_ATTEMPTED,
    }
    b = decision.outcomes["b"]
    assert b.blocked_by == ("a",)
    assert b.error is not None
    assert "stopped in flight" in b.error
    # A commit reported after the stop wins.
    upgraded = [*attempts, Attempt("b", 1, AttemptState.COPIED, T0, later)]
    assert decide(["a", "b"], upgraded, RunPolicy(fail_fast=True), later).outcomes["b"].state is (
        TableState.COPIED
    )
