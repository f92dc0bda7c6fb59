"""Identifier quoting and type rendering of the remote adapters.

Property: any table name the warehouse could hand us (quotes, backticks,
backslashes, spaces, newlines, keywords, non-ASCII) survives being rendered by
:mod:`rocky_runner.adapters.sql_dialect` and parsed back in the same dialect, so a
name can never break out of its quotes. Then the catalog-type renderings: BigQuery
schema fields to GoogleSQL DDL types, Snowflake INFORMATION_SCHEMA columns to DDL.
"""

from __future__ import annotations

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from rocky_runner.adapters import sql_dialect as sql
from rocky_runner.contract import MetadataColumn
from rocky_runner.errors import ReplicationError

DIALECTS: tuple[sql.DialectName, ...] = ("snowflake", "databricks", "bigquery")

names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(catalog=names, schema=names, table=names, dialect=st.sampled_from(DIALECTS))
def test_any_name_round_trips_through_its_quotes(
    catalog: str, schema: str, table: str, dialect: sql.DialectName
) -> None:
    if dialect == "bigquery":
        # BigQuery reads a dot inside backticks as a path separator; its project,
        # dataset and table names cannot contain one.
        catalog, schema, table = (p.replace(".", "_") for p in (catalog, schema, table))
    name = sql.QualifiedName(catalog, schema, table)
    parsed = sqlglot.parse_one(f"SELECT * FROM {sql.table_sql(name, dialect)}", read=dialect)
    found = parsed.find(exp.Table)
    assert found is not None
    assert (found.catalog, found.db, found.name) == (catalog, schema, table)


@settings(max_examples=60, deadline=None)
@given(column=names, dialect=st.sampled_from(DIALECTS))
def test_append_keeps_column_names_intact(column: str, dialect: sql.DialectName) -> None:
    if dialect == "bigquery":
        column = column.replace(".", "_")
    statement = sql.append_sql(
        sql.QualifiedName("c", "s", "t"),
        sql.QualifiedName("c", "src", "t"),
        [column, "ts"],
        "ts",
        [],
        dialect,
    )
    insert = sqlglot.parse_one(statement, read=dialect)
    assert isinstance(insert, exp.Insert)
    assert [c.name for c in insert.this.expressions] == [column, "ts"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_metadata_value_that_does_not_parse_is_rejected(dialect: sql.DialectName) -> None:
    with pytest.raises(ReplicationError):
        sql.metadata_select([MetadataColumn(name="m", type="INT", value="1 +* FROM")], dialect)


def test_bigquery_field_types_as_ddl() -> None:
    from google.cloud.bigquery import SchemaField

    from rocky_runner.adapters.bigquery import ddl_type

    assert ddl_type(SchemaField("a", "INTEGER")) == "INT64"
    assert ddl_type(SchemaField("a", "FLOAT")) == "FLOAT64"
    assert ddl_type(SchemaField("a", "BOOLEAN")) == "BOOL"
    assert ddl_type(SchemaField("a", "NUMERIC", precision=10, scale=2)) == "NUMERIC(10, 2)"
    assert ddl_type(SchemaField("a", "STRING", max_length=20)) == "STRING(20)"
    assert ddl_type(SchemaField("a", "STRING", mode="REPEATED")) == "ARRAY<STRING>"
    nested = SchemaField(
        "a", "RECORD", fields=[SchemaField("x", "INTEGER"), SchemaField("y z", "STRING")]
    )
    assert ddl_type(nested) == "STRUCT<`x` INT64, `y z` STRING>"
    # The rendering parses as a GoogleSQL type.
    assert sql.data_type(ddl_type(nested), "bigquery").is_type(exp.DataType.Type.STRUCT)


def test_snowflake_information_schema_types_as_ddl() -> None:
    from rocky_runner.adapters.snowflake import _type_text, target_identifier

    assert _type_text("NUMBER", 38, 0, None) == "NUMBER(38,0)"
    assert _type_text("TEXT", None, None, 16777216) == "VARCHAR"
    assert _type_text("TEXT", None, None, 20) == "VARCHAR(20)"
    assert _type_text("TIMESTAMP_NTZ", None, None, None) == "TIMESTAMP_NTZ"
    assert target_identifier("staging__us") == "STAGING__US"
    assert target_identifier("has space") == "has space"
