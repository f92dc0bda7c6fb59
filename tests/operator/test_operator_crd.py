"""The RockyRun CRD: rendered from the pydantic models, structural, and committed.

Checks that the committed YAML equals the rendering (drift), that the schema obeys the
API server's structural rules, that it carries the printer columns, short name,
status subresource, enums and bounds, and that the renderer refuses what Kubernetes
would refuse (a union of two non-null types).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from rocky_operator.api.crd import (
    SchemaError,
    build_crd,
    render_crd_yaml,
    structural,
    structural_violations,
)

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "crds" / "rockyruns.rocky.dev.yaml"


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crd_matches_the_models() -> None:
    assert COMMITTED.read_text() == render_crd_yaml(), (
        "crds/rockyruns.rocky.dev.yaml is stale: run `rocky-operator crd > "
        "crds/rockyruns.rocky.dev.yaml`"
    )


def test_cli_prints_the_crd() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rocky_operator.cli", "crd"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert yaml.safe_load(out) == build_crd()


def test_schema_is_structural() -> None:
    assert structural_violations(_schema()) == []


def test_structural_check_catches_violations() -> None:
    bad = {
        "type": "object",
        "properties": {
            "a": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "b": {"title": "B"},
            "c": {
                "type": "object",
                "properties": {"x": {"type": "string"}},
                "additionalProperties": {"type": "string"},
            },
            "d": {"type": "integer", "default": "3"},
        },
        "required": ["zzz"],
    }
    problems = "\n".join(structural_violations(bad))
    for expected in (
        ".a: has anyOf",
        ".a: no type",
        ".b: has title",
        ".c: properties together with additionalProperties",
        ".d: default '3' is not integer",
        "required 'zzz'",
    ):
        assert expected in problems


def test_renderer_rejects_unions() -> None:
    class Union(BaseModel):
        value: int | str

    with pytest.raises(SchemaError, match="anyOf with 2 non-null branches"):
        structural(Union.model_json_schema())


def test_crd_names_columns_and_subresource() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["rr"]
    assert names["plural"] == "rockyruns"
    assert "rocky" in names["categories"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Status"] == ".status.phase"
    assert columns["Copied"] == ".status.tables.copied"
    assert columns["Failed"] == ".status.tables.failed"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_schema_enforces_enums_bounds_and_nullability() -> None:
    spec = _schema()["properties"]["spec"]
    assert set(spec["required"]) >= {"adapter", "source", "target"}
    adapter = spec["properties"]["adapter"]["properties"]
    assert adapter["type"]["enum"] == ["duckdb", "databricks", "snowflake", "bigquery"]
    assert adapter["duckdb"]["nullable"] is True
    concurrency = spec["properties"]["concurrency"]
    assert (concurrency["minimum"], concurrency["maximum"], concurrency["default"]) == (1, 1000, 8)
    kinds = spec["properties"]["resumeKinds"]["items"]["enum"]
    assert "auth-failed" in kinds
    assert "compile-error" not in kinds
    runner = spec["properties"]["runner"]["properties"]
    assert runner["resources"]["x-kubernetes-preserve-unknown-fields"] is True
    assert runner["tolerations"]["items"]["x-kubernetes-preserve-unknown-fields"] is True
    status = _schema()["properties"]["status"]["properties"]
    assert status["runOutput"]["x-kubernetes-preserve-unknown-fields"] is True
    assert status["phase"]["enum"] == [
        "Pending",
        "Running",
        "Succeeded",
        "PartialFailure",
        "Failed",
    ]
    assert status["conditions"]["items"]["required"] == [
        "type",
        "status",
        "reason",
        "lastTransitionTime",
    ]


def test_no_title_and_no_ref_anywhere() -> None:
    text = yaml.safe_dump(build_crd())
    assert "title:" not in text
    assert "$ref" not in text
    assert "anyOf" not in text


def test_crd_validates_against_the_apiextensions_schema() -> None:
    """The CRD object itself is a valid apiextensions.k8s.io/v1 CustomResourceDefinition."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(build_crd(), "1.30.0", strict=True)
