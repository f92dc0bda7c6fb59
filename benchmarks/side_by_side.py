"""Side by side on one control plane and node agent: a RockyRun of N trivial tables versus an
Indexed Job with `completions: N` running the same runner command, one table per index.

    python -m benchmarks.side_by_side --tables 1000 --parallelism 32
    python -m benchmarks.side_by_side --tables 200 --skip-rockyrun     # the Job side only
    python -m benchmarks.side_by_side --tables 200 --skip-job          # the RockyRun side only

Prints, for each side, the wall time until all N pods were created and until completion, and the
API requests each issued (from the audit log, attributed by user: the Job side is the
kube-controller-manager, the RockyRun side the operator; the node agent's requests are shown
apart since they are the same work on both sides), then the ratios.

Every table is a tiny DuckDB table (`src__bench.t0000` ...) copied with `full_refresh` by
`rocky-runner` into `bench_copy.copy.*` (the DuckDB file bench_copy.duckdb next to the warehouse).
The RockyRun discovers the tables (schemaPattern prefix `src__`, component `tenant`) and plans the
same tasks; the Job builds each pod's `ROCKY_TASK` from its completion index in a shell. Neither
side retries (RockyRun `retry.*.maxRetries: 0`, Job `backoffLimitPerIndex: 0`) and both run at
most `--parallelism` pods at once (`concurrency` / `parallelism`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from tests.support.control_plane import (
    REPO,
    ControlPlane,
    audit_counts,
    audit_offset,
    binaries_dir,
)
from tests.support.e2e import apply_yaml, kubectl, start_process, wait_for
from tests.support.kubeapi import KubeApi, KubeConfig

OPERATOR_USER = "rocky-operator"
KCM_USER = "system:kube-controller-manager"
AGENT_USER = "rocky-node-agent"


SOURCE_SCHEMA = "src__bench"
TARGET_CATALOG = "bench_copy"
TARGET_SCHEMA = "copy"


def make_warehouse(path: Path, tables: int) -> None:
    """A DuckDB file with `tables` tiny source tables in schema `src__bench`."""
    con = duckdb.connect(str(path))
    try:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {SOURCE_SCHEMA}")
        for i in range(tables):
            con.execute(
                f"CREATE OR REPLACE TABLE {SOURCE_SCHEMA}.t{i:04d} AS SELECT range AS id, "
                "now()::TIMESTAMP AS _fivetran_synced FROM range(3)"
            )
    finally:
        con.close()


def target_file(warehouse: Path) -> Path:
    return warehouse.parent / f"{TARGET_CATALOG}.duckdb"


def copied_tables(warehouse: Path) -> int:
    """How many target tables exist (checks the runners' "copied" claims against the file)."""
    if not target_file(warehouse).exists():
        return 0
    con = duckdb.connect(str(target_file(warehouse)), read_only=True)
    try:
        row = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ?",
            [TARGET_SCHEMA],
        ).fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def drop_targets(warehouse: Path) -> None:
    for path in (target_file(warehouse), Path(f"{target_file(warehouse)}.wal")):
        path.unlink(missing_ok=True)


def rockyrun_manifest(name: str, warehouse: Path, parallelism: int) -> dict[str, Any]:
    """The RockyRun over the same tables, doing the same per-table work as the Job."""
    return {
        "apiVersion": "rocky.dev/v1alpha1",
        "kind": "RockyRun",
        "metadata": {"name": name},
        "spec": {
            "adapter": {"type": "duckdb", "duckdb": {"path": str(warehouse)}},
            "source": {
                "schemaPattern": {"prefix": "src__", "separator": "__", "components": ["tenant"]}
            },
            "target": {
                "catalogTemplate": "{tenant}_copy",
                "schemaTemplate": TARGET_SCHEMA,
            },
            "strategy": "full_refresh",
            "concurrency": parallelism,
            "failFast": False,
            "retry": {
                kind: {"maxRetries": 0}
                for kind in (
                    "connection-failed",
                    "auth-failed",
                    "query-rejected",
                    "transient",
                    "quota-exceeded",
                    "not-found",
                    "unknown",
                )
            },
            "runner": {"command": ["rocky-runner"], "activeDeadlineSeconds": 600},
        },
    }


def job_manifest(name: str, warehouse: Path, tables: int, parallelism: int) -> dict[str, Any]:
    """An Indexed Job whose pod i copies table raw.t<i> with rocky-runner."""
    task_template = json.dumps(
        {
            "asset_key": ["duckdb", "bench", "t{IDX}"],
            "source": {"schema": SOURCE_SCHEMA, "table": "t{IDX}"},
            "target": {"catalog": TARGET_CATALOG, "schema": TARGET_SCHEMA, "table": "t{IDX}"},
            "strategy": "full_refresh",
            "adapter": {"type": "duckdb", "duckdb": {"path": str(warehouse)}},
            "timeout_seconds": 300,
        }
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completionMode": "Indexed",
            "completions": tables,
            "parallelism": parallelism,
            "backoffLimitPerIndex": 0,
            "maxFailedIndexes": tables,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "runner",
                            "image": "rocky-runner:bench",
                            # The runner wants a 4-digit table suffix: pad the index in a shell.
                            "command": [
                                "sh",
                                "-c",
                                'idx=$(printf %04d "$JOB_COMPLETION_INDEX"); '
                                'ROCKY_TASK=$(printf %s "$TASK" | sed "s/{IDX}/$idx/g"); '
                                "export ROCKY_TASK; exec rocky-runner",
                            ],
                            "env": [
                                {"name": "TASK", "value": task_template},
                                {"name": "ROCKY_RESULT_PATH", "value": "/dev/termination-log"},
                            ],
                        }
                    ],
                }
            },
        },
    }


@dataclass
class SideResult:
    name: str
    all_created_s: float
    completed_s: float
    requests: dict[str, int]


class PodCounter:
    """Watches pods of a namespace in a thread; records when the N-th distinct pod appeared."""

    def __init__(self, cp: ControlPlane, namespace: str, target: int) -> None:
        self.cp = cp
        self.namespace = namespace
        self.target = target
        self.seen: set[str] = set()
        self.reached_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import asyncio

        async def watch() -> None:
            async with KubeApi(
                KubeConfig.load(self.cp.kubeconfig_for("benchmark")), user_agent="bench"
            ) as api:
                path = f"/api/v1/namespaces/{self.namespace}/pods"
                rv = (await api.get(path))["metadata"]["resourceVersion"]
                while not self._stop.is_set():
                    async for event in api.watch(path, {"resourceVersion": rv}, timeout_seconds=5):
                        obj = event.get("object", {})
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if event["type"] == "ADDED":
                            self.seen.add(obj["metadata"]["uid"])
                            if len(self.seen) >= self.target and self.reached_at is None:
                                self.reached_at = time.monotonic()
                        if self._stop.is_set():
                            return

        asyncio.run(watch())


def measure(
    cp: ControlPlane,
    name: str,
    namespace: str,
    tables: int,
    submit: Callable[[], object],
    finished: Callable[[], bool],
    timeout: float,
) -> SideResult:
    counter = PodCounter(cp, namespace, tables)
    counter.start()
    time.sleep(0.5)
    offset = audit_offset(cp)
    t0 = time.monotonic()
    submit()
    wait_for(finished, timeout=timeout, interval=1.0, what=f"{name} to complete")
    t_done = time.monotonic() - t0
    counter.stop()
    time.sleep(2)  # the audit backend writes asynchronously
    counts = audit_counts(cp, offset)
    return SideResult(
        name,
        (counter.reached_at - t0) if counter.reached_at else float("nan"),
        t_done,
        dict(counts),
    )


def run_job(cp: ControlPlane, warehouse: Path, tables: int, parallelism: int) -> SideResult:
    ns = "bench-job"
    kubectl(cp, "create", "namespace", ns)
    manifest = json.dumps(job_manifest("copy", warehouse, tables, parallelism))

    def done() -> bool:
        out = kubectl(cp, "-n", ns, "get", "job", "copy", "-o", "json").stdout
        conds = json.loads(out).get("status", {}).get("conditions", [])
        return any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conds)

    return measure(
        cp,
        "Indexed Job",
        ns,
        tables,
        lambda: apply_yaml(cp, manifest, namespace=ns),
        done,
        timeout=3600,
    )


def run_rockyrun(
    cp: ControlPlane, warehouse: Path, tables: int, parallelism: int, log_dir: Path
) -> SideResult:
    """Apply the CRD, start the operator as a process (user `rocky-operator`), apply the run."""
    ns = "bench-rockyrun"
    kubectl(cp, "create", "namespace", ns)
    kubectl(cp, "apply", "-f", str(REPO / "crds" / "rockyruns.rocky.dev.yaml"))
    kubectl(cp, "wait", "--for=condition=Established", "crd/rockyruns.rocky.dev")
    exe = Path(sys.executable).parent / "rocky-operator"
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "rocky_operator.cli"]
    operator = start_process(
        cp, [*argv, "run", "--namespace", ns, "--metrics-port", "0"], log=log_dir / "operator.log"
    )
    manifest = json.dumps(rockyrun_manifest("bench", warehouse, parallelism))
    try:

        def done() -> bool:
            if operator.popen.poll() is not None:
                raise RuntimeError(f"operator exited:\n{operator.output()[-3000:]}")
            out = kubectl(cp, "-n", ns, "get", "rockyrun", "bench", "-o", "json").stdout
            conds = json.loads(out).get("status", {}).get("conditions", [])
            return any(c["type"] == "Complete" and c["status"] == "True" for c in conds)

        return measure(
            cp,
            "RockyRun",
            ns,
            tables,
            lambda: apply_yaml(cp, manifest, namespace=ns),
            done,
            timeout=3600,
        )
    finally:
        operator.terminate()


def report(sides: list[SideResult]) -> None:
    print(
        f"{'side':<14}{'all pods created':>18}{'completed':>12}{'controller req':>16}"
        f"{'node agent req':>16}"
    )
    for s in sides:
        ctl = s.requests.get(OPERATOR_USER if s.name == "RockyRun" else KCM_USER, 0)
        print(
            f"{s.name:<14}{s.all_created_s:>17.1f}s{s.completed_s:>11.1f}s{ctl:>16}"
            f"{s.requests.get(AGENT_USER, 0):>16}"
        )
    if len(sides) == 2:
        rr, job = (sides[1], sides[0]) if sides[1].name == "RockyRun" else (sides[0], sides[1])
        ctl_rr = rr.requests.get(OPERATOR_USER, 0)
        ctl_job = job.requests.get(KCM_USER, 0) or 1
        print(
            f"ratios RockyRun/Job: all-created {rr.all_created_s / job.all_created_s:.2f}, "
            f"completed {rr.completed_s / job.completed_s:.2f}, "
            f"controller requests {ctl_rr / ctl_job:.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--parallelism", type=int, default=32)
    parser.add_argument("--skip-rockyrun", action="store_true", help="run only the Job")
    parser.add_argument("--skip-job", action="store_true", help="run only the RockyRun")
    parser.add_argument("--state-dir", type=Path)
    args = parser.parse_args(argv)

    state = args.state_dir or Path(tempfile.mkdtemp(prefix="rocky-bench-"))
    warehouse = state / "warehouse.duckdb"
    state.mkdir(parents=True, exist_ok=True)
    make_warehouse(warehouse, args.tables)
    cp = ControlPlane(state / "cp", binaries_dir(), max_pods=max(64, args.parallelism))
    with cp:
        print(f"control plane up in {cp.startup_seconds:.1f}s", file=sys.stderr)
        sides: list[SideResult] = []
        if not args.skip_job:
            sides.append(run_job(cp, warehouse, args.tables, args.parallelism))
            job = json.loads(
                kubectl(cp, "-n", "bench-job", "get", "job", "copy", "-o", "json").stdout
            )
            print(
                f"Indexed Job: {job['status'].get('succeeded', 0)} succeeded, "
                f"{job['status'].get('failed', 0)} failed; "
                f"{copied_tables(warehouse)} target tables exist"
            )
        if not args.skip_rockyrun:
            drop_targets(warehouse)
            sides.append(run_rockyrun(cp, warehouse, args.tables, args.parallelism, state))
            run = json.loads(
                kubectl(cp, "-n", "bench-rockyrun", "get", "rockyrun", "bench", "-o", "json").stdout
            )
            counts = run["status"]["tables"]
            print(
                f"RockyRun: {run['status']['phase']}, {counts['copied']} copied, "
                f"{counts['failed']} failed {run['status'].get('failures', {})}; "
                f"{copied_tables(warehouse)} target tables exist"
            )
        report(sides)
        for s in sides:
            print(f"{s.name} requests by user: {json.dumps(s.requests, sort_keys=True)}")
    os.environ.pop("KUBECONFIG", None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
