"""Fixtures of the local executor tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_rocky_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runners inherit our environment: drop any ROCKY_* a developer may have set."""
    for name in list(os.environ):
        if name.startswith("ROCKY_"):
            monkeypatch.delenv(name)
