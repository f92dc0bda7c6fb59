"""Shared helpers for the consumer tests: a minimal RockyRun spec and schedule specs."""

from __future__ import annotations

from typing import Any

import pytest

from rocky_operator.api.schedule import RockyScheduleSpec


def run_spec_dict(path: str = "/data/warehouse.duckdb") -> dict[str, Any]:
    """A valid RockyRun spec (by alias) over a DuckDB file."""
    return {
        "adapter": {"type": "duckdb", "duckdb": {"path": path}},
        "source": {
            "schemaPattern": {
                "prefix": "src__",
                "separator": "__",
                "components": ["tenant", "region", "source"],
            }
        },
        "target": {
            "catalogTemplate": "warehouse",
            "schemaTemplate": "{tenant}__{region}__{source}",
        },
    }


def schedule_spec(**fields: Any) -> RockyScheduleSpec:
    """A RockySchedule spec with the given fields (by alias) over :func:`run_spec_dict`."""
    body: dict[str, Any] = {"schedule": "0 * * * *", "runTemplate": {"spec": run_spec_dict()}}
    body.update(fields)
    return RockyScheduleSpec.model_validate(body)


@pytest.fixture
def make_schedule_spec() -> Any:
    """Build a RockyScheduleSpec from field overrides (by alias)."""
    return schedule_spec


@pytest.fixture
def make_run_spec() -> Any:
    """Build a RockyRun spec dict (by alias) over a DuckDB path."""
    return run_spec_dict
