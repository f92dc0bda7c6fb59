"""Discovery: which source tables a run covers, found by Rocky's schema pattern.

A source schema is ``prefix`` followed by one value per component joined by
``separator`` (``src__acme__us_west__shopify`` with prefix ``src__``, separator ``__``
and components ``[tenant, region, source]``). Every base table of every matching
schema is discovered; an explicit ``tables`` list narrows that to the tables named
(case-insensitively), so a name missing from a schema is simply not planned there.
Used by the local executor and the operator; the parsing is pure, the listing goes
through the adapter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rocky_runner.adapters.base import Credentials, open_adapter

__all__ = ["Credentials", "DiscoveredTable", "discover_tables", "parse_schema_name"]

#: Bound for opening the warehouse and listing its catalog during discovery.
DISCOVERY_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class DiscoveredTable:
    catalog: str | None
    schema: str
    table: str
    #: Component name -> value parsed from the schema name, in pattern order.
    components: dict[str, str] = field(default_factory=dict)


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
    """Every table of every schema matching the pattern, sorted by catalog, schema, table.

    Raises the adapter's errors (classified like a copy's) when the warehouse cannot be
    opened or listed.
    """
    wanted = {t.casefold() for t in tables} if tables else None
    adapter = open_adapter(
        adapter_settings,
        credentials if credentials is not None else Credentials.from_env(),
        timeout_seconds=DISCOVERY_TIMEOUT_SECONDS,
    )
    try:
        found: list[DiscoveredTable] = []
        for schema in adapter.discover_schemas(catalog):
            values = parse_schema_name(
                schema.schema, prefix=prefix, separator=separator, components=components
            )
            if values is None:
                continue
            for table in adapter.list_tables(schema.catalog, schema.schema):
                if wanted is None or table.casefold() in wanted:
                    found.append(DiscoveredTable(schema.catalog, schema.schema, table, values))
    finally:
        adapter.close()
    found.sort(key=lambda t: (t.catalog or "", t.schema, t.table))
    return found
