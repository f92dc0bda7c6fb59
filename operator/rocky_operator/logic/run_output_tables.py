"""The per-table sections of Rocky's RunOutput: a copied table's materialization (with
the runner's extra metadata and the attempt trail), its drift actions, and the run's
permission summary. :mod:`rocky_operator.logic.run_output` puts them together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rocky_operator.logic.decide import Attempt, AttemptState, TableOutcome, TableState
from rocky_operator.logic.policy import DEFAULT_RETRY
from rocky_operator.logic.tables import PlannedTable
from rocky_runner.contract import FailureKind


def iso_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def duration_between(start: datetime | None, end: datetime | None) -> int:
    if start is None or end is None:
        return 0
    return max(int((end - start).total_seconds() * 1000), 0)


def _datetime_or_none(value: Any) -> str | None:
    """A watermark as RFC 3339, or None when it is not a timestamp (schema: date-time)."""
    if isinstance(value, datetime):
        return iso_time(value)
    if isinstance(value, str) and value:
        try:
            return iso_time(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _failure_class(kind: FailureKind | None) -> str:
    """Rocky's coarse retry class of a failed attempt."""
    if kind is None or kind is FailureKind.UNKNOWN:
        return "unknown"
    return "transient" if DEFAULT_RETRY[kind].max_retries > 0 else "permanent"


def _attempt_trail(history: Sequence[Attempt]) -> list[dict[str, Any]]:
    """AttemptRecord per attempt; empty for a clean first-try success (as Rocky does)."""
    if len(history) <= 1:
        return []
    trail: list[dict[str, Any]] = []
    for i, attempt in enumerate(history):
        nxt = history[i + 1] if i + 1 < len(history) else None
        ok = attempt.state is AttemptState.COPIED
        record: dict[str, Any] = {
            "attempt": attempt.number,
            "duration_ms": (
                attempt.result.duration_ms
                if attempt.result is not None
                else duration_between(attempt.started_at, attempt.finished_at)
            ),
            "outcome": "success" if ok else "failed",
            "error": None if ok else (attempt.error or f"failed ({attempt.failure_kind})"),
            "failure_class": None if ok else _failure_class(attempt.failure_kind),
            "backoff_ms": duration_between(attempt.finished_at, nxt.started_at) if nxt else None,
        }
        trail.append(record)
    return trail


def materialization(table: PlannedTable, outcome: TableOutcome) -> dict[str, Any]:
    result = outcome.result
    meta: Mapping[str, Any] = result.metadata if result is not None else {}
    started = outcome.started_at or outcome.finished_at
    duration = (
        result.duration_ms
        if result is not None
        else duration_between(outcome.started_at, outcome.finished_at)
    )
    doc: dict[str, Any] = {
        "asset_key": list(table.asset_key),
        "rows_copied": result.rows_copied if result is not None else None,
        "duration_ms": max(int(duration), 0),
        "started_at": iso_time(started) if started else iso_time(datetime.fromtimestamp(0, UTC)),
        "metadata": {
            "strategy": str(meta.get("strategy") or table.task.strategy),
            "watermark": _datetime_or_none(meta.get("watermark")),
            "target_table_full_name": str(
                meta.get("target_table_full_name") or table.task.target.full_name()
            ),
            "column_count": _int_or_none(meta.get("column_count")),
            **_runner_extras(meta),
        },
    }
    tenant = table.components.get("tenant")
    if tenant is not None:
        doc["tenant"] = tenant
    trail = _attempt_trail(outcome.history)
    if trail:
        doc["attempts"] = trail
    return doc


#: Counts under ``metadata.rows_not_copied`` (docs/runner.md, "Incremental copies").
_NOT_COPIED_KEYS = ("null_timestamp", "at_watermark", "older_than_watermark")


def _runner_extras(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What the runner reports beyond Rocky's fields, checked (MaterializationMetadata
    allows extra properties): rows an append left behind, its warnings, the copy time."""
    extras: dict[str, Any] = {}
    raw = meta.get("rows_not_copied")
    if isinstance(raw, Mapping):
        counts = {k: _int_or_none(raw.get(k)) for k in _NOT_COPIED_KEYS}
        extras["rows_not_copied"] = {k: v for k, v in counts.items() if v is not None}
    warnings = meta.get("warnings")
    if isinstance(warnings, list) and warnings:
        extras["warnings"] = [str(w) for w in warnings]
    copy_ms = _int_or_none(meta.get("copy_ms"))
    if copy_ms is not None:
        extras["copy_ms"] = copy_ms
    return extras


def table_drift_actions(table: PlannedTable, outcome: TableOutcome) -> list[dict[str, Any]]:
    """Drift steps the runner reported in ``metadata.drift`` as Rocky's DriftActionOutput.

    The runner describes each step as text (``add_column note VARCHAR``,
    ``widen_column n INTEGER -> BIGINT``, ``recreate: ...``): the first word is the
    action, the rest the reason. ``{action, reason}`` objects are accepted too.
    """
    if outcome.result is None:
        return []
    raw = outcome.result.metadata.get("drift")
    if not isinstance(raw, list):
        return []
    name = table.task.target.full_name()
    actions: list[dict[str, Any]] = []
    for item in raw:
        if isinstance(item, Mapping):
            action, reason = str(item.get("action", "")), str(item.get("reason", ""))
        else:
            action, _, reason = str(item).partition(" ")
            action = action.rstrip(":")
        # asset_key: not in the published schema, but rocky-sdk requires it (#2073).
        actions.append(
            {
                "table": name,
                "asset_key": list(table.asset_key),
                "action": action,
                "reason": reason.strip(),
            }
        )
    return actions


def permissions(
    tables: Sequence[PlannedTable], outcomes: Mapping[str, TableOutcome]
) -> dict[str, int]:
    """Rocky's PermissionSummary: the target catalogs and schemas the copies created,
    each counted once, as the runners report them (``metadata.created``; an adapter that
    cannot tell reports nothing and counts 0). The operator grants nothing."""
    catalogs: set[str] = set()
    schemas: set[tuple[str, str]] = set()
    for table in tables:
        outcome = outcomes.get(table.key)
        result = outcome.result if outcome is not None else None
        created = result.metadata.get("created") if result is not None else None
        if outcome is None or outcome.state is not TableState.COPIED:
            continue
        if not isinstance(created, Mapping):
            continue
        target = table.task.target
        if created.get("catalog") is True:
            catalogs.add(str(target.catalog or "").casefold())
        if created.get("schema") is True:
            schemas.add((str(target.catalog or "").casefold(), target.schema_.casefold()))
    return {
        "grants_added": 0,
        "grants_revoked": 0,
        "catalogs_created": len(catalogs),
        "schemas_created": len(schemas),
    }
