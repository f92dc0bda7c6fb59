import time, logging
from pathlib import Path
from tests.operator.conftest import run_spec
from tests.operator.harness import Cluster, FakeKubelet, operator_life

async def test_t(api_server, cluster, kubelet, warehouse):
    t0=time.monotonic()
    async with operator_life(api_server, cluster.namespace) as life:
        print("started", time.monotonic()-t0)
        await cluster.create_run("happy", run_spec(warehouse))
        run = await cluster.wait_run("happy", lambda r: (r.get("status") or {}).get("tables",{}).get("planned"))
        print("planned", time.monotonic()-t0)
        run = await cluster.wait_finished("happy")
        print("finished", time.monotonic()-t0, life.runtime.controller.status_writes)
    print("stopped", time.monotonic()-t0)
