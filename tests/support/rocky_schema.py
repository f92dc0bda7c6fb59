"""Rocky's published RunOutput schema, vendored in contracts/ so no test depends on shared/."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: Rocky's ``rocky run --output json`` schema (Apache-2.0), as published.
RUN_OUTPUT_SCHEMA = REPO / "contracts" / "rocky-run.schema.json"


@cache
def rocky_schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(RUN_OUTPUT_SCHEMA.read_text())
    return loaded


def accounting_problems(doc: dict[str, Any]) -> list[str]:
    """Where a RunOutput's totals disagree with its lists, or a table appears twice.

    Every requested table is in exactly one of ``materializations`` (copied), ``errors``
    (failed), ``contained`` (not attempted) and ``excluded_tables``; the counts are the
    lengths of those lists. A run rejected before any table has one error and no table
    lists (``tables_failed`` 1). A list cut to fit the status (``truncated``) is not judged.
    """
    if doc.get("truncated") or (doc.get("execution") or {}).get("truncated"):
        return []
    copied = ["/".join(m["asset_key"]) for m in doc.get("materializations") or []]
    failed = ["/".join(e["asset_key"]) for e in doc.get("errors") or [] if e.get("asset_key")]
    skipped = [str(c["model"]) for c in doc.get("contained") or []]
    excluded = ["/".join(x["asset_key"]) for x in doc.get("excluded_tables") or []]
    problems = []
    if doc.get("tables_copied") != len(copied):
        problems.append(
            f"tables_copied {doc.get('tables_copied')} != {len(copied)} materializations"
        )
    if doc.get("tables_failed") != len(doc.get("errors") or []):
        problems.append(
            f"tables_failed {doc.get('tables_failed')} != {len(doc.get('errors') or [])} errors"
        )
    if "tables_skipped" in doc and doc["tables_skipped"] != len(skipped):
        problems.append(f"tables_skipped {doc['tables_skipped']} != {len(skipped)} contained")
    seen: dict[str, int] = {}
    for key in copied + failed + skipped + excluded:
        seen[key] = seen.get(key, 0) + 1
    twice = sorted(k for k, n in seen.items() if n > 1)
    if twice:
        problems.append(f"in more than one list: {twice[:5]}")
    return problems


def check_run_output(doc: dict[str, Any]) -> Any:
    """Rocky's contract for a RunOutput the project wrote: valid against the schema
    (Draft 7, formats checked), its accounting consistent (:func:`accounting_problems`),
    and parseable by rocky-sdk. Returns rocky-sdk's parsed result."""
    import jsonschema  # type: ignore[import-untyped]
    import rocky_sdk

    jsonschema.Draft7Validator(rocky_schema(), format_checker=jsonschema.FormatChecker()).validate(
        doc
    )
    problems = accounting_problems(doc)
    assert problems == [], problems
    return rocky_sdk.parse_rocky_output(json.dumps(doc))
