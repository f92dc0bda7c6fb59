"""Planning: filter, target templates, asset keys, table keys and attempt names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.logic.tables import attempt_name, plan_tables, table_key


@dataclass(frozen=True)
class Found:
    schema: str
    table: str
    components: dict[str, str] = field(default_factory=dict)
    catalog: str | None = None


SPEC = RockyRunSpec.model_validate(
    {
        "adapter": {"type": "duckdb", "duckdb": {"path": "/data/w.duckdb"}},
        "source": {"schemaPattern": {"components": ["tenant", "region", "source"]}},
        "target": {
            "catalogTemplate": "{tenant}_warehouse",
            "schemaTemplate": "staging__{region}__{source}",
        },
        "filter": "tenant=acme",
        "strategy": "full_refresh",
        "metadataColumns": [{"name": "_loaded_by", "type": "VARCHAR", "value": "'rocky'"}],
    }
)


def found(tenant: str, region: str, source: str, table: str) -> Found:
    return Found(
        schema=f"src__{tenant}__{region}__{source}",
        table=table,
        components={"tenant": tenant, "region": region, "source": source},
    )


def test_plan_applies_filter_templates_and_asset_key() -> None:
    planned = plan_tables(
        SPEC,
        [
            found("globex", "eu", "stripe", "charges"),
            found("acme", "us_west", "shopify", "orders"),
            found("acme", "eu", "stripe", "charges"),
            found("acme", "us_west", "shopify", "orders"),  # discovered twice
        ],
    )
    assert [p.asset_key for p in planned] == [
        ("duckdb", "acme", "eu", "stripe", "charges"),
        ("duckdb", "acme", "us_west", "shopify", "orders"),
    ]
    orders = planned[1]
    assert orders.key == table_key(orders.asset_key)
    assert orders.task.source.full_name() == "src__acme__us_west__shopify.orders"
    assert orders.task.target.full_name() == "acme_warehouse.staging__us_west__shopify.orders"
    assert orders.task.strategy == "full_refresh"
    assert orders.task.metadata_columns[0].name == "_loaded_by"
    assert orders.task.adapter == {
        "type": "duckdb",
        "duckdb": {
            "path": "/data/w.duckdb",
            "lockTimeoutSeconds": 60.0,
            "memoryLimit": None,
            "storageVersion": None,
        },
    }
    assert dict(orders.components) == {"tenant": "acme", "region": "us_west", "source": "shopify"}


def test_table_key_is_stable_and_distinct() -> None:
    assert table_key(["duckdb", "a", "t"]) == table_key(("duckdb", "a", "t"))
    assert re.fullmatch(r"[0-9a-f]{10}", table_key(["duckdb", "a", "t"]))
    assert table_key(["duckdb", "a", "t"]) != table_key(["duckdb", "a,t"])


@given(
    st.text(min_size=0, max_size=300),
    st.text(alphabet="0123456789abcdef", min_size=10, max_size=10),
    st.integers(min_value=1, max_value=10**6),
)
def test_attempt_name_is_dns_safe_and_keeps_key_and_number(run: str, key: str, n: int) -> None:
    name = attempt_name(run, key, n)
    assert len(name) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
    assert name.endswith(f"{key}-{n}")


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        ("nightly", "nightly-0123456789-1"),
        ("Nightly.Run_2", "nightly-run-2-0123456789-1"),
        ("x" * 70, "x" * 50 + "-0123456789-1"),
        ("x" * 49 + "-y", "x" * 49 + "-0123456789-1"),
    ],
)
def test_attempt_name_examples(run: str, expected: str) -> None:
    assert attempt_name(run, "0123456789", 1) == expected


def test_filter_values_match_case_insensitively() -> None:
    """Snowflake's upper-case schema names are selected by a lower-case filter."""
    planned = plan_tables(
        SPEC,
        [found("ACME", "US_WEST", "SHOPIFY", "ORDERS"), found("GLOBEX", "EU", "STRIPE", "X")],
    )
    assert [p.asset_key for p in planned] == [("duckdb", "ACME", "US_WEST", "SHOPIFY", "ORDERS")]
