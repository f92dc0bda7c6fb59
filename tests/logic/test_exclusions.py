"""Excluded tables and zero-table plans in the pure core (issue 10, cases 7, 8, 9).

Checks: ``plan_exclusions`` applies the filter, drops planned asset keys and duplicates,
and tells a name no schema of the run has (``missing_from_source``) from one another
schema has (``not_in_schema``); ``no_tables_message`` flags an empty plan but not a
finished resume chain; the RunOutput lists exclusions (valid for Rocky's schema and
rocky-sdk) and the status counts them, bounded, with reason ``NoTablesMatched`` for an
empty plan; the discovery channel carries exclusions and still reads a bare list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from tests.local.helpers import validate_output

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.api.status import MAX_STATUS_ERRORS, RockyRunStatus
from rocky_operator.logic.decide import TableOutcome, TableState, decide
from rocky_operator.logic.policy import RunPolicy
from rocky_operator.logic.run_output import build_run_output
from rocky_operator.logic.status import REASON_NO_TABLES, build_status
from rocky_operator.logic.tables import (
    Exclusion,
    no_tables_message,
    plan_exclusions,
    plan_tables,
)
from rocky_runner.contract import TableResult
from rocky_runner.discovery_channel import decode_listing, encode_tables

START = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = RockyRunSpec.model_validate(
    {
        "adapter": {"type": "duckdb", "duckdb": {"path": "/data/w.duckdb"}},
        "source": {
            "schemaPattern": {"components": ["tenant", "source"]},
            "tables": ["orders", "payouts", "typo"],
        },
        "target": {"catalogTemplate": "{tenant}_wh", "schemaTemplate": "s_{source}"},
        "filter": "tenant=acme",
    }
)


@dataclass(frozen=True)
class Item:
    schema: str
    table: str
    components: dict[str, str] = field(default_factory=dict)
    reason: str = "missing_from_source"
    catalog: str | None = None


def item(tenant: str, source: str, table: str, reason: str = "missing_from_source") -> Item:
    return Item(f"src__{tenant}__{source}", table, {"tenant": tenant, "source": source}, reason)


def test_exclusions_follow_the_filter_and_tell_typos_from_other_sources() -> None:
    tables = plan_tables(
        SPEC,
        [item("acme", "shopify", "orders"), item("acme", "stripe", "payouts")],
    )
    excluded = plan_exclusions(
        SPEC,
        [
            item("acme", "shopify", "payouts"),  # stripe has it
            item("acme", "stripe", "orders"),  # shopify has it
            item("acme", "shopify", "typo"),
            item("acme", "stripe", "typo"),
            item("acme", "stripe", "typo"),  # twice: once in the output
            item("acme", "shopify", "orders"),  # planned: not excluded
            item("globex", "shopify", "typo"),  # outside the filter: never requested
            item("acme", "shopify", "v_daily", "view"),
        ],
        tables,
    )
    assert [("/".join(e.asset_key), e.reason) for e in excluded] == [
        ("duckdb/acme/shopify/payouts", "not_in_schema"),
        ("duckdb/acme/shopify/typo", "missing_from_source"),
        ("duckdb/acme/shopify/v_daily", "view"),
        ("duckdb/acme/stripe/orders", "not_in_schema"),
        ("duckdb/acme/stripe/typo", "missing_from_source"),
    ]
    assert excluded[1].source_schema == "src__acme__shopify"


def test_a_plan_of_zero_tables_is_flagged_but_a_finished_resume_is_not() -> None:
    excluded = [Exclusion(("duckdb", "acme", "shop", "typo"), "src__acme__shop", "typo", "x")]
    message = no_tables_message(SPEC, planned=0, resumed=0, excluded=excluded)
    assert message is not None
    assert "prefix 'src__'" in message
    assert "filter 'tenant=acme'" in message
    assert "3 name(s) in source.tables" in message
    assert "1 excluded (1 x" in message
    assert no_tables_message(SPEC, planned=0, resumed=4, excluded=[]) is None
    assert no_tables_message(SPEC, planned=1, resumed=0, excluded=[]) is None


def test_run_output_and_status_account_for_exclusions() -> None:
    tables = plan_tables(SPEC, [item("acme", "shopify", "orders")])
    key = tables[0].key
    result = TableResult(asset_key=list(tables[0].asset_key), outcome="copied", rows_copied=3)
    outcomes = {key: TableOutcome(key, TableState.COPIED, 1, result=result, started_at=START)}
    excluded = [
        Exclusion(("duckdb", "acme", "shopify", f"t{i:03d}"), "src__acme__shopify", f"t{i:03d}",
                  "missing_from_source")
        for i in range(150)
    ]  # fmt: skip
    doc = build_run_output(
        tables, outcomes, started_at=START, finished_at=START, filter="", excluded=excluded
    )
    parsed = validate_output(doc)
    assert len(parsed.excluded_tables) == 150
    assert doc["excluded_tables"][0] == {
        "asset_key": ["duckdb", "acme", "shopify", "t000"],
        "source_schema": "src__acme__shopify",
        "table_name": "t000",
        "reason": "missing_from_source",
    }
    assert doc["status"] == "Success"  # an exclusion is not a runtime failure (as Rocky)
    decision = decide([key], [], RunPolicy.from_spec(SPEC), START)
    status = build_status(
        decision=replace(decision, finished=True, outcomes=outcomes),
        attempts=[],
        resumed=0,
        previous=RockyRunStatus(),
        generation=1,
        start_time=START,
        now=START,
        run_output=doc,
        excluded=len(excluded),
    )
    assert status.tables.excluded == 150
    assert status.run_output is not None
    assert len(status.run_output["excluded_tables"]) == MAX_STATUS_ERRORS
    assert status.run_output_truncated
    assert "150 excluded" in (status.message or "")


def test_an_empty_plan_sets_no_tables_matched_on_every_condition() -> None:
    decision = decide([], [], RunPolicy.from_spec(SPEC), START)
    status = build_status(
        decision=decision,
        attempts=[],
        resumed=0,
        previous=RockyRunStatus(),
        generation=1,
        start_time=START,
        now=START,
        no_tables="no tables matched: schema pattern prefix 'raw__'",
    )
    assert (status.phase, status.exit_code) == ("Succeeded", 0)
    reasons = {c.type: (c.status, c.reason) for c in status.conditions}
    assert reasons["Complete"] == ("True", REASON_NO_TABLES)
    assert reasons["Accepted"] == ("True", REASON_NO_TABLES)
    assert reasons["Failed"] == ("False", REASON_NO_TABLES)


def test_the_discovery_channel_carries_exclusions_and_reads_old_answers() -> None:
    tables = [item("acme", "shopify", "orders")]
    left_out = [item("acme", "shopify", "v_daily", "view")]
    lines, summary = encode_tables(tables, left_out)
    assert summary["excluded"] == 1
    listing = decode_listing("noise\n" + "\n".join(lines), json.loads(json.dumps(summary)))
    assert [(t.schema, t.table) for t in listing.tables] == [("src__acme__shopify", "orders")]
    assert [(e.table, e.reason, e.components) for e in listing.excluded] == [
        ("v_daily", "view", {"tenant": "acme", "source": "shopify"})
    ]
    # A runner image from before exclusions answers a bare list and no "excluded" count.
    import base64
    import gzip
    import hashlib

    packed = gzip.compress(json.dumps([[None, "s", "t", {}]]).encode(), mtime=0)
    old = {"outcome": "discovered", "tables": 1, "chunks": 1,
           "sha256": hashlib.sha256(packed).hexdigest()}  # fmt: skip
    legacy = decode_listing(f"rocky-discovery-v1 0 {base64.b64encode(packed).decode()}", old)
    assert [t.table for t in legacy.tables] == ["t"]
    assert legacy.excluded == []
