"""The resume chain (issue 10 case 12): what a RunOutput says about every table the chain
of runs up to it has seen, and what a resumed run carries on."""

from __future__ import annotations

from typing import Any

import pytest

from rocky_operator.logic.resume_chain import Failure, carried_fields, read_chain
from rocky_operator.logic.status import MAX_STATUS_MATERIALIZATIONS, bound_run_output
from rocky_runner.contract import FailureKind

A, B, C, D = (["duckdb", "acme", "shop", t] for t in "abcd")


def output(**fields: Any) -> dict[str, Any]:
    return {"command": "run", "materializations": [], "errors": [], **fields}


def test_a_first_run_reads_as_its_materializations_and_table_errors() -> None:
    chain = read_chain(
        output(
            materializations=[{"asset_key": A}],
            errors=[
                {"asset_key": B, "error": "lock", "failure_kind": "transient"},
                {"asset_key": [], "error": "run-level", "failure_kind": "unknown"},
            ],
        )
    )
    assert chain.copied == {tuple(A)}
    assert chain.failed == {tuple(B): Failure(FailureKind.TRANSIENT, "lock")}


def test_a_resumed_run_adds_what_it_carried_and_its_own_results_win() -> None:
    doc = output(
        materializations=[{"asset_key": B}],
        errors=[{"asset_key": C, "error": "now", "failure_kind": "query-rejected"}],
        carried_copied=[A],
        carried_failed=[
            {"asset_key": C, "error": "before", "failure_kind": "auth-failed"},
            {"asset_key": D, "error": "token", "failure_kind": "auth-failed"},
            {"asset_key": B, "error": "was", "failure_kind": "transient"},
        ],
    )
    chain = read_chain(doc)
    assert chain.copied == {tuple(A), tuple(B)}
    assert chain.failed == {
        tuple(C): Failure(FailureKind.QUERY_REJECTED, "now"),
        tuple(D): Failure(FailureKind.AUTH_FAILED, "token"),
    }
    # The next resume retries C only: it carries every copy and D's failure.
    assert carried_fields(chain, [tuple(C)]) == {
        "carried_copied": [A, B],
        "carried_failed": [{"asset_key": D, "error": "token", "failure_kind": "auth-failed"}],
    }
    assert carried_fields(read_chain(output()), []) == {}


@pytest.mark.parametrize(
    "doc",
    [
        output(carried_copied=["duckdb/acme"]),
        output(carried_failed=[{"asset_key": "x"}]),
        output(errors="nope"),
    ],
)
def test_a_malformed_chain_is_a_value_error(doc: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"asset_key|must be a list"):
        read_chain(doc)


def test_status_keeps_the_first_carried_entries() -> None:
    many = [["duckdb", "acme", "shop", f"t{i}"] for i in range(MAX_STATUS_MATERIALIZATIONS + 5)]
    bounded, truncated = bound_run_output(output(carried_copied=many))
    assert truncated
    assert bounded["carried_copied"] == many[:MAX_STATUS_MATERIALIZATIONS]
