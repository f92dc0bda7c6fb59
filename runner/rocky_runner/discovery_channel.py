"""The discovery pod's channel to the operator: the table list through the pod's log.

Discovery runs in a runner pod (the operator holds no warehouse credentials). Its
answer can be thousands of tables, far more than a termination message (4096 bytes)
holds, so the list travels through the container log, read with ``pods/log``:
gzip-compressed JSON, base64, in framed lines (``rocky-discovery-v1 <seq> <chunk>``)
that other log lines cannot be mistaken for. The termination message carries the
summary (count, bytes, SHA-256), so the operator knows the log it read is complete.
100,000 tables of typical names compress to well under a megabyte of log.

The answer also carries the relations discovery left out (views, listed names a schema
lacks), so the run's ``excluded_tables`` is the same as a local run's.

Shared by the runner (encode) and the operator (decode); imports no adapter.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

#: JSON of :class:`DiscoveryTask`: set on a discovery pod instead of ``ROCKY_TASK``.
ENV_DISCOVERY = "ROCKY_DISCOVERY"
FRAME = "rocky-discovery-v1"
#: Characters of base64 per log line (kubelets split lines longer than 16 KiB).
CHUNK_CHARS = 8000
#: Bound of the termination message summary (the kubelet keeps 4096 bytes).
MAX_SUMMARY_BYTES = 4000


class DiscoveryTask(BaseModel):
    """What a discovery pod lists: the run's adapter and schema pattern."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    adapter: dict[str, Any]
    prefix: str
    separator: str
    components: list[str] = Field(default_factory=list)
    catalog: str | None = None
    tables: list[str] | None = None
    include_views: bool = False


class _TableLike(Protocol):
    @property
    def catalog(self) -> str | None: ...
    @property
    def schema(self) -> str: ...
    @property
    def table(self) -> str: ...
    @property
    def components(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class ListedTable:
    """One discovered table as the operator receives it (like DiscoveredTable)."""

    catalog: str | None
    schema: str
    table: str
    components: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ListedExclusion:
    """One relation discovery left out, as the operator receives it (like ExcludedTable)."""

    catalog: str | None
    schema: str
    table: str
    components: dict[str, str]
    reason: str


class _ExcludedLike(_TableLike, Protocol):
    @property
    def reason(self) -> str: ...


@dataclass(frozen=True)
class Listing:
    """The decoded answer of a discovery pod."""

    tables: list[ListedTable]
    excluded: list[ListedExclusion] = field(default_factory=list)


class ChannelError(Exception):
    """The log does not hold the complete list the summary announces."""


def encode_tables(
    tables: Iterable[_TableLike], excluded: Iterable[_ExcludedLike] = ()
) -> tuple[list[str], dict[str, Any]]:
    """(log lines, termination summary) for a discovered table list and the relations
    left out. The payload is ``{"tables": rows, "excluded": rows}``; a bare list of
    table rows (a runner before exclusions were reported) still decodes."""
    rows = [[t.catalog, t.schema, t.table, dict(t.components)] for t in tables]
    left_out = [[t.catalog, t.schema, t.table, dict(t.components), t.reason] for t in excluded]
    payload = {"tables": rows, "excluded": left_out}
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    packed = gzip.compress(raw, mtime=0)
    text = base64.b64encode(packed).decode("ascii")
    chunks = [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)] or [""]
    lines = [f"{FRAME} {seq} {chunk}" for seq, chunk in enumerate(chunks)]
    summary = {
        "outcome": "discovered",
        "tables": len(rows),
        "excluded": len(left_out),
        "chunks": len(chunks),
        "bytes": len(packed),
        "sha256": hashlib.sha256(packed).hexdigest(),
    }
    return lines, summary


def failure_summary(failure_kind: str, error: str) -> dict[str, Any]:
    """The termination summary of a discovery that failed (``error`` already redacted)."""
    doc = {"outcome": "failed", "failure_kind": failure_kind, "error": error}
    while len(json.dumps(doc).encode()) > MAX_SUMMARY_BYTES:
        doc["error"] = str(doc["error"])[: max(len(str(doc["error"])) // 2, 16)] + "…"
    return doc


def parse_summary(message: str | None) -> dict[str, Any] | None:
    """The termination summary, or None when the message is not one."""
    try:
        doc = json.loads(message or "")
    except ValueError:
        return None
    if isinstance(doc, dict) and doc.get("outcome") in ("discovered", "failed"):
        return doc
    return None


def decode_tables(log: str, summary: Mapping[str, Any]) -> list[ListedTable]:
    """The table list from the pod log, checked against the summary."""
    return decode_listing(log, summary).tables


def decode_listing(log: str, summary: Mapping[str, Any]) -> Listing:
    """Tables and exclusions from the pod log, checked against the summary."""
    chunks: dict[int, str] = {}
    for line in log.splitlines():
        parts = line.strip().split(" ")
        if len(parts) == 3 and parts[0] == FRAME and parts[1].isdigit():
            chunks[int(parts[1])] = parts[2]
        elif len(parts) == 2 and parts[0] == FRAME and parts[1].isdigit():
            chunks[int(parts[1])] = ""  # an empty list encodes to one empty chunk
    expected = int(summary.get("chunks", -1))
    if sorted(chunks) != list(range(expected)):
        raise ChannelError(
            f"the discovery log holds {len(chunks)} of {expected} parts of the table list"
        )
    try:
        packed = base64.b64decode("".join(chunks[i] for i in range(expected)), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ChannelError(f"the discovery log is garbled: {exc}") from None
    if hashlib.sha256(packed).hexdigest() != summary.get("sha256"):
        raise ChannelError("the discovery log does not match its summary (sha256)")
    try:
        payload: Any = json.loads(gzip.decompress(packed))
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise ChannelError(f"the discovery log is garbled: {exc}") from None
    rows: Sequence[Any] = payload.get("tables", []) if isinstance(payload, dict) else payload
    left_out: Sequence[Any] = payload.get("excluded", []) if isinstance(payload, dict) else []
    tables = [ListedTable(r[0], r[1], r[2], dict(r[3])) for r in rows]
    if len(tables) != summary.get("tables"):
        raise ChannelError("the discovery log's table count does not match its summary")
    excluded = [ListedExclusion(r[0], r[1], r[2], dict(r[3]), str(r[4])) for r in left_out]
    if len(excluded) != summary.get("excluded", 0):
        raise ChannelError("the discovery log's exclusion count does not match its summary")
    return Listing(tables, excluded)
