"""Drift and replication planning: safe widenings, unsafe changes, and the write chosen."""

from __future__ import annotations

import pytest

from rocky_runner.contract import MetadataColumn
from rocky_runner.drift import Column, is_safe_widening, is_same_type, parse_type, plan_drift
from rocky_runner.errors import ReplicationError
from rocky_runner.replication import WriteMode, plan_replication


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("INTEGER", "BIGINT"),
        ("SMALLINT", "BIGINT"),
        ("TINYINT", "INTEGER"),
        ("int", "INT8"),
        ("INT", "INT64"),
        ("FLOAT", "DOUBLE"),
        ("REAL", "FLOAT64"),
        ("INTEGER", "VARCHAR"),
        ("DATE", "STRING"),
        ("DECIMAL(10,2)", "TEXT"),
        ("VARCHAR(10)", "VARCHAR(20)"),
        ("VARCHAR(10)", "VARCHAR"),
        ("DECIMAL(10,2)", "DECIMAL(12,2)"),
        ("DECIMAL(10,2)", "DECIMAL(12,4)"),
        ("NUMERIC(5, 0)", "NUMBER(38,0)"),
    ],
)
def test_safe_widenings(old: str, new: str) -> None:
    assert is_safe_widening(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("BIGINT", "INTEGER"),
        ("DOUBLE", "FLOAT"),
        ("VARCHAR", "INTEGER"),
        ("VARCHAR(20)", "VARCHAR(10)"),
        ("VARCHAR", "VARCHAR(10)"),
        ("INTEGER", "VARCHAR(10)"),
        ("DECIMAL(10,2)", "DECIMAL(10,4)"),  # loses integer digits
        ("DECIMAL(12,4)", "DECIMAL(12,2)"),  # loses scale
        ("INTEGER", "DOUBLE"),
        ("INTEGER", "DECIMAL(18,0)"),
        ("TIMESTAMP", "DATE"),
        ("INTEGER", "INTEGER"),
        ("BOOLEAN", "INTEGER"),
    ],
)
def test_unsafe_or_no_widening(old: str, new: str) -> None:
    assert not is_safe_widening(old, new)


def test_aliases_are_the_same_type() -> None:
    assert is_same_type("INT", "integer")
    assert is_same_type("VARCHAR", "STRING")
    assert is_same_type("BOOL", "BOOLEAN")
    assert is_same_type("DOUBLE PRECISION", "FLOAT8")
    assert not is_same_type("DECIMAL(10,2)", "DECIMAL(10,3)")
    assert parse_type("STRUCT(a INTEGER)").canonical == "STRUCT(A INTEGER)"


def _cols(*spec: str) -> list[Column]:
    return [Column(*s.split(" ", 1)) for s in spec]


def test_plan_drift_adds_widens_and_keeps() -> None:
    plan = plan_drift(
        _cols("id BIGINT", "Amount DOUBLE", "note VARCHAR", "new_col DATE"),
        _cols("ID INTEGER", "amount FLOAT", "note VARCHAR", "gone VARCHAR", "_loaded TIMESTAMP"),
        ignore=["_LOADED"],
    )
    assert plan.add == (Column("new_col", "DATE"),)
    assert plan.widen == (("ID", "INTEGER", "BIGINT"), ("amount", "FLOAT", "DOUBLE"))
    assert not plan.recreate
    assert [a.kind for a in plan.actions()] == ["add_column", "widen_column", "widen_column"]


def test_plan_drift_target_already_wider_needs_nothing() -> None:
    plan = plan_drift(_cols("id INTEGER", "v INTEGER"), _cols("id BIGINT", "v VARCHAR"))
    assert plan.is_empty


def test_plan_drift_unsafe_change_recreates() -> None:
    plan = plan_drift(_cols("id INTEGER", "v INTEGER"), _cols("id INTEGER", "v VARCHAR(3)"))
    assert plan.recreate
    (action,) = plan.actions()
    assert action.kind == "recreate"
    assert "v VARCHAR(3) -> INTEGER" in action.describe()


SRC = _cols("id INTEGER", "ts TIMESTAMP")


def test_full_refresh_always_replaces() -> None:
    plan = plan_replication(
        strategy="full_refresh", source_columns=SRC, target_columns=None, timestamp_column="x"
    )
    assert plan.mode is WriteMode.REPLACE


def test_incremental_first_run_creates() -> None:
    plan = plan_replication(
        strategy="incremental", source_columns=SRC, target_columns=None, timestamp_column="ts"
    )
    assert (plan.mode, plan.reason) == (WriteMode.REPLACE, "target did not exist")


def test_incremental_appends_with_drift() -> None:
    plan = plan_replication(
        strategy="incremental",
        source_columns=[*SRC, Column("extra", "VARCHAR")],
        target_columns=_cols("id INTEGER", "ts TIMESTAMP", "_by VARCHAR"),
        timestamp_column="TS",
        metadata_columns=[MetadataColumn(name="_by", type="VARCHAR", value="'x'")],
    )
    assert plan.mode is WriteMode.APPEND
    assert plan.drift.add == (Column("extra", "VARCHAR"),)


def test_incremental_unsafe_change_replaces() -> None:
    plan = plan_replication(
        strategy="incremental",
        source_columns=SRC,
        target_columns=_cols("id DATE", "ts TIMESTAMP"),
        timestamp_column="ts",
    )
    assert plan.mode is WriteMode.REPLACE
    assert plan.actions()[0].kind == "recreate"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timestamp_column": "missing"}, "timestamp column"),
        ({"metadata_columns": [MetadataColumn(name="ID", type="X", value="1")]}, "metadata"),
        ({"strategy": "merge"}, "unknown strategy"),
    ],
)
def test_plan_rejects_impossible_copies(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "strategy": "incremental",
        "source_columns": SRC,
        "target_columns": None,
        "timestamp_column": "ts",
        **kwargs,
    }
    with pytest.raises(ReplicationError, match=message):
        plan_replication(**args)  # type: ignore[arg-type]
