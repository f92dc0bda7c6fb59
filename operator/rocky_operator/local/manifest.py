"""Reading a RockyRun manifest file, with one clear message when it is wrong.

The manifest is the same YAML a user would ``kubectl apply``: ``apiVersion``,
``kind``, ``metadata.name`` and a ``spec`` validated by
:class:`~rocky_operator.api.spec.RockyRunSpec`. Every problem is reported by the
path of the field in the manifest (``spec.adapter.duckdb.lockTimeoutSeconds``), in
the spelling the user wrote (the camelCase aliases).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import ValidationError

from rocky_operator.api.spec import (
    API_GROUP,
    API_VERSION,
    KIND,
    MAX_MANIFEST_BYTES,
    RockyRunSpec,
)

EXPECTED_API_VERSION = f"{API_GROUP}/{API_VERSION}"
#: metadata.name must be a DNS-1123 subdomain, as Kubernetes requires.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_TOP_LEVEL = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


class ManifestError(ValueError):
    """A manifest that cannot be run; the message names the file and the field."""


@dataclass(frozen=True)
class Manifest:
    """A validated RockyRun manifest."""

    name: str
    namespace: str | None
    spec: RockyRunSpec
    path: Path


def _loc(parts: Sequence[int | str]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def format_validation_error(exc: ValidationError, prefix: str = "spec") -> list[str]:
    """One line per problem: ``<field path>: <what is wrong>`` (aliases, dotted)."""
    lines: list[str] = []
    for error in exc.errors(include_url=False):
        where = _loc([prefix, *error["loc"]]) if prefix else _loc(list(error["loc"]))
        message = str(error["msg"])
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if error["type"] == "extra_forbidden":
            message = "unknown field (not in the RockyRun schema)"
        elif error["type"] == "missing":
            message = "required field is missing"
        lines.append(f"{where}: {message}")
    return lines


def parse_manifest(doc: Any, path: Path) -> Manifest:
    """Validate a loaded YAML document as a RockyRun."""
    if not isinstance(doc, Mapping):
        raise ManifestError(f"{path}: expected a RockyRun object (a YAML mapping) at the top")
    unknown = sorted(str(k) for k in doc if k not in _TOP_LEVEL)
    if unknown:
        raise ManifestError(f"{path}: {unknown[0]}: unknown top-level field")
    if doc.get("apiVersion") != EXPECTED_API_VERSION:
        raise ManifestError(
            f"{path}: apiVersion: expected {EXPECTED_API_VERSION!r}, got {doc.get('apiVersion')!r}"
        )
    if doc.get("kind") != KIND:
        raise ManifestError(f"{path}: kind: expected {KIND!r}, got {doc.get('kind')!r}")
    metadata = doc.get("metadata")
    if not isinstance(metadata, Mapping):
        raise ManifestError(f"{path}: metadata: required mapping with a name is missing")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{path}: metadata.name: required field is missing")
    if len(name) > 253 or not _NAME.fullmatch(name):
        raise ManifestError(
            f"{path}: metadata.name: {name!r} is not a valid Kubernetes name "
            "(lower-case letters, digits, '-' and '.')"
        )
    namespace = metadata.get("namespace")
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        raise ManifestError(f"{path}: spec: required mapping is missing")
    try:
        validated = RockyRunSpec.model_validate(spec)
    except ValidationError as exc:
        lines = format_validation_error(exc)
        more = f" (and {len(lines) - 1} more: {'; '.join(lines[1:])})" if len(lines) > 1 else ""
        raise ManifestError(f"{path}: {lines[0]}{more}") from None
    return Manifest(
        name=name,
        namespace=namespace if isinstance(namespace, str) else None,
        spec=validated,
        path=path,
    )


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest file; :class:`ManifestError` says what is wrong."""
    file = Path(path)
    try:
        with file.open("rb") as stream:
            raw = stream.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ManifestError(
                f"{file}: the manifest is larger than {MAX_MANIFEST_BYTES} bytes (1.5 MiB, "
                "what Kubernetes stores per object); refused unread"
            )
        text = raw.decode("utf-8")
    except OSError as exc:
        raise ManifestError(f"{file}: cannot read the manifest: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{file}: the manifest is not UTF-8 text") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(f"{file}: not valid YAML{where}: {problem}") from None
    if len(docs) != 1:
        raise ManifestError(f"{file}: expected exactly one RockyRun document, found {len(docs)}")
    return parse_manifest(docs[0], file)


def map_path(path: str, mounts: Mapping[str, str]) -> str:
    """A path as a pod sees it -> the local path, through ``--mount POD_DIR=LOCAL_DIR``.

    The longest matching mount wins, like nested volume mounts in a container. A path
    under no mount is returned unchanged.
    """
    pod_path = PurePosixPath(path)
    best: tuple[int, str] | None = None
    for pod_dir, local_dir in mounts.items():
        mount = PurePosixPath(pod_dir)
        if pod_path == mount or mount in pod_path.parents:
            depth = len(mount.parts)
            if best is None or depth > best[0]:
                rest = pod_path.relative_to(mount)
                best = (depth, str(Path(local_dir) / rest) if rest.parts else str(local_dir))
    return best[1] if best else path


def localize(manifest: Manifest, mounts: Mapping[str, str]) -> Manifest:
    """The manifest with its DuckDB path mapped through the local mounts."""
    duckdb = manifest.spec.adapter.duckdb
    if duckdb is None or not mounts:
        return manifest
    local = map_path(duckdb.path, mounts)
    if local == duckdb.path:
        return manifest
    adapter = manifest.spec.adapter.model_copy(
        update={"duckdb": duckdb.model_copy(update={"path": local})}
    )
    spec = manifest.spec.model_copy(update={"adapter": adapter})
    return Manifest(name=manifest.name, namespace=manifest.namespace, spec=spec, path=manifest.path)
