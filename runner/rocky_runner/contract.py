"""The runner's wire contract: what a pod is given and what it hands back.

This module is the only part of the runner that the operator imports (see
``.importlinter``). It holds the failure kinds, the exit codes, the names of the
environment variables a pod is started with, the table task document and the
result message with its 4096-byte codec. It depends on nothing but the standard
library and pydantic, so importing it costs the operator nothing.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Where a kubelet reads the termination message from, unless the pod spec
#: says otherwise. The runner writes its result here.
DEFAULT_RESULT_PATH = "/dev/termination-log"

#: The kubelet cuts termination messages at this many bytes.
MAX_MESSAGE_BYTES = 4096

#: Version of the result message format (field ``v``).
RESULT_VERSION = 1


class FailureKind(StrEnum):
    """Rocky's failure_kind discriminator: the kebab-case values are the wire contract."""

    CONNECTION_FAILED = "connection-failed"
    AUTH_FAILED = "auth-failed"
    QUERY_REJECTED = "query-rejected"
    TRANSIENT = "transient"
    QUOTA_EXCEEDED = "quota-exceeded"
    NOT_FOUND = "not-found"
    UNKNOWN = "unknown"
    #: Rocky defines it for models that fail to type-check; never produced by the
    #: runner, accepted when reading Rocky's output.
    COMPILE_ERROR = "compile-error"


#: The kinds the runner and operator produce (everything but compile-error).
PRODUCED_KINDS: tuple[FailureKind, ...] = tuple(
    k for k in FailureKind if k is not FailureKind.COMPILE_ERROR
)

EXIT_COPIED = 0
#: One exit code per failure kind, so a lost or unreadable message still classifies.
EXIT_CODE_BY_KIND: dict[FailureKind, int] = {
    FailureKind.CONNECTION_FAILED: 10,
    FailureKind.AUTH_FAILED: 11,
    FailureKind.QUERY_REJECTED: 12,
    FailureKind.TRANSIENT: 13,
    FailureKind.QUOTA_EXCEEDED: 14,
    FailureKind.NOT_FOUND: 15,
    FailureKind.UNKNOWN: 16,
}
KIND_BY_EXIT_CODE: dict[int, FailureKind] = {v: k for k, v in EXIT_CODE_BY_KIND.items()}
#: Exit code for a task document the runner cannot use at all (a bug in whoever
#: built the pod, not a table failure). Classified as unknown by the operator.
EXIT_BAD_TASK = 16


def exit_code_for(kind: FailureKind | None) -> int:
    """The runner's exit code for an outcome: 0 when copied, 10..16 per kind."""
    if kind is None:
        return EXIT_COPIED
    return EXIT_CODE_BY_KIND.get(kind, EXIT_CODE_BY_KIND[FailureKind.UNKNOWN])


# --- Settings checked the same way by the spec and by the runner -------------------------

_MEMORY_SIZE = re.compile(
    r"\s*(\d+(?:\.\d+)?)\s*(%|b|bytes?|[kmgt]i?b?|kilobytes?|megabytes?|gigabytes?|terabytes?)\s*",
    re.IGNORECASE,
)
#: Smallest DuckDB memory_limit accepted: below it DuckDB fails every query (out of memory).
MIN_MEMORY_LIMIT_BYTES = 16 * 2**20


def _unit_bytes(unit: str) -> int:
    unit = unit.lower()
    if unit in ("b", "byte", "bytes"):
        return 1
    power = "kmgt".index(unit[0]) + 1
    binary = len(unit) <= 3 and unit[1:2] == "i"  # KiB, MiB ... (not "gigabytes")
    base: int = 1024 if binary else 1000
    return int(base**power)


def memory_limit_problem(value: str) -> str | None:
    """Why ``value`` is not a usable DuckDB ``memory_limit`` (``2GB``, ``512MiB``,
    ``80%``), or None when it is. Both the RockyRun spec and the runner check it, so a
    typo fails the same way before anything runs (``query-rejected`` in a runner)."""
    match = _MEMORY_SIZE.fullmatch(value)
    if match is None:
        return f"{value!r} is not a memory size (a number and a unit: '2GB', '512MiB', '80%')"
    number, unit = float(match.group(1)), match.group(2)
    if unit == "%":
        return None if 0 < number <= 100 else f"{value!r}: a percentage is 1% to 100%"
    if number * _unit_bytes(unit) < MIN_MEMORY_LIMIT_BYTES:
        return f"{value!r} is below the smallest usable memory limit, 16MiB"
    return None


# --- Input: environment of a runner pod -------------------------------------------------

#: JSON of :class:`TableTask`: the one table this runner copies.
ENV_TASK = "ROCKY_TASK"
#: Path of the result message file (defaults to :data:`DEFAULT_RESULT_PATH`).
ENV_RESULT_PATH = "ROCKY_RESULT_PATH"
#: Credentials, each resolved by the pod from a Secret key (``valueFrom.secretKeyRef``).
#: Their values are redacted from everything the runner emits.
ENV_DATABRICKS_TOKEN = "ROCKY_DATABRICKS_TOKEN"
ENV_SNOWFLAKE_PASSWORD = "ROCKY_SNOWFLAKE_PASSWORD"
ENV_SNOWFLAKE_PRIVATE_KEY = "ROCKY_SNOWFLAKE_PRIVATE_KEY"
ENV_BIGQUERY_CREDENTIALS = "ROCKY_BIGQUERY_CREDENTIALS_JSON"
SECRET_ENV_NAMES: tuple[str, ...] = (
    ENV_DATABRICKS_TOKEN,
    ENV_SNOWFLAKE_PASSWORD,
    ENV_SNOWFLAKE_PRIVATE_KEY,
    ENV_BIGQUERY_CREDENTIALS,
)
#: Comma-separated names of further variables whose values are secret: the run's own
#: ``runner.env`` entries taken from Secrets (``valueFrom.secretKeyRef``, e.g. a proxy
#: password), which the pod builder lists here. Redacted like the credentials.
ENV_REDACT_ENV = "ROCKY_REDACT_ENV"


class TableRef(BaseModel):
    """A fully qualified table. ``catalog`` is the database (DuckDB: attached database)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    catalog: str | None = None
    schema_: str = Field(alias="schema")
    table: str

    def parts(self) -> list[str]:
        return [p for p in (self.catalog, self.schema_, self.table) if p]

    def full_name(self) -> str:
        return ".".join(self.parts())


class MetadataColumn(BaseModel):
    """A column the runner adds to every target row (Rocky's ``metadata_columns``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    #: SQL type in the warehouse's dialect, e.g. ``VARCHAR`` or ``TIMESTAMP``.
    type: str
    #: A SQL expression evaluated per row, e.g. ``CURRENT_TIMESTAMP`` or ``'rocky'``.
    value: str


class TableTask(BaseModel):
    """One table's unit of work, as a runner pod receives it in ``ROCKY_TASK``."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    asset_key: list[str]
    source: TableRef
    target: TableRef
    strategy: Literal["incremental", "full_refresh"] = "incremental"
    timestamp_column: str = "_fivetran_synced"
    metadata_columns: list[MetadataColumn] = Field(default_factory=list)
    #: The adapter block of the RockyRun spec (``{"type": "duckdb", "duckdb": {...}}``),
    #: without secret values: those come from the ``ROCKY_*`` credential variables.
    adapter: dict[str, Any]
    #: Upper bound for the whole copy, in seconds (timeouts are set from it).
    timeout_seconds: float = 3600.0


# --- Output: the result message ---------------------------------------------------------


class TableResult(BaseModel):
    """The JSON a runner writes to its termination message (DESIGN.md)."""

    model_config = ConfigDict(extra="ignore")

    v: int = RESULT_VERSION
    asset_key: list[str]
    outcome: Literal["copied", "failed"]
    rows_copied: int | None = None
    duration_ms: int = 0
    failure_kind: FailureKind | None = None
    error: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: How many bytes of ``error`` were cut to fit the 4096-byte limit (absent: none).
    error_truncated_bytes: int | None = None
    #: Set on a failed result when the runner was stopped before its copy committed:
    #: ``"SIGTERM"`` / ``"SIGINT"`` (told to stop: the pod was deleted, evicted, or the
    #: run itself stopped it, e.g. fail-fast) or ``"timeout"`` (``timeout_seconds``).
    #: Such a result is ``failed`` / ``transient`` (exit code 13) as before; whoever sent
    #: the stop knows it did and may count the table as not attempted. A copy that
    #: committed is ``copied`` whatever signal came after (absent: not stopped).
    stopped_by: Literal["SIGTERM", "SIGINT", "timeout"] | None = None


class MessageError(ValueError):
    """A termination message that is not a valid result (missing, cut, not JSON)."""


_ELLIPSIS = "…"


def _dump(doc: dict[str, Any]) -> bytes:
    # ensure_ascii keeps the output pure ASCII, so lone surrogates and control
    # characters are escaped and the byte length is exactly predictable.
    return json.dumps(doc, ensure_ascii=True, separators=(",", ":"), sort_keys=False).encode(
        "ascii"
    )


def _clean_text(text: str) -> str:
    """Replace lone surrogates (e.g. from undecodable bytes) so the text is valid UTF-8."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _clean_json(value: Any) -> Any:
    """A JSON value with every string (keys included) made valid UTF-8."""
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, dict):
        return {_clean_text(str(k)): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    return value


def _fit_error(doc: dict[str, Any], limit: int) -> bytes | None:
    """``doc`` with ``error`` cut to the longest prefix that fits ``limit``, or None."""
    data = _dump(doc)
    if len(data) <= limit:
        return data
    error = doc.get("error")
    if not error:
        return None
    original_bytes = len(error.encode("utf-8")) + (doc.get("error_truncated_bytes") or 0)
    # Binary search for the longest prefix (in characters) that fits.
    lo, hi = 0, len(error)
    best: bytes | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        prefix = error[:mid]
        cut = original_bytes - len(prefix.encode("utf-8"))
        trial = _dump(dict(doc, error=prefix + _ELLIPSIS, error_truncated_bytes=cut))
        if len(trial) <= limit:
            best = trial
            lo = mid + 1
        else:
            hi = mid - 1
    return best


def encode_result(result: TableResult, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """Serialise a result to at most ``limit`` bytes of valid JSON.

    ``error`` is shortened first (keeping its start, where the cause is named) and
    ``error_truncated_bytes`` says how many UTF-8 bytes were cut. If even an empty
    error does not fit, metadata is replaced by ``{"truncated": true}`` and the error
    fitted again, then the asset key is shortened; the outcome, failure_kind and
    counts always survive. Every string is made valid UTF-8 first (lone surrogates
    from undecodable bytes become "?"), so strict parsers accept the message.
    """
    doc = _clean_json(result.model_dump(mode="json", exclude_none=False))
    doc["metadata"] = _clean_json(json.loads(json.dumps(doc.get("metadata") or {}, default=str)))
    doc["asset_key"] = [_clean_text(str(p)) for p in doc["asset_key"]]
    for optional in ("error_truncated_bytes", "stopped_by"):
        if doc.get(optional) is None:
            doc.pop(optional, None)
    reductions = (
        lambda d: d,
        lambda d: dict(d, metadata={"truncated": True}),
        lambda d: dict(d, asset_key=[p[:64] for p in d["asset_key"][:16]]),
        lambda d: dict(d, asset_key=[]),
    )
    for reduce in reductions:
        doc = reduce(doc)
        data = _fit_error(doc, limit)
        if data is not None:
            return data
    # Unreachable for the 4096-byte limit: the skeleton alone is ~200 bytes.
    return _dump(dict(doc, error=_ELLIPSIS, error_truncated_bytes=None))


def decode_result(data: bytes | str) -> TableResult:
    """Parse a termination message; :class:`MessageError` when it is not a valid result."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(f"result message is not UTF-8: {exc}") from exc
    else:
        text = data
    if not text.strip():
        raise MessageError("result message is empty")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MessageError(f"result message is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("v") != RESULT_VERSION:
        raise MessageError("result message has no supported version field 'v'")
    try:
        result = TableResult.model_validate(doc)
    except ValueError as exc:
        raise MessageError(f"result message does not match the contract: {exc}") from exc
    if result.outcome == "failed" and result.failure_kind is None:
        raise MessageError("failed result message carries no failure_kind")
    return result
