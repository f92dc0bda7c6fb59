"""What one table copy must do, decided from the catalog alone (pure, dialect-neutral).

Given the task's strategy, the source's columns and the target's columns (None when
the target does not exist), :func:`plan_replication` says whether to replace the
target with every source row or to append the rows newer than the target's
watermark, and which drift steps come first. Adapters render the plan as SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from rocky_runner.contract import MetadataColumn
from rocky_runner.drift import Column, DriftAction, DriftPlan, comparison_family, plan_drift
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
    changed = _timestamp_family_change(source_columns, target_columns, timestamp_column)
    if changed is not None:
        return changed
    drift = plan_drift(source_columns, target_columns, ignore=meta_names)
    if drift.recreate:
        return ReplicationPlan(
            WriteMode.REPLACE, "unsafe type change", recreate_actions=drift.actions()
        )
    # A metadata column added to the spec since the target was made: add it like a new
    # source column (existing rows get NULL there).
    missing_meta = tuple(
        Column(m.name, m.type) for m in metadata_columns if _find(target_columns, m.name) is None
    )
    if missing_meta:
        drift = replace(drift, add=drift.add + missing_meta)
    return ReplicationPlan(WriteMode.APPEND, "incremental", drift=drift)


def _timestamp_family_change(
    source_columns: Sequence[Column], target_columns: Sequence[Column], timestamp_column: str
) -> ReplicationPlan | None:
    """A replace when the timestamp column's type changed family (e.g. TIMESTAMP to
    VARCHAR): appending would compare the watermark in the new family (text order
    instead of time order), so the target is recreated from the source instead."""
    source_ts = _find(source_columns, timestamp_column)
    target_ts = _find(target_columns, timestamp_column)
    if source_ts is None or target_ts is None:
        return None
    old, new = comparison_family(target_ts.type), comparison_family(source_ts.type)
    if old == new:
        return None
    action = DriftAction("recreate", target_ts.name, target_ts.type, source_ts.type)
    return ReplicationPlan(
        WriteMode.REPLACE,
        f"timestamp column {target_ts.name} changed type family ({old} {target_ts.type} -> "
        f"{new} {source_ts.type}): the watermark cannot compare across them, "
        "so the target was recreated from the source",
        recreate_actions=(action,),
    )


#: Why an incremental copy replaced a target that has rows but no watermark.
NO_WATERMARK_REASON = (
    "target has rows but no watermark (every timestamp is NULL): replaced from the source "
    "instead of appending the same rows again"
)


def settle_append(
    plan: ReplicationPlan, *, target_rows: int, timestamped_rows: int
) -> ReplicationPlan:
    """The plan once the target's state is read (inside the write's transaction where the
    warehouse has one): ``target_rows`` is its ``COUNT(*)``, ``timestamped_rows`` its
    ``COUNT(timestamp column)``. An append into a target with rows but no timestamp at
    all (a NULL watermark) would take every source row again, so it becomes a replace.
    Other plans are unchanged."""
    if plan.mode is WriteMode.APPEND and target_rows > 0 and timestamped_rows == 0:
        return ReplicationPlan(WriteMode.REPLACE, NO_WATERMARK_REASON)
    return plan


@dataclass(frozen=True)
class TimestampCounts:
    """Rows of one table by where their timestamp stands against the target's watermark."""

    null: int = 0
    at_watermark: int = 0
    older: int = 0


@dataclass(frozen=True)
class RowsNotCopied:
    """Source rows an append leaves behind, by cause (README: "Incremental copies").

    An append takes the source rows whose timestamp is *greater* than the target's
    watermark (``MAX`` of its timestamp column). Three kinds of rows can never pass that
    test: a NULL timestamp, a timestamp equal to the watermark that arrived after the last
    copy, and a late arrival older than it. Without a key the runner cannot name them,
    but it can count them: each figure is the source's count in that class minus the
    target's (never below 0; a source that deletes rows makes it a lower bound).
    """

    null_timestamp: int = 0
    at_watermark: int = 0
    older_than_watermark: int = 0

    @classmethod
    def between(cls, source: TimestampCounts, target: TimestampCounts) -> RowsNotCopied:
        return cls(
            null_timestamp=max(source.null - target.null, 0),
            at_watermark=max(source.at_watermark - target.at_watermark, 0),
            older_than_watermark=max(source.older - target.older, 0),
        )

    @property
    def total(self) -> int:
        return self.null_timestamp + self.at_watermark + self.older_than_watermark

    def as_metadata(self) -> dict[str, int]:
        return {
            "null_timestamp": self.null_timestamp,
            "at_watermark": self.at_watermark,
            "older_than_watermark": self.older_than_watermark,
        }

    def warning(self, timestamp_column: str) -> str | None:
        """One line for the log and the result, or None when nothing was left behind."""
        if self.total == 0:
            return None
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.null_timestamp, f"with a NULL {timestamp_column}"),
                (self.at_watermark, "at the watermark"),
                (self.older_than_watermark, "older than the watermark (late arrivals)"),
            )
            if n
        ]
        return (
            f"incremental append left {self.total} source row(s) behind: {', '.join(parts)}; "
            "a full_refresh copies them"
        )
