"""The Dagster example's Definitions load as `dagster dev -m rocky_replication.definitions` would
load them: one asset with the seed's RetryPolicy, and its two resources bound."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

dg = pytest.importorskip("dagster", reason="dagster is in the `examples` extra")
EXAMPLE = Path(__file__).parents[2] / "examples" / "dagster"


def test_definitions_load_and_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("ROCKY_BACKEND", "local")
    sys.modules.pop("rocky_replication.definitions", None)
    module = importlib.import_module("rocky_replication.definitions")
    defs = module.defs
    dg.Definitions.validate_loadable(defs)
    asset = defs.resolve_assets_def("replicated_tables")
    policy = asset.op.retry_policy
    assert (policy.max_retries, policy.delay, policy.backoff) == (3, 30, dg.Backoff.EXPONENTIAL)
    assert module.MANIFEST.endswith("rockyrun.yaml")
    assert set(asset.required_resource_keys) >= {"rocky", "alerter"}
