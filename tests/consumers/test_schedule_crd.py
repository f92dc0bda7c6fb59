"""The committed RockySchedule CRD matches the models and is a structural schema.

Rendered through the same renderer as the RockyRun CRD (``rocky_operator.api.crd``); a model
change without re-rendering fails here. Re-render with::

    python -c "from rocky_operator.api.schedule import render_schedule_crd_yaml as r; \
print(r(), end='')" > crds/rockyschedules.rocky.dev.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rocky_operator.api.crd import structural_violations
from rocky_operator.api.schedule import (
    MAX_SCHEDULE_NAME_LENGTH,
    SHORT_NAME,
    build_schedule_crd,
    render_schedule_crd_yaml,
)

CRD_PATH = Path(__file__).parents[2] / "crds" / "rockyschedules.rocky.dev.yaml"


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crd_is_current() -> None:
    assert CRD_PATH.read_text() == render_schedule_crd_yaml()


def test_schema_is_structural() -> None:
    assert structural_violations(_schema(build_schedule_crd())) == []


def test_schema_carries_defaults_enums_and_the_run_template() -> None:
    crd = yaml.safe_load(CRD_PATH.read_text())
    assert crd["spec"]["names"]["shortNames"] == [SHORT_NAME]
    assert SHORT_NAME != "rs"  # ReplicaSet's
    spec = _schema(crd)["properties"]["spec"]
    props = spec["properties"]
    assert set(spec["required"]) == {"schedule", "runTemplate"}
    assert props["concurrencyPolicy"]["enum"] == ["Allow", "Forbid", "Replace"]
    assert props["concurrencyPolicy"]["default"] == "Forbid"
    assert props["successfulRunsHistoryLimit"]["default"] == 3
    assert props["failedRunsHistoryLimit"]["default"] == 1
    assert props["timeZone"]["default"] == "UTC"
    run_spec = props["runTemplate"]["properties"]["spec"]
    assert {"adapter", "source", "target"} <= set(run_spec["required"])
    rules = _schema(crd)["x-kubernetes-validations"]
    assert str(MAX_SCHEDULE_NAME_LENGTH) in rules[0]["rule"]
    status = _schema(crd)["properties"]["status"]["properties"]
    assert {"lastScheduleTime", "lastSuccessfulTime", "active", "conditions"} <= set(status)
