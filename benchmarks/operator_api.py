"""Operator API load: requests per table, time to create 1,000 pods, status patches/s.

Prints figures (not a timed test). The operator runs in-process (real kopf, its real
handlers and controller, production batching defaults) against kmock's Kubernetes
emulator; requests are counted *at the API server* by client (the operator's own
client and kopf; the fake kubelet's and the benchmark's requests are excluded).

1. Happy path, ``--tables`` (default 1,000) tables, concurrency 100, every pod copies:
   API requests per table, by verb and resource; status patches per second.
2. ``--create`` (default 1,000) tables at concurrency 1,000 with the kubelet paused:
   time from creating the RockyRun to 1,000 pods created (discovery included).

    python benchmarks/operator_api.py [--tables 1000] [--create 1000]

The emulator answers in ~5-10 ms per request in Python, so the times are bounded by
the test server, not the operator; the request counts are what carry over to a cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from operator_common import NAMESPACE, bench_server, spec, warehouse
from tests.operator.harness import FakeKubelet, operator_life

from rocky_operator.kube.controller import ControllerSettings


async def happy_path(tables: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.duckdb"
        warehouse(path, tables)
        async with bench_server() as bench:
            kubelet = FakeKubelet(bench.cluster.api, NAMESPACE, poll_seconds=0.2)
            async with kubelet, operator_life(bench.server, NAMESPACE, ControllerSettings()):
                started = time.monotonic()
                await bench.cluster.create_run("happy", spec(path, concurrency=100))
                run = await bench.cluster.wait_finished("happy", deadline_seconds=1800)
                elapsed = time.monotonic() - started
            counts = bench.operator_requests()
    total = sum(counts.values())
    per_run_setup = {
        k: v
        for k, v in counts.items()
        if "WATCH" in k or "namespaces" in k or "customresourcedefinitions" in k
    }
    patches = counts.get("PATCH rockyruns/status", 0)
    print(f"== happy path: {tables} tables, concurrency 100, phase {run['status']['phase']}")
    print(
        f"   wall time {elapsed:.1f} s; {total} operator requests = {total / tables:.2f} per table"
    )
    for key, value in counts.items():
        marker = "  (kopf set-up)" if key in per_run_setup else ""
        print(f"   {key:32s} {value:6d}  {value / tables:6.3f}/table{marker}")
    print(
        f"   status patches: {patches} in {elapsed:.1f} s = {patches / elapsed:.2f}/s "
        f"({patches / tables * 1000:.1f} per 1,000 tables)"
    )


async def create_pods(tables: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.duckdb"
        warehouse(path, tables)
        async with bench_server() as bench:
            kubelet = FakeKubelet(bench.cluster.api, NAMESPACE, paused=True)
            async with kubelet, operator_life(bench.server, NAMESPACE, ControllerSettings()):
                started = time.monotonic()
                await bench.cluster.create_run("burst", spec(path, concurrency=min(tables, 1000)))
                # Polling a counter of the test server: there is no event to wait on.
                while bench.emulator.counts.get("operator POST pods", 0) < min(tables, 1000):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                elapsed = time.monotonic() - started
    print(
        f"== {min(tables, 1000)} pods created {elapsed:.2f} s after the RockyRun "
        f"({min(tables, 1000) / elapsed:.0f} pods/s, discovery of {tables} tables included)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--create", type=int, default=1000)
    args = parser.parse_args()
    await create_pods(args.create)
    await happy_path(args.tables)


if __name__ == "__main__":
    asyncio.run(main())
