"""Fixtures of the Rocky compatibility tests: DuckDB 1.5 from PyPI in its own venv."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
import venv
from collections.abc import Callable
from pathlib import Path

import pytest

#: DuckDB 1.5, the one Rocky 1.71 links: it must open what this project writes.
DUCKDB15 = "duckdb>=1.5,<1.6"
VENV = (
    Path(os.environ.get("ROCKY_OPERATOR_CACHE", Path.home() / ".cache" / "rocky-operator"))
    / "duckdb15-venv"
)

RunIn15 = Callable[[str], str]


def _python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def _has_duckdb15(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import duckdb; assert duckdb.__version__.startswith('1.5.')"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.fixture(scope="session")
def duckdb15_python() -> Path:
    """A Python with DuckDB 1.5.x from PyPI, created on first use and cached (CI creates it)."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "duckdb15-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one creator when several sessions start at once
        python = _python(VENV)
        if not _has_duckdb15(python):
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", DUCKDB15],
                check=True,
                timeout=900,
            )
        assert _has_duckdb15(python), f"{VENV}: DuckDB 1.5 did not install"
    return python


@pytest.fixture
def run_in_duckdb15(duckdb15_python: Path) -> RunIn15:
    """Run a Python script under DuckDB 1.5; return its stdout (stderr in the failure)."""

    def run(script: str) -> str:
        proc = subprocess.run(
            [str(duckdb15_python), "-c", textwrap.dedent(script)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"DuckDB 1.5 script failed:\n{proc.stderr}")
        return proc.stdout

    return run


@pytest.fixture(autouse=True)
def _no_rocky_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runners and the command inherit our environment: drop any ROCKY_* set outside."""
    for name in list(os.environ):
        if name.startswith("ROCKY_") and name != "ROCKY_OPERATOR_CACHE":
            monkeypatch.delenv(name)


def interpreter_bin() -> Path:
    """The directory of this interpreter's console scripts (rocky-operator-rocky)."""
    return Path(sys.executable).parent
