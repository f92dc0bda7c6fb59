"""Render the RockyRun CustomResourceDefinition from the pydantic models.

Pydantic emits JSON Schema; Kubernetes wants a *structural* OpenAPI v3 schema: every
node typed, no ``$ref``, no ``anyOf`` for optional fields (``nullable: true``
instead), no ``additionalProperties`` next to ``properties``, free-form parts marked
``x-kubernetes-preserve-unknown-fields``. :func:`structural` performs that rewrite
and :func:`structural_violations` checks the result against the API server's rules,
so a model change that cannot be expressed structurally fails in a unit test rather
than at ``kubectl apply``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml
from pydantic import BaseModel

from rocky_operator.api.spec import API_GROUP, API_VERSION, KIND, PLURAL, SHORT_NAME, RockyRunSpec
from rocky_operator.api.status import RockyRunStatus

CRD_NAME = f"{PLURAL}.{API_GROUP}"
CATEGORIES = ["rocky"]
#: RockyRun names become label values (``rocky.dev/run``), which hold at most 63 characters.
MAX_RUN_NAME_LENGTH = 63

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Status",
        "type": "string",
        "jsonPath": ".status.phase",
        "description": "Pending, Running, Succeeded, PartialFailure or Failed",
    },
    {
        "name": "Copied",
        "type": "integer",
        "jsonPath": ".status.tables.copied",
        "description": "Tables copied",
    },
    {
        "name": "Failed",
        "type": "integer",
        "jsonPath": ".status.tables.failed",
        "description": "Tables that failed for good",
    },
    {
        "name": "Exit",
        "type": "integer",
        "jsonPath": ".status.exitCode",
        "priority": 1,
        "description": "What rocky run would exit with",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

#: Keys of JSON Schema that mean nothing to the API server or break structural rules.
_DROP = {"title", "$defs", "definitions", "$schema", "discriminator"}
#: Keys whose value is a schema (recursed into).
_SCHEMA_KEYS = ("items", "additionalProperties", "not")


class SchemaError(ValueError):
    """A model cannot be rendered as a structural schema."""


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a pydantic JSON schema (with ``$defs``) into a structural OpenAPI schema."""
    defs: dict[str, Any] = schema.get("$defs", {})
    return _rewrite(schema, defs, path="")


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in node:
        return node
    name = node["$ref"].rsplit("/", 1)[-1]
    if name not in defs:
        raise SchemaError(f"unresolvable $ref {node['$ref']}")
    siblings = {k: v for k, v in node.items() if k != "$ref"}
    return {**_resolve(defs[name], defs), **siblings}


def _rewrite(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    node = _resolve(node, defs)
    out: dict[str, Any] = {}
    nullable = False
    any_of = node.get("anyOf")
    if any_of is not None:
        branches = [_resolve(b, defs) for b in any_of]
        non_null = [b for b in branches if b.get("type") != "null"]
        if len(non_null) != 1:
            raise SchemaError(f"{path or '/'}: anyOf with {len(non_null)} non-null branches")
        nullable = len(non_null) != len(branches)
        siblings = {k: v for k, v in node.items() if k != "anyOf"}
        node = {**non_null[0], **siblings}
        node = _resolve(node, defs)
    for key, value in node.items():
        if key in _DROP or key == "anyOf":
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out["properties"] = {
                name: _rewrite(sub, defs, f"{path}.{name}") for name, sub in value.items()
            }
        elif key in _SCHEMA_KEYS and isinstance(value, dict):
            out[key] = _rewrite(value, defs, f"{path}[]")
        elif key == "additionalProperties" and isinstance(value, bool):
            # ``false`` is how pydantic says extra="forbid"; the API server prunes unknown
            # fields anyway. ``true`` is replaced by preserve-unknown-fields below.
            if value:
                out["x-kubernetes-preserve-unknown-fields"] = True
        else:
            out[key] = value
    if nullable:
        out["nullable"] = True
        if out.get("default", ...) is None:
            del out["default"]
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("additionalProperties", None)
        out.setdefault("type", "object")
    if out.get("default", ...) is None:
        del out["default"]
    if "properties" in out:
        out.setdefault("type", "object")
        out.pop("additionalProperties", None)
    return out


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        sub = node.get(key)
        if isinstance(sub, dict):
            yield from _walk(sub, f"{path}[{key}]")


def structural_violations(schema: dict[str, Any]) -> list[str]:
    """The API server's structural-schema rules this schema breaks (empty: none).

    Checked: every node has a ``type`` (unless it preserves unknown fields or is
    int-or-string); no ``$ref``, ``anyOf``/``oneOf``/``allOf``/``not``, ``title``;
    ``properties`` and ``additionalProperties`` never together; ``additionalProperties``
    never a boolean; ``nullable`` only as ``true``; enum values and defaults of the
    declared type; ``required`` names only declared properties.
    """
    problems: list[str] = []
    py_types: dict[str, tuple[type, ...]] = {
        "string": (str,),
        "integer": (int,),
        "number": (int, float),
        "boolean": (bool,),
        "object": (dict,),
        "array": (list,),
    }
    for path, node in _walk(schema, ""):
        where = path or "/"
        for bad in ("$ref", "anyOf", "oneOf", "allOf", "not", "title", "$defs", "const"):
            if bad in node:
                problems.append(f"{where}: has {bad}")
        preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
        if "type" not in node and not preserve and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{where}: no type")
        typ = node.get("type")
        if typ is not None and typ not in py_types:
            problems.append(f"{where}: type {typ!r} is not an OpenAPI type")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{where}: properties together with additionalProperties")
        if isinstance(node.get("additionalProperties"), bool):
            problems.append(f"{where}: boolean additionalProperties")
        if "nullable" in node and node["nullable"] is not True:
            problems.append(f"{where}: nullable is not true")
        if typ in py_types:
            expected = py_types[typ]
            for value in node.get("enum", []):
                if not isinstance(value, expected) or (
                    typ != "boolean" and isinstance(value, bool)
                ):
                    problems.append(f"{where}: enum value {value!r} is not {typ}")
            if "default" in node:
                default = node["default"]
                if not isinstance(default, expected) or (
                    typ != "boolean" and isinstance(default, bool)
                ):
                    problems.append(f"{where}: default {default!r} is not {typ}")
        for name in node.get("required", []):
            if name not in node.get("properties", {}):
                problems.append(f"{where}: required {name!r} is not a property")
    return problems


def object_schema(
    kind: str,
    spec_model: type[BaseModel],
    status_model: type[BaseModel],
    *,
    name_limit: int,
    name_reason: str,
) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of a kind: its spec and status models, made structural, and
    a bound on ``metadata.name`` (``name_reason`` says why, in the API server's message)."""
    spec = structural(spec_model.model_json_schema(by_alias=True, mode="validation"))
    status = structural(status_model.model_json_schema(by_alias=True, mode="validation"))
    return {
        "type": "object",
        "description": f"{kind}: {spec.pop('description', '')}".strip(),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": [
            {
                "rule": f"size(self.metadata.name) <= {name_limit}",
                "message": f"the name must be at most {name_limit} characters ({name_reason})",
            }
        ],
    }


def crd_document(
    *,
    kind: str,
    plural: str,
    short_name: str,
    printer_columns: list[dict[str, Any]],
    schema: dict[str, Any],
) -> dict[str, Any]:
    """A namespaced CustomResourceDefinition of one version with the status subresource."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short_name],
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": printer_columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def crd_yaml(crd: dict[str, Any], header: str) -> str:
    """A CRD as the YAML committed under ``crds/``, behind its "generated" header."""
    return header + yaml.safe_dump(crd, sort_keys=False, width=100, allow_unicode=True)


def openapi_schema() -> dict[str, Any]:
    """The ``openAPIV3Schema`` of the RockyRun version."""
    # No CEL `self == oldSelf` on the spec: with unbounded lists in it, the API server's
    # cost estimate of that rule exceeds its budget and the CRD would be refused. A spec
    # changed after the run was planned is ignored (status.observedGeneration tells).
    return object_schema(
        KIND,
        RockyRunSpec,
        RockyRunStatus,
        name_limit=MAX_RUN_NAME_LENGTH,
        name_reason="it becomes the rocky.dev/run label value",
    )


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict (``apiextensions.k8s.io/v1``)."""
    return crd_document(
        kind=KIND,
        plural=PLURAL,
        short_name=SHORT_NAME,
        printer_columns=PRINTER_COLUMNS,
        schema=openapi_schema(),
    )


def render_crd_yaml() -> str:
    """The CRD as YAML, exactly as committed under ``crds/``."""
    return crd_yaml(
        build_crd(),
        "# Generated from operator/rocky_operator/api (spec.py, status.py) by\n"
        "# `rocky-operator crd`; do not edit. tests/operator/test_crd.py fails on drift.\n",
    )
