"""RockyRun manifests: from YAML files, dicts or the typed models, validated before submission."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rocky_operator.api.spec import API_GROUP, API_VERSION, KIND, MAX_MANIFEST_BYTES, RockyRunSpec
from rocky_operator.client.result import ManifestError

API_VERSION_FULL = f"{API_GROUP}/{API_VERSION}"


def load_manifest(path: str | Path) -> dict[str, Any]:
    """Read one RockyRun manifest from a YAML file (the one a user would ``kubectl apply``)."""
    import yaml

    with Path(path).open("rb") as stream:
        raw = stream.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"{path}: the manifest is larger than {MAX_MANIFEST_BYTES} bytes (1.5 MiB, what "
            "Kubernetes stores per object); refused unread"
        )
    docs = [d for d in yaml.safe_load_all(raw.decode("utf-8")) if d]
    runs = [d for d in docs if isinstance(d, dict) and d.get("kind") == KIND]
    if len(runs) != 1:
        raise ManifestError(f"{path}: expected exactly one {KIND} document, found {len(runs)}")
    return validate_manifest(runs[0])


def validate_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Check apiVersion, kind and the spec (with the operator's own models); return a copy."""
    body = copy.deepcopy(dict(manifest))
    if body.get("apiVersion") != API_VERSION_FULL or body.get("kind") != KIND:
        raise ManifestError(
            f"expected apiVersion {API_VERSION_FULL} and kind {KIND}, got "
            f"{body.get('apiVersion')!r} / {body.get('kind')!r}"
        )
    try:
        RockyRunSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        raise ManifestError(f"invalid RockyRun spec: {_describe(exc)}") from exc
    body.setdefault("metadata", {})
    return body


def build_manifest(
    spec: RockyRunSpec,
    *,
    name: str | None = None,
    generate_name: str | None = None,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A RockyRun manifest from the typed spec model."""
    if (name is None) == (generate_name is None):
        raise ManifestError("give exactly one of name and generate_name")
    metadata: dict[str, Any] = {"name": name} if name else {"generateName": generate_name}
    if namespace:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": API_VERSION_FULL,
        "kind": KIND,
        "metadata": metadata,
        "spec": spec_to_json(spec),
    }


def spec_to_json(spec: RockyRunSpec) -> dict[str, Any]:
    """The spec as the API server stores it (by alias, unset optional fields left out)."""
    data: dict[str, Any] = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    return data


def with_resume(
    manifest: Mapping[str, Any], resume_from: str | None, resume_kinds: list[str] | None
) -> dict[str, Any]:
    """A copy of ``manifest`` whose spec resumes from an earlier run (or does not)."""
    body = copy.deepcopy(dict(manifest))
    spec = body.setdefault("spec", {})
    spec.pop("resumeFrom", None)
    spec.pop("resumeKinds", None)
    if resume_from:
        spec["resumeFrom"] = resume_from
        if resume_kinds:
            spec["resumeKinds"] = list(resume_kinds)
    return body


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "spec"
        parts.append(f"spec.{where}: {err['msg']}" if where != "spec" else err["msg"])
    return "; ".join(parts)
