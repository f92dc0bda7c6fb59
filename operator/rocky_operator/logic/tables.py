"""Which tables a run copies, and the names they go by.

From the RockyRun spec and the discovered source tables this module derives the
planned tables of a run: the filter applied, the target names rendered from the
templates, the Rocky asset key and the runner task. It also names things
deterministically (the table key used in labels, the attempt name used for pods) so
that an operator restart, or a second local run, recognises what it started.

Pure: no I/O. Discovery itself is the runner's (``rocky_runner.discovery``); this
module only needs objects that look like its ``DiscoveredTable``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from rocky_operator.api.spec import RockyRunSpec, parse_filter, render_template
from rocky_runner.contract import MetadataColumn, TableRef, TableTask

#: Kubernetes object names (DNS-1123 labels) are at most this long.
MAX_NAME_LENGTH = 63
#: Length of the table key: 10 hex characters = 40 bits; a collision between two
#: tables of one run is about 1 in 10^12 for a thousand tables.
TABLE_KEY_LENGTH = 10

_NOT_DNS = re.compile(r"[^a-z0-9-]+")


class DiscoveredTableLike(Protocol):
    """What planning needs from a discovered source table (``rocky_runner.discovery``)."""

    @property
    def catalog(self) -> str | None: ...

    @property
    def schema(self) -> str: ...

    @property
    def table(self) -> str: ...

    @property
    def components(self) -> Mapping[str, str]: ...


#: ``excluded_tables[*].reason`` of a listed name the source lacks (Rocky's spelling; the
#: runner's ``rocky_runner.discovery.MISSING``).
REASON_MISSING = "missing_from_source"
#: ``excluded_tables[*].reason`` of a listed name this schema lacks while another schema of
#: the run has it.
REASON_NOT_IN_SCHEMA = "not_in_schema"


class ExcludedTableLike(DiscoveredTableLike, Protocol):
    """A relation discovery left out (``rocky_runner.discovery.ExcludedTable``)."""

    @property
    def reason(self) -> str: ...


@dataclass(frozen=True)
class Exclusion:
    """A requested or discovered table the run does not copy: Rocky's ExcludedTableOutput.

    Counted in the accounting: requested = copied + failed + not attempted + excluded.
    """

    asset_key: tuple[str, ...]
    source_schema: str
    table_name: str
    reason: str
    """``missing_from_source`` (Rocky's: no schema of the run has it), ``not_in_schema``
    (another schema of the run has it), ``view``, or ``unsupported:<kind>``."""

    def as_output(self) -> dict[str, Any]:
        """The ``excluded_tables[*]`` entry."""
        return {
            "asset_key": list(self.asset_key),
            "source_schema": self.source_schema,
            "table_name": self.table_name,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class PlannedTable:
    """One table of a run: its key, its Rocky asset key and the runner's task."""

    key: str
    """Short hash of the asset key (:func:`table_key`); the ``rocky.dev/table`` label."""
    asset_key: tuple[str, ...]
    """``[adapter type, *component values, table]``, as Rocky names the asset."""
    task: TableTask
    """The unit of work a runner receives in ``ROCKY_TASK``."""
    components: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    """Component values of the source schema by name, in pattern order (for the
    Rocky ``tenant`` attribution and for humans)."""


def table_key(asset_key: Sequence[str]) -> str:
    """10 hex characters of the SHA-256 of the asset key's compact JSON.

    Deterministic across processes and restarts, and label-safe, so pods of a table
    can be found again by label.
    """
    doc = json.dumps(list(asset_key), separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(doc.encode("ascii")).hexdigest()[:TABLE_KEY_LENGTH]


_TABLE_KEY_TEXT = re.compile(rf"\b[0-9a-f]{{{TABLE_KEY_LENGTH}}}\b")
_NOT_FILE_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def readable(text: str, names: Mapping[str, Sequence[str]]) -> str:
    """``text`` with each table key of ``names`` (key -> asset key) replaced by the asset
    key joined with ``/``: what a person reads names tables by their asset keys."""
    return _TABLE_KEY_TEXT.sub(
        lambda m: "/".join(names[m.group(0)]) if m.group(0) in names else m.group(0), text
    )


def file_stem(asset_key: Sequence[str]) -> str:
    """A table's asset key as (the start of) a file name: its parts joined by ``.``,
    characters a file name should not hold as ``_`` (``duckdb.acme.shop.orders``)."""
    parts = [_NOT_FILE_SAFE.sub("_", p).strip("._") or "_" for p in asset_key]
    return ".".join(parts)[:200]


def attempt_name(run_name: str, key: str, attempt: int) -> str:
    """``<run>-<key>-<attempt>``, at most 63 characters and DNS-1123 safe.

    The run part is lowered, stripped of characters a DNS label cannot hold and cut
    so that the table key and attempt number (which make the name unique) survive.
    """
    suffix = f"{key}-{attempt}"
    run = _NOT_DNS.sub("-", run_name.lower()).strip("-")
    room = MAX_NAME_LENGTH - len(suffix) - 1
    run = run[: max(room, 0)].rstrip("-")
    name = f"{run}-{suffix}" if run else suffix
    return name[:MAX_NAME_LENGTH].rstrip("-")


def adapter_settings(spec: RockyRunSpec) -> dict[str, Any]:
    """The runner's adapter settings: the spec's adapter block as JSON by alias.

    Only the block of the chosen adapter is kept (``{"type": "duckdb", "duckdb": {...}}``);
    secret *references* may appear, secret values never do.
    """
    doc = spec.adapter.model_dump(mode="json", by_alias=True)
    return {k: v for k, v in doc.items() if v is not None}


def matches_filter(components: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """True when every ``component=value`` of the filter holds for these components.

    Values compare case-insensitively, like the schema prefix in discovery: ``tenant=acme``
    selects Snowflake's upper-case ``SRC__ACME__…`` schemas too.
    """
    return all(
        (components.get(name) or "").casefold() == value.casefold()
        for name, value in wanted.items()
    )


def plan_tables(
    spec: RockyRunSpec, discovered: Iterable[DiscoveredTableLike]
) -> list[PlannedTable]:
    """The tables of a run, filtered, named and ordered by asset key.

    A table discovered twice (same asset key) is planned once. The order is stable so
    that starts happen in the same order on every reconcile.
    """
    wanted = parse_filter(spec.filter)
    names = tuple(spec.source.schema_pattern.components)
    settings = adapter_settings(spec)
    metadata = [
        MetadataColumn(name=m.name, type=m.type, value=m.value) for m in spec.metadata_columns
    ]
    timeout = float(spec.runner.active_deadline_seconds or 3600)
    planned: dict[tuple[str, ...], PlannedTable] = {}
    for found in discovered:
        components = {name: found.components[name] for name in names}
        if not matches_filter(components, wanted):
            continue
        asset_key = (spec.adapter.type, *(components[n] for n in names), found.table)
        if asset_key in planned:
            continue
        key = table_key(asset_key)
        task = TableTask(
            asset_key=list(asset_key),
            source=TableRef(catalog=found.catalog, schema=found.schema, table=found.table),
            target=TableRef(
                catalog=render_template(spec.target.catalog_template, components),
                schema=render_template(spec.target.schema_template, components),
                table=found.table,
            ),
            strategy=spec.strategy,
            timestamp_column=spec.timestamp_column,
            metadata_columns=metadata,
            adapter=settings,
            timeout_seconds=timeout,
        )
        planned[asset_key] = PlannedTable(
            key=key, asset_key=asset_key, task=task, components=components
        )
    return [planned[k] for k in sorted(planned)]


def plan_exclusions(
    spec: RockyRunSpec,
    excluded: Iterable[ExcludedTableLike],
    planned: Iterable[PlannedTable] = (),
) -> list[Exclusion]:
    """The exclusions of a run: the filter applied as to the tables (an excluded table of a
    schema the filter leaves out was never requested), one per asset key, none for an
    asset key that is planned, ordered by asset key.

    A listed name missing from a schema while another schema of the run has it (tables
    differ by source: ``payouts`` is Stripe's, not Shopify's) is ``not_in_schema``; only a
    name that no schema of the run has keeps ``missing_from_source`` (a typo, a table not
    synced yet), the reason Events, warnings and the consumers' alerts key on.
    """
    wanted = parse_filter(spec.filter)
    names = tuple(spec.source.schema_pattern.components)
    planned = list(planned)
    taken = {t.asset_key for t in planned}
    found: dict[tuple[str, ...], Exclusion] = {}
    for item in excluded:
        components = {name: item.components[name] for name in names}
        if not matches_filter(components, wanted):
            continue
        asset_key = (spec.adapter.type, *(components[n] for n in names), item.table)
        if asset_key in taken or asset_key in found:
            continue
        found[asset_key] = Exclusion(asset_key, item.schema, item.table, item.reason)
    present = {t.asset_key[-1].casefold() for t in planned} | {
        e.table_name.casefold() for e in found.values() if e.reason != REASON_MISSING
    }
    return [
        replace(found[k], reason=REASON_NOT_IN_SCHEMA)
        if found[k].reason == REASON_MISSING and found[k].table_name.casefold() in present
        else found[k]
        for k in sorted(found)
    ]


def first_names(names: list[str], shown: int = 5) -> str:
    """The first ``shown`` names and how many more, for a message a person reads."""
    rest = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {rest} more" if rest > 0 else "")


def no_tables_message(
    spec: RockyRunSpec, *, planned: int, resumed: int, excluded: Sequence[Exclusion]
) -> str | None:
    """Why a run has nothing to copy, or None when it has tables (or resume took them all:
    that is a finished chain, not a plan that matched nothing).

    A plan of zero tables is a misconfiguration far more often than an intent (a typo'd
    prefix, a filter value that matches no schema), so it is flagged, never a quiet
    success.
    """
    if planned > 0 or resumed > 0:
        return None
    pattern = spec.source.schema_pattern
    where = f"schema pattern prefix {pattern.prefix!r}"
    if pattern.components:
        where += f" with components {pattern.components}"
    if spec.filter:
        where += f", filter {spec.filter!r}"
    if spec.source.tables:
        where += f", {len(spec.source.tables)} name(s) in source.tables"
    message = f"no tables matched: {where}"
    if excluded:
        reasons = Counter(e.reason for e in excluded)
        detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        message += f"; {len(excluded)} excluded ({detail}, see excluded_tables)"
    return message
