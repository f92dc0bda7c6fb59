"""The seed's Dagster asset, unchanged but for binary_path=, on the local backend.

Real dagster and real dagster-rocky (PyPI) drive ``rocky-operator-rocky``, which translates
rocky.toml and runs the tables through the local executor, one runner process per table. The
seed's RetryPolicy (30 s first delay) makes this take about a minute.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.compat import scenario
from tests.compat.conftest import interpreter_bin

pytest.importorskip("dagster_rocky", reason="dagster-rocky is in the `examples` extra")


@pytest.mark.slow
def test_seed_asset_on_the_local_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup = scenario.prepare(tmp_path)
    monkeypatch.chdir(setup.directory)  # RockyResource(config_path="rocky.toml")
    monkeypatch.setenv("PATH", f"{interpreter_bin()}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ROCKY_OPERATOR_BACKEND", "local")
    monkeypatch.setenv("ROCKY_OPERATOR_OVERLAY", str(setup.overlay))
    monkeypatch.setenv("ROCKY_OPERATOR_AUTO_RESUME_SECONDS", "3600")
    with scenario.planted_then_repaired(setup):
        job = scenario.run_seed_job()
    scenario.check_outcome(setup, job)
