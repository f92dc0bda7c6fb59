"""RunOutput assembly: schema-valid, parseable by rocky-sdk, every table exactly once.

Outcomes come from the real decision core (``decide``) over observed attempts, the
document is validated against Rocky's published JSON schema and parsed with
``rocky_sdk.parse_rocky_output``, and the status / exit code follow ``rocky run``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import rocky_sdk
from hypothesis import given, settings
from hypothesis import strategies as st
from rocky_sdk.types import RunResult
from tests.support.rocky_schema import rocky_schema

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.logic.decide import Attempt, AttemptState, decide
from rocky_operator.logic.policy import RunPolicy
from rocky_operator.logic.run_output import (
    build_failed_run_output,
    build_run_output,
    exit_code,
    run_output_status,
    run_status,
)
from rocky_operator.logic.tables import PlannedTable, plan_tables
from rocky_runner.contract import FailureKind, TableResult

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def validate(doc: dict[str, Any]) -> RunResult:
    """Validate against the schema (formats checked) and parse with rocky-sdk."""
    jsonschema.Draft7Validator(rocky_schema(), format_checker=jsonschema.FormatChecker()).validate(
        doc
    )
    parsed = rocky_sdk.parse_rocky_output(json.dumps(doc))
    assert isinstance(parsed, RunResult)
    return parsed


class Found:
    def __init__(self, tenant: str, source: str, table: str) -> None:
        self.catalog = None
        self.schema = f"src__{tenant}__{source}"
        self.table = table
        self.components = {"tenant": tenant, "source": source}


SPEC = RockyRunSpec.model_validate(
    {
        "adapter": {"type": "duckdb", "duckdb": {"path": "/data/w.duckdb"}},
        "source": {"schemaPattern": {"components": ["tenant", "source"]}},
        "target": {"catalogTemplate": "wh", "schemaTemplate": "{tenant}__{source}"},
        "strategy": "incremental",
    }
)


def tables(n: int) -> list[PlannedTable]:
    return plan_tables(SPEC, [Found("acme", "shop", f"t{i:02d}") for i in range(n)])


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def copied(table: PlannedTable, n: int = 1, rows: int = 10) -> Attempt:
    result = TableResult(
        asset_key=list(table.asset_key),
        outcome="copied",
        rows_copied=rows,
        duration_ms=123,
        metadata={
            "strategy": "incremental",
            "watermark": "2026-11-28T10:00:00",
            "target_table_full_name": table.task.target.full_name(),
            "column_count": 5,
        },
    )
    return Attempt(table.key, n, AttemptState.COPIED, at(n * 100), at(n * 100 + 1), result=result)


def failed(table: PlannedTable, kind: FailureKind, n: int = 1) -> Attempt:
    return Attempt(
        table.key,
        n,
        AttemptState.FAILED,
        at(n * 100),
        at(n * 100 + 1),
        failure_kind=kind,
        error=f"boom ({kind})",
    )


def output_for(
    planned: Sequence[PlannedTable],
    attempts: Sequence[Attempt],
    policy: RunPolicy | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    decision = decide([t.key for t in planned], attempts, policy or RunPolicy(), at(10_000))
    return build_run_output(
        planned,
        decision.outcomes,
        started_at=T0,
        finished_at=at(10_001),
        filter="tenant=acme",
        concurrency=4,
        **kwargs,
    )


def accounted(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    keys = [tuple(m["asset_key"]) for m in doc["materializations"]]
    keys += [tuple(e["asset_key"]) for e in doc["errors"]]
    keys += [tuple(c["model"].split("/")) for c in doc.get("contained", [])]
    return keys


def test_all_copied_is_success_exit_0() -> None:
    planned = tables(3)
    doc = output_for(planned, [copied(t) for t in planned])
    parsed = validate(doc)
    assert doc["status"] == "Success"
    assert run_output_status(doc) == "success"
    assert exit_code(doc["status"]) == 0
    assert parsed.tables_copied == 3
    assert parsed.materializations[0].metadata.column_count == 5
    assert parsed.materializations[0].metadata.target_table_full_name == "wh.acme__shop.t00"
    assert parsed.materializations[0].rows_copied == 10
    assert parsed.materializations[0].tenant == "acme"


def test_partial_failure_lists_errors_with_kinds() -> None:
    planned = tables(4)
    attempts = [
        copied(planned[0]),
        failed(planned[1], FailureKind.NOT_FOUND),
        failed(planned[2], FailureKind.QUERY_REJECTED),
        copied(planned[3]),
    ]
    doc = output_for(planned, attempts)
    parsed = validate(doc)
    assert (doc["status"], exit_code(doc["status"])) == ("PartialFailure", 2)
    assert sorted(e.failure_kind for e in parsed.errors) == ["not-found", "query-rejected"]
    assert parsed.tables_failed == 2
    assert sorted(accounted(doc)) == sorted(t.asset_key for t in planned)


def test_all_failed_is_failure_exit_1() -> None:
    planned = tables(2)
    doc = output_for(planned, [failed(t, FailureKind.UNKNOWN) for t in planned])
    validate(doc)
    assert (doc["status"], exit_code(doc["status"])) == ("Failure", 1)


def test_retried_table_carries_its_attempt_trail() -> None:
    planned = tables(1)
    attempts = [failed(planned[0], FailureKind.TRANSIENT, 1), copied(planned[0], 2)]
    doc = output_for(planned, attempts)
    parsed = validate(doc)
    trail = parsed.materializations[0].attempts
    assert [(a.attempt, a.outcome) for a in trail] == [(1, "failed"), (2, "success")]
    assert trail[0].failure_class == "transient"
    assert trail[0].backoff_ms == 99_000


def test_not_attempted_tables_are_counted_with_the_reason_visible() -> None:
    planned = tables(5)
    attempts = [copied(planned[0]), failed(planned[1], FailureKind.AUTH_FAILED)]
    doc = output_for(planned, attempts, RunPolicy(fail_fast=True))
    parsed = validate(doc)
    assert parsed.tables_skipped == 3
    assert len(parsed.contained) == 3
    blocked = "/".join(planned[1].asset_key)
    for entry in parsed.contained:
        assert entry.blocked_by == [blocked]
        assert "fail-fast" in entry.unblock_hint
    assert doc["status"] == "PartialFailure"
    assert sorted(accounted(doc)) == sorted(t.asset_key for t in planned)


def test_breaker_tables_are_auth_failed_errors_saying_not_attempted() -> None:
    planned = tables(5)
    attempts = [failed(t, FailureKind.AUTH_FAILED) for t in planned[:3]]
    doc = output_for(planned, attempts)
    parsed = validate(doc)
    assert parsed.tables_failed == 5
    assert all(e.failure_kind == "auth-failed" for e in parsed.errors)
    never = [e for e in parsed.errors if "not attempted" in e.error]
    assert len(never) == 2
    assert doc["execution"]["tables_failed"] == 3
    assert (doc["status"], exit_code(doc["status"])) == ("Failure", 1)


def test_nothing_could_run_is_failure() -> None:
    doc = build_failed_run_output(
        "discovery failed: connection refused",
        started_at=T0,
        finished_at=at(1),
        failure_kind=FailureKind.CONNECTION_FAILED,
    )
    parsed = validate(doc)
    assert exit_code(doc["status"]) == 1
    assert parsed.errors[0].failure_kind == "connection-failed"


def test_resumed_from_and_interrupted_are_carried() -> None:
    planned = tables(1)
    doc = output_for(planned, [copied(planned[0])], resumed_from="prev.json", interrupted=True)
    parsed = validate(doc)
    assert parsed.resumed_from == "prev.json"
    assert parsed.interrupted is True


def test_non_timestamp_watermark_is_dropped_not_invalid() -> None:
    planned = tables(1)
    attempt = copied(planned[0])
    assert attempt.result is not None
    weird = attempt.result.model_copy(update={"metadata": {"watermark": "42", "column_count": -1}})
    doc = output_for(planned, [Attempt(**{**attempt.__dict__, "result": weird})])
    parsed = validate(doc)
    assert parsed.materializations[0].metadata.watermark is None
    assert parsed.materializations[0].metadata.column_count is None


@pytest.mark.parametrize(
    ("counts", "status", "code"),
    [
        ((3, 0, 0), "success", 0),
        ((0, 0, 0), "success", 0),
        ((2, 1, 0), "partial_failure", 2),
        ((2, 0, 1), "partial_failure", 2),
        ((0, 3, 0), "failure", 1),
        ((0, 1, 2), "failure", 1),
        ((0, 0, 2), "failure", 1),
    ],
)
def test_status_and_exit_code(counts: tuple[int, int, int], status: str, code: int) -> None:
    assert run_status(*counts) == status
    assert exit_code(status) == code


STATES = st.sampled_from(["copied", "failed", "running", "none"])
KINDS = st.sampled_from([k for k in FailureKind if k is not FailureKind.COMPILE_ERROR])


@given(st.lists(st.tuples(STATES, KINDS), min_size=0, max_size=12), st.booleans())
@settings(max_examples=100, deadline=None)
def test_every_table_exactly_once(cases: list[tuple[str, FailureKind]], fail_fast: bool) -> None:
    planned = tables(len(cases))
    attempts: list[Attempt] = []
    for table, (state, kind) in zip(planned, cases, strict=True):
        if state == "copied":
            attempts.append(copied(table))
        elif state == "failed":
            attempts.append(failed(table, kind))
        elif state == "running":
            attempts.append(Attempt(table.key, 1, AttemptState.RUNNING, at(1)))
    doc = output_for(planned, attempts, RunPolicy(concurrency=3, fail_fast=fail_fast))
    validate(doc)
    assert sorted(accounted(doc)) == sorted(t.asset_key for t in planned)
    total = doc["tables_copied"] + doc["tables_failed"] + doc["tables_skipped"]
    assert total == len(planned)


def test_drift_reported_by_the_runner_is_summarised() -> None:
    planned = tables(2)
    attempt = copied(planned[0])
    assert attempt.result is not None
    drifted = attempt.result.model_copy(
        update={
            "metadata": {
                **attempt.result.metadata,
                "drift": ["add_column note VARCHAR", "widen_column n INTEGER -> BIGINT"],
            }
        }
    )
    doc = output_for(
        planned, [Attempt(**{**attempt.__dict__, "result": drifted}), copied(planned[1])]
    )
    parsed = validate(doc)
    assert parsed.drift.tables_checked == 2
    assert parsed.drift.tables_drifted == 1
    assert [(a.action, a.reason) for a in parsed.drift.actions_taken] == [
        ("add_column", "note VARCHAR"),
        ("widen_column", "n INTEGER -> BIGINT"),
    ]
