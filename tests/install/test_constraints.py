"""One constraints file pins what the tests run with, and both the image and CI install with it.

``constraints.txt`` is written by ``scripts/update-constraints`` from the tested venv. The
Dockerfile's dependency layer and ``.ci/run`` (README command 2, as written) install with
``-c constraints.txt``; without it the image resolved newer versions than the tests had run
(sqlglot 30.31 in the image, 30.22 in the tests).
"""

from __future__ import annotations

import re
import shlex
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from tests.chart.test_dockerfile import _ignored, stages

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "constraints.txt"
#: The extras README command 2 installs (the tested venv).
TESTED_EXTRAS = frozenset({"dev", "connectors", "examples"})


def _constraint_files(command: str) -> list[str]:
    """The ``-c`` / ``--constraint`` arguments of every ``pip install`` in a shell command."""
    found: list[str] = []
    for part in re.split(r"&&|;|\|\|", command):
        words = shlex.split(part.replace("\\\n", " "), comments=True)
        if "pip" not in words or "install" not in words:
            continue
        for i, word in enumerate(words):
            if word in ("-c", "--constraint") and i + 1 < len(words):
                found.append(words[i + 1])
            elif word.startswith("--constraint="):
                found.append(word.split("=", 1)[1])
    return found


def readme_command(number: int) -> str:
    """Command N of the README's first shell block: the line after ``# N.``."""
    block = re.search(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    assert block is not None
    lines = block.group(1).splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"# {number}."))
    return lines[index + 1]


def test_ci_runs_readme_command_2_as_written() -> None:
    command = readme_command(2)
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert command in ci, f".ci/run must run README command 2 as written:\n{command}"
    assert _constraint_files(command) == ["constraints.txt"]


def test_dockerfile_and_ci_install_with_the_same_constraints_file() -> None:
    builder, _final = stages()
    docker = [f for line in builder if line.startswith("RUN") for f in _constraint_files(line)]
    ci = [
        f
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        for f in _constraint_files(line)
    ]
    assert docker == ["constraints.txt"], builder
    assert ci == docker
    # The dependency layer copies it in (WORKDIR /src, next to pyproject.toml)...
    copy = next(line for line in builder if line.startswith("COPY pyproject.toml"))
    assert "constraints.txt" in copy.split()[1:-1]
    # ... and the build context holds it.
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not _ignored("constraints.txt", patterns)
    assert CONSTRAINTS.exists()


def pins() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"constraints.txt: {line!r} is not name==version"
        assert version, f"constraints.txt: {line!r} has no version"
        out[canonicalize_name(name)] = version
    return out


def closure_of_the_tested_install() -> dict[str, str]:
    """Every distribution README command 2 installs (pyproject.toml's requirements for the
    tested extras, followed through the installed metadata) -> its installed version."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    own = canonicalize_name(project["name"])
    todo: list[Requirement] = []
    done_extras: set[str] = set()
    pending = set(TESTED_EXTRAS)
    while pending:  # the project's own requirements, its self-references followed
        extra = pending.pop()
        done_extras.add(extra)
        for raw in project["optional-dependencies"][extra]:
            req = Requirement(raw)
            if canonicalize_name(req.name) == own:
                pending |= req.extras - done_extras
            else:
                todo.append(req)
    todo += [Requirement(raw) for raw in project["dependencies"]]
    versions: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    missing: list[str] = []
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing.append(str(req))
            continue
        versions[key[0]] = dist.version
        for raw in dist.requires or ():
            sub = Requirement(raw)
            environments = [{"extra": e} for e in (*sorted(req.extras), "")]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in environments):
                todo.append(sub)
    assert missing == [], f"not installed here (run README command 2): {missing}"
    return versions


def test_constraints_pin_what_the_tests_run_with() -> None:
    """Every distribution of the tested install is pinned at the version installed here, and
    no pin names a distribution that is not installed (regenerate: scripts/update-constraints)."""
    pinned = pins()
    installed = closure_of_the_tested_install()
    unpinned = sorted(set(installed) - set(pinned))
    differ = {
        name: (pinned[name], version)
        for name, version in installed.items()
        if name in pinned and pinned[name] != version
    }
    stale = []
    for name in pinned:
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            stale.append(name)
    assert (unpinned, differ, stale) == ([], {}, []), (
        "constraints.txt and the tested venv disagree (unpinned, pinned != installed, pinned "
        "but not installed); run scripts/update-constraints"
    )
    assert "rocky-operator" not in pinned  # the project itself is the source, not a pin
