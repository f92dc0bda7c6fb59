"""What one table copy must do, decided from the catalog alone (pure, dialect-neutral).

Given the task's strategy, the source's columns and the target's columns (None when
the target does not exist), :func:`plan_replication` says whether to replace the
target with every source row or to append the rows newer than the target's
watermark, and which drift steps come first. Adapters render the plan as SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from rocky_runner.contract import MetadataColumn
from rocky_runner.drift import Column, DriftAction, DriftPlan, plan_drift
from rocky_runner.errors import ReplicationError


class WriteMode(StrEnum):
    #: Create or replace the target with all source rows (plus metadata columns).
    REPLACE = "replace"
    #: Insert the source rows whose timestamp is newer than MAX(target timestamp).
    APPEND = "append"


@dataclass(frozen=True)
class ReplicationPlan:
    mode: WriteMode
    #: Why this mode, for the result metadata and the log.
    reason: str
    #: Drift steps to apply before appending (empty for REPLACE).
    drift: DriftPlan = field(default_factory=DriftPlan)
    #: Drift that made us replace (an unsafe type change), reported but not applied.
    recreate_actions: tuple[DriftAction, ...] = ()

    def actions(self) -> tuple[DriftAction, ...]:
        return self.recreate_actions or self.drift.actions()


def _find(columns: Sequence[Column], name: str) -> Column | None:
    key = name.casefold()
    return next((c for c in columns if c.name.casefold() == key), None)


def plan_replication(
    *,
    strategy: str,
    source_columns: Sequence[Column],
    target_columns: Sequence[Column] | None,
    timestamp_column: str,
    metadata_columns: Sequence[MetadataColumn] = (),
) -> ReplicationPlan:
    """Decide the write for one table.

    Raises :class:`ReplicationError` (query-rejected) when the source has no columns,
    a metadata column collides with a source column, or an incremental copy has no
    timestamp column in the source.
    """
    if not source_columns:
        raise ReplicationError("source table has no columns")
    meta_names = [m.name for m in metadata_columns]
    clashes = sorted(m for m in meta_names if _find(source_columns, m) is not None)
    if clashes:
        raise ReplicationError(
            f"metadata column(s) {', '.join(clashes)} already exist in the source table"
        )
    if strategy == "full_refresh":
        return ReplicationPlan(WriteMode.REPLACE, "full_refresh")
    if strategy != "incremental":
        raise ReplicationError(f"unknown strategy {strategy!r}")
    if _find(source_columns, timestamp_column) is None:
        raise ReplicationError(
            f"incremental copy needs timestamp column {timestamp_column!r}, "
            "which the source table does not have"
        )
    if target_columns is None:
        return ReplicationPlan(WriteMode.REPLACE, "target did not exist")
    if _find(target_columns, timestamp_column) is None:
        return ReplicationPlan(WriteMode.REPLACE, "target has no timestamp column")
    drift = plan_drift(source_columns, target_columns, ignore=meta_names)
    if drift.recreate:
        return ReplicationPlan(
            WriteMode.REPLACE, "unsafe type change", recreate_actions=drift.actions()
        )
    return ReplicationPlan(WriteMode.APPEND, "incremental", drift=drift)
