"""Each documented install, the way a user follows it: ``pip install '.[extra]'`` alone in a
fresh virtualenv (real resolution from the package index, pip's cache reused), then every
module the install ships imports, and so does every third-party module those import, also
the ones imported inside functions (``rocky_sdk`` in the client, ``kubernetes`` in the
cluster backend, ``cryptography`` in the Snowflake adapter).

The project is built into a wheel once, from a copy of its files (so nothing is written into
the work tree); each venv installs ``<wheel>[extra]``, which resolves exactly what
``pip install '.[extra]'`` does. The installs run three at a time.

A second, static check: each extra declares the distribution of every third-party module its
files import; one that only arrives as another package's dependency is a bug waiting for that
package's next release (``aiohttp`` came with kopf, ``cryptography`` with the Snowflake
connector).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.install.promises import (
    INSTALLS,
    REPO,
    Install,
    declared,
    distribution_index,
    distribution_of,
    promised_imports,
    resolve,
)

IDS = [install.extra or "base" for install in INSTALLS]
#: What the wheel is built from (setuptools: pyproject.toml, the readme, the two packages).
WHEEL_SOURCES = ("pyproject.toml", "README.md", "operator", "runner")
PARALLEL_INSTALLS = 3
INSTALL_TIMEOUT = 1200.0

#: Run by the fresh venv's interpreter: import every module given, report what failed.
CHECK = r"""
import importlib, json, sys, traceback
spec = json.loads(sys.argv[1])
sys.path[:0] = spec["path"]
failed = {}
for name in spec["modules"]:
    try:
        importlib.import_module(name)
    except Exception:
        failed[name] = traceback.format_exc(limit=1).strip().splitlines()[-1]
for module, names in spec["imports"]:
    try:
        mod = importlib.import_module(module)
        for name in names:
            if not hasattr(mod, name):
                importlib.import_module(module + "." + name)
    except Exception:
        where = module + " " + ",".join(names)
        failed[where] = traceback.format_exc(limit=1).strip().splitlines()[-1]
present = [m for m in spec["absent"] if importlib.util.find_spec(m) is not None]
print(json.dumps({"failed": failed, "present": present}))
"""


@dataclass(frozen=True)
class Venv:
    install: Install
    root: Path
    pip_log: str

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"


@pytest.fixture(scope="module")
def index() -> dict[Path, str]:
    return distribution_index()


@pytest.mark.parametrize("install", INSTALLS, ids=IDS)
def test_every_import_is_declared_in_its_extra(install: Install, index: dict[Path, str]) -> None:
    """The distribution of every third-party module the extra's files import is one the
    extra (or the base install, or an extra it names) asks for."""
    wanted = declared(install.extra)
    _, external = promised_imports(install)
    undeclared: dict[str, set[str]] = {}
    for module, names in external:
        for loaded in resolve(module, names):
            dist = distribution_of(loaded, index)
            if dist is not None and dist not in wanted:
                undeclared.setdefault(dist, set()).add(loaded)
    assert undeclared == {}, (
        f"pip install '.[{install.extra}]' ({install.where}) does not declare the "
        f"distributions of modules it imports: {undeclared}"
    )


def _tracked_sources(dest: Path) -> None:
    """Copy what the wheel is built from (tracked or new, not ignored) into ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", *WHEEL_SOURCES],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in listed:
        source = REPO / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pip", *args],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
        env=env,
    )


def _install(install: Install, wheel: Path, where: Path) -> Venv:
    root = where / f"venv-{install.extra or 'base'}"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=300
    )
    target = f"{wheel}[{install.extra}]" if install.extra else str(wheel)
    # The outer pip installs into the new venv (--python): the same resolution as the venv's
    # own pip, without paying for ensurepip six times.
    # --no-compile: the .pyc files would be written on first import anyway; compiling
    # dagster and pandas up front is most of the CPU an install costs.
    proc = _pip("--python", str(root / "bin" / "python"), "install", "--no-compile", target)
    if proc.returncode != 0:
        pytest.fail(f"pip install {target} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return Venv(install, root, proc.stdout)


@pytest.fixture(scope="module")
def venvs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Venv]]:
    """One fresh venv per install selected in this session, installed in parallel."""
    selected = {
        item.callspec.params["install"].extra
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_fresh_install_imports_what_it_promises"
        and hasattr(item, "callspec")
    }
    where = tmp_path_factory.mktemp("fresh-installs")
    source = where / "src"
    _tracked_sources(source)
    built = _pip("wheel", "--no-deps", "--wheel-dir", str(where / "wheel"), str(source))
    assert built.returncode == 0, built.stderr[-4000:]
    (wheel,) = (where / "wheel").glob("rocky_operator-*.whl")
    todo = [install for install in INSTALLS if install.extra in selected]
    with ThreadPoolExecutor(max_workers=PARALLEL_INSTALLS) as pool:
        done = list(pool.map(lambda install: _install(install, wheel, where), todo))
    try:
        yield {venv.install.extra: venv for venv in done}
    finally:
        shutil.rmtree(where, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("install", INSTALLS, ids=IDS)
def test_fresh_install_imports_what_it_promises(install: Install, venvs: dict[str, Venv]) -> None:
    venv = venvs[install.extra]
    modules, external = promised_imports(install)
    spec = {
        # A __main__ module runs its program when imported (rocky-runner reads its task).
        "modules": [m for m in modules if not m.endswith("__main__")],
        "imports": external,
        "path": [str(REPO / "examples" / "dagster")] if install.extra == "examples" else [],
        # The base install is the runner image's: no operator machinery in it.
        "absent": ["kopf", "kubernetes"] if not install.extra else [],
    }
    proc = subprocess.run(
        [str(venv.python), "-c", CHECK, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=venv.root,  # not the work tree: nothing importable from there by accident
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}, (
        f"after pip install '.[{install.extra}]' ({install.where}) in a fresh venv, "
        f"these do not import: {json.dumps(report['failed'], indent=1)}"
    )
    assert report["present"] == []
    assert len(modules) > 1
    scripts = {
        "": ["rocky-runner"],
        "operator": ["rocky-operator", "rocky-operator-rocky"],
        "examples": ["rocky-operator", "dagster"],
    }.get(install.extra, [])
    for script in scripts:
        assert (venv.root / "bin" / script).exists(), script
        if script != "rocky-runner":  # the runner takes its task from the environment
            ran = subprocess.run(
                [str(venv.root / "bin" / script), "--help"],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
                cwd=venv.root,
            )
            assert ran.returncode == 0, f"{script} --help:\n{ran.stderr[-3000:]}"
