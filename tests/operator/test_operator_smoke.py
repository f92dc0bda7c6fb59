"""Smoke: a 12-table run with every table copying finishes Succeeded against kmock."""

from __future__ import annotations

from pathlib import Path

from tests.operator.conftest import run_spec
from tests.operator.harness import Cluster, FakeKubelet, operator_life


async def test_happy_run(
    api_server: str, cluster: Cluster, kubelet: FakeKubelet, warehouse: Path
) -> None:
    async with operator_life(api_server, cluster.namespace):
        await cluster.create_run("happy", run_spec(warehouse))
        run = await cluster.wait_finished("happy")
    status = run["status"]
    assert status["phase"] == "Succeeded", status
    assert status["tables"]["copied"] == 12
