"""Discovery: which source tables a run covers, found by Rocky's schema pattern.

A source schema is ``prefix`` followed by one value per component joined by
``separator`` (``src__acme__us_west__shopify`` with prefix ``src__``, separator ``__``
and components ``[tenant, region, source]``). Every base table of every matching
schema is discovered; an explicit ``tables`` list narrows that to the tables named
(case-insensitively). Nothing requested vanishes: a listed name a matching schema does
not have, a view (unless views are included) and a relation of another kind are
returned as :class:`ExcludedTable` with their reason, for ``excluded_tables``.
Used by the local executor and the operator; the parsing is pure, the listing goes
through the adapter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rocky_runner.adapters.base import RELATION_TABLE, RELATION_VIEW, Credentials, open_adapter
from rocky_runner.contract import FailureKind

__all__ = [
    "MISSING",
    "VIEW",
    "Credentials",
    "DiscoveredTable",
    "Discovery",
    "ExcludedTable",
    "classify_discovery_failure",
    "discover",
    "discover_tables",
    "parse_schema_name",
]

#: ``excluded_tables[*].reason`` of a listed name the schema does not have (Rocky's).
MISSING = "missing_from_source"
#: ``excluded_tables[*].reason`` of a view while views are not replicated.
VIEW = "view"
#: Prefix of the reason of a relation that is neither table nor view (``unsupported:external``).
UNSUPPORTED_PREFIX = "unsupported:"

#: Bound for opening the warehouse and listing its catalog during discovery.
DISCOVERY_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class DiscoveredTable:
    catalog: str | None
    schema: str
    table: str
    #: Component name -> value parsed from the schema name, in pattern order.
    components: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExcludedTable:
    """A requested or discovered relation that is not replicated, and why (``reason``:
    :data:`MISSING`, :data:`VIEW` or ``unsupported:<kind>``)."""

    catalog: str | None
    schema: str
    table: str
    components: dict[str, str]
    reason: str


@dataclass(frozen=True)
class Discovery:
    """What discovery found: the tables to plan, and the relations left out."""

    tables: list[DiscoveredTable]
    excluded: list[ExcludedTable] = field(default_factory=list)


def parse_schema_name(
    schema: str, *, prefix: str, separator: str, components: Sequence[str]
) -> dict[str, str] | None:
    """The component values encoded in ``schema``, or None when it does not match.

    Prefix and separator match case-insensitively: Snowflake stores unquoted names in
    upper case (``SRC__ACME__…``), and a pattern written ``src__`` must still find them.
    The values keep the warehouse's own spelling, since they name real objects.
    """
    if schema[: len(prefix)].casefold() != prefix.casefold():
        return None
    rest = schema[len(prefix) :]
    if not components:
        return {} if rest == "" else None
    values = _split_casefold(rest, separator) if separator else [rest]
    if len(values) != len(components) or any(v == "" for v in values):
        return None
    return dict(zip(components, values, strict=True))


def _split_casefold(text: str, separator: str) -> list[str]:
    """``text.split(separator)``, with the separator matched case-insensitively."""
    folded, sep = text.casefold(), separator.casefold()
    if len(folded) != len(text):  # casefold changed lengths (e.g. ß): match exactly
        return text.split(separator)
    parts: list[str] = []
    start = 0
    while (hit := folded.find(sep, start)) != -1:
        parts.append(text[start:hit])
        start = hit + len(sep)
    parts.append(text[start:])
    return parts


def discover_tables(
    adapter_settings: Mapping[str, Any],
    *,
    prefix: str,
    separator: str,
    components: Sequence[str],
    catalog: str | None = None,
    tables: Sequence[str] | None = None,
    credentials: Credentials | None = None,
) -> list[DiscoveredTable]:
    """The base tables of :func:`discover` (views and excluded names left out)."""
    return discover(
        adapter_settings,
        prefix=prefix,
        separator=separator,
        components=components,
        catalog=catalog,
        tables=tables,
        credentials=credentials,
    ).tables


def discover(
    adapter_settings: Mapping[str, Any],
    *,
    prefix: str,
    separator: str,
    components: Sequence[str],
    catalog: str | None = None,
    tables: Sequence[str] | None = None,
    include_views: bool = False,
    credentials: Credentials | None = None,
) -> Discovery:
    """Every table of every schema matching the pattern, and what was left out.

    ``tables`` (an explicit list) narrows each matching schema to those names,
    case-insensitively; a listed name a schema does not have is excluded there as
    ``missing_from_source``. Views are excluded (reason ``view``) unless
    ``include_views``; relations of other kinds are excluded by their kind. Both lists
    are sorted by catalog, schema, table.

    Raises the adapter's errors (classified like a copy's) when the warehouse cannot be
    opened or listed.
    """
    wanted = {t.casefold(): t for t in tables} if tables else None
    adapter = open_adapter(
        adapter_settings,
        credentials if credentials is not None else Credentials.from_env(),
        timeout_seconds=DISCOVERY_TIMEOUT_SECONDS,
    )
    found: list[DiscoveredTable] = []
    excluded: list[ExcludedTable] = []
    try:
        for schema in adapter.discover_schemas(catalog):
            values = parse_schema_name(
                schema.schema, prefix=prefix, separator=separator, components=components
            )
            if values is None:
                continue
            seen: set[str] = set()
            for relation in adapter.list_relations(schema.catalog, schema.schema):
                folded = relation.name.casefold()
                if wanted is not None and folded not in wanted:
                    continue
                seen.add(folded)
                if relation.kind == RELATION_TABLE or (
                    include_views and relation.kind == RELATION_VIEW
                ):
                    found.append(
                        DiscoveredTable(schema.catalog, schema.schema, relation.name, values)
                    )
                else:
                    reason = excluded_reason(relation.kind)
                    excluded.append(
                        ExcludedTable(schema.catalog, schema.schema, relation.name, values, reason)
                    )
            for folded, name in (wanted or {}).items():
                if folded not in seen:
                    excluded.append(
                        ExcludedTable(schema.catalog, schema.schema, name, values, MISSING)
                    )
    finally:
        adapter.close()
    found.sort(key=lambda t: (t.catalog or "", t.schema, t.table))
    excluded.sort(key=lambda t: (t.catalog or "", t.schema, t.table))
    return Discovery(found, excluded)


def excluded_reason(kind: str) -> str:
    """``excluded_tables[*].reason`` of a relation of this kind that is not replicated."""
    return VIEW if kind == RELATION_VIEW else f"{UNSUPPORTED_PREFIX}{kind}"


def classify_discovery_failure(exc: BaseException) -> FailureKind:
    """The failure_kind of an exception raised by :func:`discover`, exactly as a discovery
    pod classifies it (the runner's classifier over the exception chain), so a local run
    and a cluster run name the same failure the same way."""
    from rocky_runner.classify import classify_exception

    try:
        return classify_exception(exc)
    except Exception:  # a classifier that trips over an odd exception must not hide it
        return FailureKind.UNKNOWN
