"""Fixtures of the local executor tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _no_rocky_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runners inherit our environment: drop any ROCKY_* a developer may have set."""
    for name in list(os.environ):
        if name.startswith("ROCKY_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True, scope="session")
def _state_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Journals go to $XDG_STATE_HOME/rocky-operator/local: a tmp dir for the whole
    session (module fixtures such as the demo's run too), never ~/.local/state."""
    state = tmp_path_factory.mktemp("xdg-state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(state))
        yield state
