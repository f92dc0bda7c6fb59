"""The GitOps and Dagster example manifests are valid RockyRuns / RockySchedules.

Every RockyRun and RockySchedule YAML under examples/gitops and examples/dagster validates
against the operator's models (the same check the operator and `rocky-operator local` make),
the Flux kustomization renders with kustomize (`kubectl kustomize`, when a kubectl is at hand)
into uniquely named runs, and the Flux health expressions name the contract's conditions.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from rocky_operator.api.schedule import RockyScheduleSpec
from rocky_operator.api.spec import RockyRunSpec

ROOT = Path(__file__).parents[2]
EXAMPLES = [ROOT / "examples" / "gitops", ROOT / "examples" / "dagster"]


def _documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for base in EXAMPLES:
        for path in sorted(base.rglob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and doc.get("kind") in ("RockyRun", "RockySchedule"):
                    docs.append((path, doc))
    return docs


DOCS = _documents()


def test_examples_are_found() -> None:
    kinds = sorted({d["kind"] for _, d in DOCS})
    assert kinds == ["RockyRun", "RockySchedule"]
    assert len(DOCS) >= 4


@pytest.mark.parametrize(
    ("path", "doc"), DOCS, ids=[f"{p.relative_to(ROOT)}:{d['kind']}" for p, d in DOCS]
)
def test_example_manifest_is_valid(path: Path, doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "rocky.dev/v1alpha1"
    meta = doc["metadata"]
    assert meta.get("name") or meta.get("generateName")
    if doc["kind"] == "RockyRun":
        RockyRunSpec.model_validate(doc["spec"])
    else:
        RockyScheduleSpec.model_validate(doc["spec"])


def _kubectl() -> str | None:
    found = shutil.which("kubectl")
    if found:
        return found
    cached = sorted((Path.home() / ".cache" / "rocky-operator" / "k8s").glob("*/kubectl"))
    return str(cached[-1]) if cached else None


def test_flux_kustomization_renders_a_new_run_name_per_suffix(tmp_path: Path) -> None:
    kubectl = _kubectl()
    if kubectl is None:
        pytest.skip("no kubectl (built by tools/k8s-binaries/build.sh) to run kustomize")
    source = ROOT / "examples" / "gitops" / "flux" / "replication"
    rendered = subprocess.run(
        [kubectl, "kustomize", str(source)], capture_output=True, text=True, check=True
    ).stdout
    objs = {d["kind"]: d for d in yaml.safe_load_all(rendered) if d}
    run = objs["RockyRun"]
    assert run["metadata"]["name"] == "backfill-globex-2026-11-29-1"
    assert run["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/prune"] == "disabled"
    assert objs["RockySchedule"]["metadata"]["name"] == "nightly"  # the schedule keeps its name
    # Bumping the suffix is a new RockyRun (a re-run); nothing else changes.
    copy = tmp_path / "replication"
    shutil.copytree(source, copy)
    kust = copy / "runs" / "kustomization.yaml"
    kust.write_text(kust.read_text().replace("-2026-11-29-1", "-2026-11-30-1"))
    bumped = subprocess.run(
        [kubectl, "kustomize", str(copy)], capture_output=True, text=True, check=True
    ).stdout
    run2 = next(d for d in yaml.safe_load_all(bumped) if d and d["kind"] == "RockyRun")
    assert run2["metadata"]["name"] == "backfill-globex-2026-11-30-1"
    assert run2["spec"] == run["spec"]


def test_flux_health_expressions_use_the_status_contract() -> None:
    flux = yaml.safe_load(
        (ROOT / "examples" / "gitops" / "flux" / "kustomization.yaml").read_text()
    )
    exprs = {e["kind"]: e for e in flux["spec"]["healthCheckExprs"]}
    run = exprs["RockyRun"]
    for key in ("current", "failed", "inProgress"):
        assert "c.type == 'Complete'" in run[key]
    assert "'Succeeded'" in run["current"]
    assert "c.type == 'Ready'" in exprs["RockySchedule"]["current"]
