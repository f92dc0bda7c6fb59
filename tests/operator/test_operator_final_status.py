"""The final pass writes the final status before it deletes the last pods (issue 13 goal 1).

Every result is journaled before the final status is written, so the pods left then hold
nothing the run needs: deleting them first only delayed the status ("last pod -> final
status" grew with the run's concurrency, up to ``concurrency`` deletions at 16 at a time).
An operator stopped after the final status and before those deletions leaves pods of a
finished run; the next process deletes them (the controller's sweep of a finished run).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from tests.operator.conftest import run_spec
from tests.operator.harness import FAST, Cluster, FakeKubelet, copied, failed, operator_life

from rocky_operator.kube.runtime import Runtime
from rocky_runner.contract import FailureKind

ONE_TABLE = {
    "schemaPattern": {"components": ["tenant", "region", "source"]},
    "tables": ["t01"],
}


async def test_final_status_before_the_pods_are_deleted_and_a_restart_sweeps_them(
    api_server: str, cluster: Cluster, kubelet: FakeKubelet, warehouse: Path
) -> None:
    """Pod deletions hang in the first life: the run still reads Succeeded (with the old
    order, deletions first, it never would). The next life deletes the pod left behind,
    starting no attempt again."""
    kubelet.plant("t01", [copied()])
    deleting = asyncio.Event()

    def hang_deletions(runtime: Runtime) -> None:
        async def delete_pod(namespace: str, name: str) -> bool:
            deleting.set()
            await asyncio.Event().wait()  # killed here
            return True

        runtime.client.delete_pod = delete_pod  # type: ignore[method-assign]

    first = operator_life(api_server, cluster.namespace, prepare=hang_deletions)
    life = await first.__aenter__()
    await cluster.create_run("one", run_spec(warehouse, source=ONE_TABLE))
    run = await cluster.wait_finished("one", deadline_seconds=30)
    assert run["status"]["phase"] == "Succeeded"
    assert run["status"]["tables"]["copied"] == 1
    assert run["status"]["output"]["configMaps"]  # the complete output is saved first
    for _ in range(200):  # the deletion follows the final status
        if deleting.is_set():
            break
        await asyncio.sleep(0.05)
    assert deleting.is_set()
    await life.kill()
    left = await cluster.pods("one")
    assert [p["metadata"]["labels"]["rocky.dev/table"] for p in left] != []  # one pod left

    async with operator_life(api_server, cluster.namespace):
        assert await cluster.wait_pods_gone("one") == []
        again = await cluster.run("one")
    assert again["status"]["phase"] == "Succeeded"
    assert again["status"]["tables"]["attempts"] == 1
    assert len(kubelet.handled) == 1  # no attempt started again


async def test_kept_failed_pods_survive_the_sweep(
    api_server: str, cluster: Cluster, kubelet: FakeKubelet, warehouse: Path
) -> None:
    """With keep_failed_pods, the sweep of a finished run keeps a failed attempt's pod as
    the final pass does."""
    kubelet.plant("t01", [failed(FailureKind.QUERY_REJECTED, "bad SQL")])
    settings = replace(FAST, keep_failed_pods=True)
    async with operator_life(api_server, cluster.namespace, settings):
        await cluster.create_run("kept", run_spec(warehouse, source=ONE_TABLE))
        run = await cluster.wait_finished("kept", deadline_seconds=30)
    assert run["status"]["phase"] == "Failed"
    assert len(await cluster.wait_pods_gone("kept", deadline_seconds=0)) == 1
    async with operator_life(api_server, cluster.namespace, settings) as second:
        controller = second.runtime.controller
        for _ in range(200):  # the second life has looked at the finished run, and is done
            if (cluster.namespace, "kept") in controller.swept and not controller.side_tasks:
                break
            await asyncio.sleep(0.05)
        assert (cluster.namespace, "kept") in controller.swept
        left = await cluster.pods("kept")
    assert len(left) == 1
