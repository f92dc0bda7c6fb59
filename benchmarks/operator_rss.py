"""Operator memory: resident set size with 10,000 tables in flight.

Prints figures (not a timed test). Starts ``rocky-operator run`` as its own process
(as in a Deployment) against kmock's Kubernetes emulator, measures its RSS idle, then
creates a RockyRun of ``--tables`` (default 10,000) tables discovered from a DuckDB
file, concurrency 1,000, with the fake kubelet paused: 1,000 pods in flight and every
table planned, journaled and tracked. RSS is read from /proc once the 1,000 pods exist
and after a few more passes.

    python benchmarks/operator_rss.py [--tables 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from operator_common import NAMESPACE, bench_server, spec, warehouse
from tests.operator.harness import FakeKubelet


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tables", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.duckdb"
        started = time.monotonic()
        warehouse(path, args.tables)
        print(f"warehouse of {args.tables} tables built in {time.monotonic() - started:.1f} s")
        async with bench_server() as bench:
            kubeconfig = Path(tmp) / "kubeconfig"
            kubeconfig.write_text(
                "apiVersion: v1\nkind: Config\ncurrent-context: bench\n"
                f"clusters: [{{name: bench, cluster: {{server: '{bench.server}'}}}}]\n"
                "users: [{name: bench, user: {}}]\n"
                "contexts: [{name: bench, context: {cluster: bench, user: bench, "
                f"namespace: {NAMESPACE}}}}}]\n"
            )
            env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "rocky_operator.cli",
                "run",
                "-n",
                NAMESPACE,
                "--metrics-port",
                "0",
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                await asyncio.sleep(3)
                idle = rss_mib(proc.pid)
                kubelet = FakeKubelet(bench.cluster.api, NAMESPACE, paused=True)
                async with kubelet:
                    t0 = time.monotonic()
                    await bench.cluster.create_run("big", spec(path, concurrency=1000))
                    while bench.emulator.counts.get("operator POST pods", 0) < 1000:
                        await asyncio.sleep(0.2)
                        if time.monotonic() - t0 > 900:
                            raise SystemExit("timed out waiting for 1,000 pods")
                    at_pods = rss_mib(proc.pid)
                    await asyncio.sleep(10)
                    later = rss_mib(proc.pid)
                    run = await bench.cluster.run("big")
                print(f"operator RSS idle:                          {idle:7.1f} MiB")
                print(
                    f"operator RSS, {args.tables} tables, 1,000 pods in flight: {at_pods:7.1f} MiB "
                    f"(reached after {time.monotonic() - t0 - 10:.1f} s)"
                )
                print(f"operator RSS 10 s later:                    {later:7.1f} MiB")
                tables = (run.get("status") or {}).get("tables", {})
                print(f"status.tables: {tables}")
            finally:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 30)


if __name__ == "__main__":
    asyncio.run(main())
