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
