"""Shared by the chart tests and the helm e2e test: paths, scenarios, building helm/promtool,
and helpers to pick manifests out of `helm template` output.

helm and promtool are built from their Go modules by tools/build-go-tools.sh (cached under
~/.cache/rocky-operator/bin/). `build_tool` skips the calling test with the reason when a tool
cannot be built here (no Go toolchain, build error), except under CI (CI=true), where `.ci/run`
builds them first and a missing tool is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "rocky"
BUILD_SCRIPT = REPO / "tools" / "build-go-tools.sh"
#: ci/*-values.yaml scenarios, plus the defaults (None).
SCENARIOS: list[Path | None] = [None, *sorted((CHART / "ci").glob("*-values.yaml"))]
#: Kubernetes release the manifests are validated against: the e2e control plane's
#: (tools/k8s-binaries/kubernetes/go.mod pins k8s.io/kubernetes v1.36.x).
KUBERNETES_VERSION = "1.36.0"
RELEASE = "rocky"
NAMESPACE = "rocky-system"
#: The `render` fixture: `helm template` -> manifests.
Render = Callable[..., list[dict[str, Any]]]


def scenario_id(path: Path | None) -> str:
    return "defaults" if path is None else path.name.removesuffix("-values.yaml")


def build_tool(name: str) -> Path:
    """Build or reuse one tool; skip (or fail under CI) when it cannot be built."""
    reason = ""
    if shutil.which("go") is None:
        reason = f"{name}: no Go toolchain on PATH to build it (tools/build-go-tools.sh)"
    else:
        proc = subprocess.run(
            ["bash", str(BUILD_SCRIPT), name],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if proc.returncode == 0:
            # Last stdout line: "<tool> <path> (built ... | cached)"
            return Path(proc.stdout.strip().splitlines()[-1].split()[1])
        reason = f"{name}: tools/build-go-tools.sh failed:\n{proc.stderr[-3000:]}"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def find(
    manifests: list[dict[str, Any]], kind: str, name: str | None = None
) -> list[dict[str, Any]]:
    """Manifests of one kind (and name)."""
    return [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]


def only(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single manifest of a kind."""
    found = find(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, got {[m['metadata']['name'] for m in found]}"
    return found[0]
