"""Schema drift between a source table and its target: what to add, widen or recreate.

Pure and dialect-neutral, so every adapter decides drift the same way. The safe
widenings are Rocky's: an integer to a wider integer (up to BIGINT), FLOAT to DOUBLE,
anything to an unbounded string (STRING / VARCHAR / TEXT), a longer VARCHAR(n), and a
DECIMAL that keeps every digit (scale not smaller, integer digits not fewer). Any other
type change is unsafe and the target is dropped and recreated from the source.

Columns are matched by case-insensitive name (DuckDB, Snowflake's unquoted names and
BigQuery all compare that way). A target column that the source no longer has is kept:
new rows get NULL there, and no data is thrown away.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


@dataclass(frozen=True)
class Column:
    """A column as the warehouse's catalog describes it (type in its own dialect)."""

    name: str
    type: str


# --- Type families --------------------------------------------------------------------

#: Signed integers by width rank; a wider rank holds every value of a narrower one.
_INTEGER_RANK = {
    "TINYINT": 1, "INT1": 1, "BYTEINT": 1,
    "SMALLINT": 2, "INT2": 2, "SHORT": 2,
    "INTEGER": 3, "INT": 3, "INT4": 3, "SIGNED": 3,
    "BIGINT": 4, "INT8": 4, "LONG": 4, "INT64": 4,
    "HUGEINT": 5, "INT128": 5,
}  # fmt: skip
_FLOAT_RANK = {
    "FLOAT": 1, "FLOAT4": 1, "REAL": 1,
    "DOUBLE": 2, "FLOAT8": 2, "DOUBLE PRECISION": 2, "FLOAT64": 2,
}  # fmt: skip
_STRING_NAMES = frozenset(
    {"VARCHAR", "STRING", "TEXT", "CHARACTER VARYING", "NVARCHAR", "BPCHAR", "CHAR", "CHARACTER"}
)
_DECIMAL_NAMES = frozenset({"DECIMAL", "NUMERIC", "NUMBER", "DEC", "BIGNUMERIC"})
_ALIASES = {"BOOL": "BOOLEAN", "LOGICAL": "BOOLEAN", "TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}

_TYPE_RE = re.compile(r"^(?P<name>[A-Z_][A-Z0-9_ ]*?)\s*(?:\((?P<params>[0-9 ,]*)\))?$")


class Family(StrEnum):
    INTEGER = "integer"
    FLOAT = "float"
    STRING = "string"
    DECIMAL = "decimal"
    OTHER = "other"


@dataclass(frozen=True)
class SqlType:
    """A parsed column type: family, width rank or parameters, and canonical text."""

    family: Family
    canonical: str
    rank: int = 0
    params: tuple[int, ...] = ()


def parse_type(text: str) -> SqlType:
    """Parse a type as a catalog prints it (``DECIMAL(10,2)``, ``varchar(20)``, ``INT64``)."""
    upper = " ".join(text.strip().upper().split())
    match = _TYPE_RE.match(upper)
    if match is None:  # nested (STRUCT(...), INTEGER[]) and anything unusual: compare as text
        return SqlType(Family.OTHER, upper)
    name = _ALIASES.get(match["name"], match["name"])
    params = tuple(int(p) for p in (match["params"] or "").replace(" ", "").split(",") if p)
    if name in _INTEGER_RANK and not params:
        return SqlType(Family.INTEGER, "INTEGER", rank=_INTEGER_RANK[name])
    if name in _FLOAT_RANK and not params:
        return SqlType(Family.FLOAT, "FLOAT", rank=_FLOAT_RANK[name])
    if name in _STRING_NAMES:
        # No length: unbounded (rank 1 marks "holds anything").
        return SqlType(Family.STRING, "STRING", rank=0 if params else 1, params=params[:1])
    if name in _DECIMAL_NAMES:
        return SqlType(Family.DECIMAL, "DECIMAL", params=params)
    canonical = name + (f"({','.join(map(str, params))})" if params else "")
    return SqlType(Family.OTHER, canonical)


#: Type names whose values compare as points in time (the watermark's usual family).
_TEMPORAL_NAMES = frozenset(
    {
        "DATE", "DATETIME", "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NTZ",
        "TIMESTAMP_LTZ", "TIMESTAMP_TZ", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS",
        "TIMESTAMP WITHOUT TIME ZONE", "TIME WITH TIME ZONE", "TIMETZ",
    }
)  # fmt: skip


def comparison_family(text: str) -> str:
    """How values of a type compare: ``temporal``, ``numeric``, ``string``, ``boolean``,
    or the canonical type itself. The watermark compares the timestamp column with
    ``>``: a change across these families changes what that comparison means."""
    parsed = parse_type(text)
    if parsed.family in (Family.INTEGER, Family.FLOAT, Family.DECIMAL):
        return "numeric"
    if parsed.family is Family.STRING:
        return "string"
    name = parsed.canonical.split("(", 1)[0]
    if name in _TEMPORAL_NAMES:
        return "temporal"
    if name == "BOOLEAN":
        return "boolean"
    return parsed.canonical


def is_same_type(a: str, b: str) -> bool:
    """Whether two type spellings denote the same type (``INT`` and ``INTEGER``)."""
    return parse_type(a) == parse_type(b)


def is_safe_widening(old: str, new: str) -> bool:
    """Whether every value of type ``old`` is kept exactly by type ``new`` (and they differ)."""
    o, n = parse_type(old), parse_type(new)
    if o == n:
        return False
    if n.family is Family.STRING:
        if n.rank == 1:  # unbounded string: anything converts to text
            return True
        return o.family is Family.STRING and o.rank == 0 and o.params[:1] <= n.params[:1]
    if o.family is not n.family:
        return False
    if o.family in (Family.INTEGER, Family.FLOAT):
        return n.rank > o.rank
    if o.family is Family.DECIMAL and len(o.params) == 2 and len(n.params) == 2:
        (op, os_), (np_, ns) = o.params, n.params
        return ns >= os_ and (np_ - ns) >= (op - os_)
    return False


# --- The plan -------------------------------------------------------------------------

DriftKind = Literal["add_column", "widen_column", "recreate"]


@dataclass(frozen=True)
class DriftAction:
    """One drift step, reported in the result metadata."""

    kind: DriftKind
    column: str | None = None
    from_type: str | None = None
    to_type: str | None = None

    def describe(self) -> str:
        if self.kind == "add_column":
            return f"add_column {self.column} {self.to_type}"
        if self.kind == "widen_column":
            return f"widen_column {self.column} {self.from_type} -> {self.to_type}"
        if self.column is not None:
            return f"recreate: {self.column} {self.from_type} -> {self.to_type} is unsafe"
        return "recreate"


@dataclass(frozen=True)
class DriftPlan:
    """How the target must change before new source rows can be appended."""

    #: Source columns the target lacks, to add (with the source's type).
    add: tuple[Column, ...] = ()
    #: Target columns to widen to the source's type: (name, target type, source type).
    widen: tuple[tuple[str, str, str], ...] = ()
    #: Columns whose change is unsafe: (name, target type, source type). Any -> recreate.
    unsafe: tuple[tuple[str, str, str], ...] = ()

    @property
    def recreate(self) -> bool:
        return bool(self.unsafe)

    @property
    def is_empty(self) -> bool:
        return not (self.add or self.widen or self.unsafe)

    def actions(self) -> tuple[DriftAction, ...]:
        if self.unsafe:
            return tuple(DriftAction("recreate", n, t, s) for n, t, s in self.unsafe)
        return tuple(DriftAction("add_column", c.name, None, c.type) for c in self.add) + tuple(
            DriftAction("widen_column", n, t, s) for n, t, s in self.widen
        )


def plan_drift(
    source: Sequence[Column],
    target: Sequence[Column],
    *,
    ignore: Collection[str] = (),
) -> DriftPlan:
    """Compare source and target columns (``ignore``: names not from the source, e.g.
    the metadata columns) and say what to add, widen, or whether to recreate."""
    ignored = {n.casefold() for n in ignore}
    by_name = {c.name.casefold(): c for c in target if c.name.casefold() not in ignored}
    add: list[Column] = []
    widen: list[tuple[str, str, str]] = []
    unsafe: list[tuple[str, str, str]] = []
    for col in source:
        key = col.name.casefold()
        if key in ignored:
            continue
        existing = by_name.get(key)
        if existing is None:
            add.append(col)
        elif is_same_type(existing.type, col.type) or is_safe_widening(col.type, existing.type):
            continue  # same type, or the target is already wider (widened earlier)
        elif is_safe_widening(existing.type, col.type):
            widen.append((existing.name, existing.type, col.type))
        else:
            unsafe.append((existing.name, existing.type, col.type))
    return DriftPlan(tuple(add), tuple(widen), tuple(unsafe))
