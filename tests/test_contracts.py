"""The vendored copy of Rocky's RunOutput schema is the published one (when shared/ is beside
the clone, as on the developers' machines and CI), and it is a usable JSON schema."""

from __future__ import annotations

from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest
from tests.support.rocky_schema import REPO, RUN_OUTPUT_SCHEMA, rocky_schema

PUBLISHED = REPO.parent / "shared" / "contracts" / "rocky-run.schema.json"


def test_vendored_schema_is_a_valid_draft7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(rocky_schema())
    assert rocky_schema()["title"] == "RunOutput"


@pytest.mark.skipif(not PUBLISHED.exists(), reason="no shared/ beside this clone")
def test_vendored_schema_matches_the_published_one() -> None:
    assert Path(RUN_OUTPUT_SCHEMA).read_bytes() == PUBLISHED.read_bytes()
