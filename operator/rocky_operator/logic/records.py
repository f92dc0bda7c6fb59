"""What a run keeps outside its status, and how it is encoded.

A RockyRun of thousands of tables cannot keep every result in its status (etcd's
object limit is about 1.5 MiB). The operator therefore keeps three records in
ConfigMaps owned by the run (``binaryData``, gzip-compressed JSON, cut into parts of
at most :data:`PART_BYTES` bytes):

- the **plan** (``<run>-plan-<i>``): the planned tables, fixed once, so a restart
  never re-discovers a different list;
- the **journal** (``<run>-journal-<i>``): every attempt started and every result,
  appended in batches (one ``binaryData`` key per batch), written *before* a pod is
  created and before a finished pod is deleted, so no result is lost and no attempt
  number is used twice;
- the **output** (``<run>-output-<i>``): the complete RunOutput once the run ends.

This module holds the pure encodings; ``rocky_operator.kube.store`` does the I/O.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rocky_operator.logic.decide import Attempt, AttemptState
from rocky_operator.logic.tables import Exclusion, PlannedTable
from rocky_runner.contract import FailureKind, TableResult, TableTask

#: Largest compressed part in one ConfigMap; ConfigMaps hold at most 1 MiB and
#: binaryData is base64 (4/3), so 600 kB leaves room for metadata.
PART_BYTES = 600_000
#: A journal ConfigMap takes new batches until its parts add up to this many bytes
#: (each batch rewrites the ConfigMap in etcd, so smaller is cheaper per pass).
JOURNAL_CHUNK_BYTES = 256_000
PLAN_VERSION = 1


def compress(doc: Any) -> bytes:
    """Compact JSON, gzip-compressed with a fixed mtime (same input, same bytes)."""
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return gzip.compress(raw, compresslevel=6, mtime=0)


def decompress(data: bytes) -> Any:
    return json.loads(gzip.decompress(data).decode("utf-8"))


class RecordError(ValueError):
    """Stored record bytes that are cut, corrupt or fail their digest."""


def decompress_checked(data: bytes, plain_sha256: str | None) -> Any:
    """Parse a compressed record, checking the digest of its uncompressed bytes when given
    (``status.output.sha256`` is that digest)."""
    try:
        plain = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise RecordError(f"not a complete gzip stream: {exc}") from exc
    if plain_sha256 and digest(plain) != plain_sha256:
        raise RecordError("content does not match its sha256")
    try:
        return json.loads(plain.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"not JSON: {exc}") from exc


def split(data: bytes, size: int | None = None) -> list[bytes]:
    """Cut bytes into parts of at most ``size`` (default :data:`PART_BYTES`; at least one
    part, maybe empty)."""
    size = size or PART_BYTES
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- Plan --------------------------------------------------------------------------


def encode_plan(tables: Sequence[PlannedTable], resumed: Sequence[str]) -> dict[str, Any]:
    """The plan document: tables in start order, and the asset keys resume skipped."""
    return {
        "v": PLAN_VERSION,
        "tables": [
            {
                "key": t.key,
                "assetKey": list(t.asset_key),
                "components": dict(t.components),
                "task": t.task.model_dump(mode="json", by_alias=True),
            }
            for t in tables
        ],
        "resumed": list(resumed),
    }


def encode_exclusions(excluded: Sequence[Exclusion]) -> list[list[Any]]:
    """The plan's ``excluded`` list: ``[asset key, source schema, table, reason]`` each."""
    return [[list(e.asset_key), e.source_schema, e.table_name, e.reason] for e in excluded]


def decode_exclusions(doc: Any) -> list[Exclusion]:
    """The exclusions of a plan document (none in a plan written before they existed)."""
    rows = doc.get("excluded") if isinstance(doc, dict) else None
    return [
        Exclusion(tuple(str(k) for k in r[0]), str(r[1]), str(r[2]), str(r[3]))
        for r in rows or []
        if isinstance(r, list) and len(r) == 4
    ]


def decode_plan(doc: Any) -> tuple[list[PlannedTable], list[str]]:
    if not isinstance(doc, dict) or doc.get("v") != PLAN_VERSION:
        raise ValueError("plan record has no supported version")
    tables = [
        PlannedTable(
            key=t["key"],
            asset_key=tuple(t["assetKey"]),
            task=TableTask.model_validate(t["task"]),
            components=dict(t.get("components") or {}),
        )
        for t in doc["tables"]
    ]
    return tables, [str(r) for r in doc.get("resumed") or []]


# --- Journal -----------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def encode_attempt(attempt: Attempt) -> dict[str, Any]:
    """One journal entry; compact keys because thousands of them are stored."""
    entry: dict[str, Any] = {
        "t": attempt.table,
        "n": attempt.number,
        "s": attempt.state.value,
        "a": _iso(attempt.started_at),
    }
    if attempt.finished_at:
        entry["f"] = _iso(attempt.finished_at)
    if attempt.failure_kind:
        entry["k"] = attempt.failure_kind.value
    if attempt.error is not None and (attempt.result is None or attempt.result.error is None):
        entry["e"] = attempt.error
    if attempt.result is not None:
        entry["r"] = attempt.result.model_dump(mode="json", exclude_none=True)
    return entry


def decode_attempt(entry: dict[str, Any]) -> Attempt:
    result = TableResult.model_validate(entry["r"]) if entry.get("r") else None
    error = entry.get("e")
    if error is None and result is not None:
        error = result.error
    kind = entry.get("k")
    started = _time(entry.get("a"))
    if started is None:
        raise ValueError("journal entry without a start time")
    return Attempt(
        table=str(entry["t"]),
        number=int(entry["n"]),
        state=AttemptState(entry["s"]),
        started_at=started,
        finished_at=_time(entry.get("f")),
        failure_kind=FailureKind(kind) if kind else None,
        error=error,
        result=result,
    )


def encode_batch(attempts: Iterable[Attempt]) -> bytes:
    return compress([encode_attempt(a) for a in attempts])


def decode_batch(data: bytes) -> list[Attempt]:
    doc = decompress(data)
    if not isinstance(doc, list):
        raise ValueError("journal batch is not a list")
    return [decode_attempt(e) for e in doc]


def latest_attempts(attempts: Iterable[Attempt]) -> dict[tuple[str, int], Attempt]:
    """Per (table, number) the furthest state recorded (running < failed/copied)."""
    rank = {
        AttemptState.RUNNING: 0,
        AttemptState.STOPPED: 1,
        AttemptState.FAILED: 1,
        AttemptState.COPIED: 1,
    }
    merged: dict[tuple[str, int], Attempt] = {}
    for attempt in attempts:
        key = (attempt.table, attempt.number)
        seen = merged.get(key)
        if seen is None or rank[attempt.state] > rank[seen.state]:
            merged[key] = attempt
    return merged
