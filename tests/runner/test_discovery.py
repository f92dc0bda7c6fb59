"""Discovery on a real DuckDB file: schema pattern parsing, table listing, explicit
table narrowing, catalogs, and errors surfacing as classifiable exceptions."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from rocky_runner.classify import classify_exception
from rocky_runner.contract import FailureKind
from rocky_runner.discovery import DiscoveredTable, discover_tables, parse_schema_name

COMPONENTS = ["tenant", "region", "source"]


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (
            "src__acme__us_west__shopify",
            {"tenant": "acme", "region": "us_west", "source": "shopify"},
        ),
        ("src__acme__us_west", None),
        ("src__acme__us_west__shopify__extra", None),
        ("src__acme____shopify", None),
        ("raw__acme__us_west__shopify", None),
        # Snowflake stores unquoted names in upper case: the pattern still matches and the
        # values keep the warehouse's spelling.
        (
            "SRC__ACME__US_WEST__SHOPIFY",
            {"tenant": "ACME", "region": "US_WEST", "source": "SHOPIFY"},
        ),
        ("main", None),
    ],
)
def test_parse_schema_name(schema: str, expected: dict[str, str] | None) -> None:
    assert (
        parse_schema_name(schema, prefix="src__", separator="__", components=COMPONENTS) == expected
    )


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    path = tmp_path / "lake.duckdb"
    with duckdb.connect(str(path)) as conn:
        for schema, tables in {
            "src__acme__us_west__shopify": ["orders", "customers"],
            "src__acme__eu__stripe": ["charges", "Orders"],
            "src__globex__us_east__shopify": ["orders"],
            "src__broken": ["orders"],
            "staging": ["orders"],
        }.items():
            conn.execute(f'CREATE SCHEMA "{schema}"')
            for table in tables:
                conn.execute(f'CREATE TABLE "{schema}"."{table}" (id INTEGER)')
        conn.execute('CREATE VIEW "src__acme__eu__stripe".v AS SELECT 1 AS x')
    return path


def settings(path: Path) -> dict[str, object]:
    return {"type": "duckdb", "duckdb": {"path": str(path), "lockTimeoutSeconds": 5}}


def test_discovers_every_table_of_matching_schemas(lake: Path) -> None:
    found = discover_tables(settings(lake), prefix="src__", separator="__", components=COMPONENTS)
    assert [(t.schema, t.table) for t in found] == [
        ("src__acme__eu__stripe", "Orders"),
        ("src__acme__eu__stripe", "charges"),
        ("src__acme__us_west__shopify", "customers"),
        ("src__acme__us_west__shopify", "orders"),
        ("src__globex__us_east__shopify", "orders"),
    ]
    assert found[0] == DiscoveredTable(
        "lake",
        "src__acme__eu__stripe",
        "Orders",
        {"tenant": "acme", "region": "eu", "source": "stripe"},
    )


def test_explicit_tables_narrow_case_insensitively(lake: Path) -> None:
    found = discover_tables(
        settings(lake), prefix="src__", separator="__", components=COMPONENTS, tables=["ORDERS"]
    )
    assert {(t.schema, t.table) for t in found} == {
        ("src__acme__eu__stripe", "Orders"),
        ("src__acme__us_west__shopify", "orders"),
        ("src__globex__us_east__shopify", "orders"),
    }


def test_attached_catalog_by_name(lake: Path) -> None:
    other = lake.with_name("other.duckdb")
    with duckdb.connect(str(other)) as conn:
        conn.execute("CREATE SCHEMA src__x; CREATE TABLE src__x.t (i INTEGER)")
    found = discover_tables(
        settings(lake), prefix="src__", separator="__", components=["tenant"], catalog="other"
    )
    assert found == [DiscoveredTable("other", "src__x", "t", {"tenant": "x"})]


def test_missing_database_file_is_connection_failed(tmp_path: Path) -> None:
    with pytest.raises(Exception) as info:  # noqa: PT011 - the classifier decides, not the type
        discover_tables(
            settings(tmp_path / "absent.duckdb"), prefix="src__", separator="__", components=[]
        )
    assert classify_exception(info.value) is FailureKind.CONNECTION_FAILED
    assert not (tmp_path / "absent.duckdb").exists()
