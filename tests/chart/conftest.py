"""Fixtures of the chart tests: the pinned helm and promtool binaries and `helm template`."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.chart.support import CHART, NAMESPACE, RELEASE, Render, build_tool


@pytest.fixture(scope="session")
def helm() -> Path:
    return build_tool("helm")


@pytest.fixture(scope="session")
def promtool() -> Path:
    return build_tool("promtool")


@pytest.fixture(scope="session")
def monitoring_crd_check() -> Path:
    return build_tool("monitoring-crd-check")


@pytest.fixture(scope="session")
def render(helm: Path) -> Render:
    """`helm template` the chart; returns the manifests as dicts (empty documents dropped)."""

    def _render(
        *,
        values: Sequence[Path] = (),
        set_values: Sequence[str] = (),
        release: str = RELEASE,
        namespace: str = NAMESPACE,
        show_only: str | None = None,
    ) -> list[dict[str, Any]]:
        args = [str(helm), "template", release, str(CHART), "--namespace", namespace]
        for path in values:
            args += ["--values", str(path)]
        for item in set_values:
            args += ["--set", item]
        if show_only:
            args += ["--show-only", show_only]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
        return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]

    return _render
