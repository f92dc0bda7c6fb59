"""Issue 10 case 14: a run's spec is frozen with its plan, across operator restarts.

Before the freeze, a restarted operator validated the *current* spec: an invalid edit
turned a half-copied run into ``Failed/InvalidSpec`` with a leaked pod, and a valid
edit made the remaining pods run the edited runner. Now only the copy frozen with the
plan is used; an edit is observed (``status.observedGeneration``) and shown as the
condition ``SpecChangedIgnored``. Also collected by test_operator_realapi.py (the real
kube-apiserver, which bumps ``metadata.generation`` itself).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.operator.conftest import run_spec
from tests.operator.harness import Cluster, FakeKubelet, Outcome, operator_life

from rocky_operator.kube.runtime import Runtime

HANG = Outcome("hang")
EDITS: dict[str, dict[str, Any]] = {
    # Valid: the runner image of the pods still to be created.
    "valid": {"runner": {"image": "rocky:edited"}},
    # Invalid for the operator (a filter naming an unknown component), valid for the CRD.
    "invalid": {"filter": "planet=mars"},
}


def _condition(run: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (run.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return None


async def edit_spec(cluster: Cluster, name: str, patch: dict[str, Any]) -> int:
    """Merge-patch the spec; the new ``metadata.generation``. A real API server bumps the
    generation itself; the in-process one does not, so it is bumped here as the API
    server would (a spec change, generation + 1)."""
    before = int((await cluster.run(name))["metadata"].get("generation") or 1)
    after = await cluster.api.merge_patch(cluster.run_path(name), {"spec": patch})
    generation = int(after["metadata"].get("generation") or 1)
    if generation == before:
        after = await cluster.api.merge_patch(
            cluster.run_path(name), {"metadata": {"generation": before + 1}}
        )
        generation = int(after["metadata"]["generation"])
    assert generation == before + 1
    return generation


def _record_images(images: list[str]) -> Any:
    def prepare(runtime: Runtime) -> None:
        original = runtime.client.create_pod

        async def create_pod(namespace: str, pod: dict[str, Any]) -> bool:
            images.append(pod["spec"]["containers"][0]["image"])
            return await original(namespace, pod)

        runtime.client.create_pod = create_pod  # type: ignore[method-assign]

    return prepare


@pytest.mark.parametrize("edit", sorted(EDITS))
async def test_spec_edited_mid_run_then_operator_restart_uses_the_frozen_spec(
    api_server: str, cluster: Cluster, kubelet: FakeKubelet, warehouse: Path, edit: str
) -> None:
    for table in ("t04", "t05", "t06", "t07", "t08", "t09", "t10", "t11", "t12"):
        kubelet.plant(table, [HANG])
    first = operator_life(api_server, cluster.namespace)
    life = await first.__aenter__()
    try:
        await cluster.create_run("frozen", run_spec(warehouse, concurrency=4))
        await cluster.wait_run(
            "frozen",
            lambda r: (
                (r.get("status") or {}).get("tables", {}).get("copied") == 3
                and (r.get("status") or {}).get("tables", {}).get("running", 0) >= 1
            ),
            deadline_seconds=30,
        )
        generation = await edit_spec(cluster, "frozen", EDITS[edit])
        # The running operator says the edit is ignored, and observes the generation.
        seen = await cluster.wait_run(
            "frozen",
            lambda r: (_condition(r, "SpecChangedIgnored") or {}).get("status") == "True",
            deadline_seconds=30,
        )
        assert seen["status"]["observedGeneration"] == generation
    finally:
        await life.kill()

    # The hung pods finish while the operator is down; the rest copies.
    kubelet.planted.clear()
    for pod in await cluster.pods("frozen"):
        kubelet.handled.discard(pod["metadata"]["name"])
    images: list[str] = []
    async with operator_life(api_server, cluster.namespace, prepare=_record_images(images)):
        run = await cluster.wait_finished("frozen", deadline_seconds=60)
        left = await cluster.wait_pods_gone("frozen")
    status = run["status"]
    assert (status["phase"], status["tables"]["copied"]) == ("Succeeded", 12), json.dumps(status)
    assert status["tables"]["attempts"] == 12  # no attempt twice
    assert left == []  # no leaked pod
    assert images  # pods were created after the restart ...
    assert set(images) == {"rocky:test"}  # ... with the frozen runner, never the edited
    condition = _condition(run, "SpecChangedIgnored")
    assert condition is not None
    assert condition["status"] == "True"
    assert f"generation {generation}" in condition["message"]
    assert "generation 1" in condition["message"]  # the frozen one
    assert status["observedGeneration"] == generation
    assert _condition(run, "Accepted")["status"] == "True"  # type: ignore[index]


async def test_finished_run_edited_observes_the_generation(
    api_server: str, cluster: Cluster, kubelet: FakeKubelet, warehouse: Path
) -> None:
    """A GitOps health check waits for observedGeneration == generation: an edit of a
    finished run must be observed (and reported), not left waiting forever."""
    async with operator_life(api_server, cluster.namespace):
        await cluster.create_run("done", run_spec(warehouse))
        finished = await cluster.wait_finished("done", deadline_seconds=60)
        assert _condition(finished, "SpecChangedIgnored") is None
        generation = await edit_spec(cluster, "done", EDITS["valid"])
        run = await cluster.wait_run(
            "done",
            lambda r: (r.get("status") or {}).get("observedGeneration") == generation,
            deadline_seconds=30,
        )
        generation = await edit_spec(cluster, "done", EDITS["invalid"])
        again = await cluster.wait_run(
            "done",
            lambda r: (r.get("status") or {}).get("observedGeneration") == generation,
            deadline_seconds=30,
        )
    for seen, gen in ((run, generation - 1), (again, generation)):
        assert seen["status"]["phase"] == "Succeeded"  # the outcome stays
        assert seen["status"]["tables"]["copied"] == 12
        condition = _condition(seen, "SpecChangedIgnored")
        assert condition is not None
        assert condition["status"] == "True"
        assert f"spec generation {gen} is ignored" in condition["message"]
        assert "generation 1, frozen" in condition["message"]
    assert await cluster.wait_pods_gone("done") == []
