"""Side by side on one control plane and node agent: a RockyRun of N tables versus an Indexed
Job with `completions: N` running the same runner task, one table per index (issue 13 goal 7).

    python benchmarks/side_by_side.py --tables 1000 --parallelism 32 --repeat 3
    python benchmarks/side_by_side.py --tables 1000 --synthetic           # no-op pods
    python benchmarks/side_by_side.py --tables 200 --skip-rockyrun        # the Job side only

Fairness:
- the sides alternate: repetition 0 runs the Job first, repetition 1 the RockyRun first, ...;
  each side of each repetition gets a namespace of its own (`--repeat`, default 3);
- requests are counted the same way on both sides, from the audit log: every request the
  side's controller (the kube-controller-manager's job controller, or the operator and kopf)
  made in the side's namespace between submitting the workload and its completion, each
  request once. Cluster-wide informers (the controller manager's, started before) are not in
  a namespace and are not counted; the operator is started, and its watches established,
  before the count starts too. Deletes are printed apart (the operator deletes each finished
  pod, the Job controller removes its tracking finalizer from each instead) and the ratio is
  given with and without them;
- both sides run at most `--parallelism` pods at once and never retry (RockyRun
  `retry.*.maxRetries: 0`, Job `backoffLimitPerIndex: 0`).

Modes:
- default: every pod runs `rocky-runner` copying one tiny DuckDB table with `full_refresh`;
- `--synthetic` (NO-OP PODS): the node agent runs with `--synthetic-results`: no process, every
  pod ends at once with a valid runner result, so controller speed is compared, not runner
  CPU.

Tables: N tiny tables `src__b<j>.t<i>` in `--schemas` schemas (table i in schema i mod S),
copied into `b<j>_copy.copy.t<i>`, one DuckDB target file per schema (`b<j>_copy.duckdb`).
DuckDB allows one writer per file: the RockyRun runs one table per target file at a time
(write groups), and the Job's consecutive indexes fall into different files, so neither side
waits on a file lock while `--schemas` >= `--parallelism`. Printed per repetition: the time
from submitting to all N pods created (RockyRun: discovery and planning included) and to
completion, the controller requests; then the median ratios RockyRun / Indexed Job.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import duckdb
from audit_log import Request, read_requests
from tests.support.control_plane import ControlPlane, audit_offset, binaries_dir
from tests.support.e2e import OperatorProcess, Rest, apply_crds, wait_for
from tests.support.kubeapi import KubeApi, KubeConfig

OPERATOR_USER = "rocky-operator"
KCM_USER = "system:kube-controller-manager"
AGENT_USER = "rocky-node-agent"
RUNS = "/apis/rocky.dev/v1alpha1"
JOBS = "/apis/batch/v1"
TARGET_SCHEMA = "copy"


def make_warehouse(path: Path, tables: int, schemas: int) -> None:
    """`tables` tiny source tables, table i in schema `src__b<i mod schemas>`."""
    con = duckdb.connect(str(path))
    try:
        con.execute("BEGIN")
        for j in range(schemas):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS src__b{j:03d}")
        for i in range(tables):
            con.execute(
                f"CREATE OR REPLACE TABLE src__b{i % schemas:03d}.t{i:04d} AS SELECT range AS id, "
                "now()::TIMESTAMP AS _fivetran_synced FROM range(3)"
            )
        con.execute("COMMIT")
    finally:
        con.close()


def target_files(warehouse: Path) -> list[Path]:
    return sorted(warehouse.parent.glob("b*_copy.duckdb"))


def copied_tables(warehouse: Path) -> int:
    """How many target tables exist (checks the runners' "copied" claims against the files)."""
    found = 0
    for path in target_files(warehouse):
        con = duckdb.connect(str(path), read_only=True)
        try:
            row = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = ?",
                [TARGET_SCHEMA],
            ).fetchone()
            found += int(row[0]) if row else 0
        finally:
            con.close()
    return found


def drop_targets(warehouse: Path) -> None:
    for path in target_files(warehouse):
        path.unlink(missing_ok=True)
        Path(f"{path}.wal").unlink(missing_ok=True)


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
            "target": {"catalogTemplate": "{tenant}_copy", "schemaTemplate": TARGET_SCHEMA},
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


def job_manifest(
    name: str, warehouse: Path, tables: int, schemas: int, parallelism: int
) -> dict[str, Any]:
    """An Indexed Job whose pod i copies table src__b<i mod S>.t<i> with rocky-runner."""
    task_template = json.dumps(
        {
            "asset_key": ["duckdb", "b{SCHEMA}", "t{IDX}"],
            "source": {"schema": "src__b{SCHEMA}", "table": "t{IDX}"},
            "target": {"catalog": "b{SCHEMA}_copy", "schema": TARGET_SCHEMA, "table": "t{IDX}"},
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
                            # The task names a 4-digit table and 3-digit schema: a shell pads.
                            "command": [
                                "sh",
                                "-c",
                                'idx=$(printf %04d "$JOB_COMPLETION_INDEX"); '
                                f"s=$(printf %03d $((JOB_COMPLETION_INDEX % {schemas}))); "
                                'ROCKY_TASK=$(printf %s "$TASK" | '
                                'sed "s/{IDX}/$idx/g; s/{SCHEMA}/$s/g"); '
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
    repetition: int
    all_created_s: float
    completed_s: float
    requests: dict[str, int]
    """Requests of the side's controller in its namespace, by "verb resource"."""
    agent_requests: int
    verdict: str

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    @property
    def deletes(self) -> int:
        return sum(v for k, v in self.requests.items() if k.startswith("delete "))


class PodCounter:
    """Watches pods of a namespace in a thread; records when the N-th distinct pod appeared."""

    def __init__(self, cp: ControlPlane, namespace: str, target: int) -> None:
        self.cp = cp
        self.namespace = namespace
        self.target = target
        self.seen: set[str] = set()
        self.reached_at: float | None = None
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.ready.wait(30)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        import asyncio

        async def watch() -> None:
            async with KubeApi(
                KubeConfig.load(self.cp.kubeconfig_for("benchmark")), user_agent="bench"
            ) as api:
                path = f"/api/v1/namespaces/{self.namespace}/pods"
                rv = (await api.get(path))["metadata"]["resourceVersion"]
                self.ready.set()
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
    side: str,
    repetition: int,
    namespace: str,
    controller_user: str,
    tables: int,
    submit: Callable[[], object],
    finished: Callable[[], str | None],
) -> SideResult:
    counter = PodCounter(cp, namespace, tables)
    counter.start()
    offset = audit_offset(cp)
    t0 = time.monotonic()
    submit()
    verdict = wait_for(finished, timeout=3600, interval=0.25, what=f"{side} to complete")
    t_done = time.monotonic() - t0
    counter.stop()
    time.sleep(3)  # the audit backend writes in batches
    requests = [r for r in read_requests(cp.audit_log, offset) if r.namespace == namespace]
    return SideResult(
        side,
        repetition,
        (counter.reached_at - t0) if counter.reached_at else float("nan"),
        t_done,
        _by_verb(requests, controller_user),
        sum(1 for r in requests if r.user == AGENT_USER),
        verdict,
    )


def _by_verb(requests: list[Request], user: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in requests:
        if r.user == user:
            key = f"{r.verb} {r.resource}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def run_job(
    cp: ControlPlane, rest: Rest, warehouse: Path, args: argparse.Namespace, repetition: int
) -> SideResult:
    ns = f"bench-job-{repetition}"
    rest.post("/api/v1/namespaces", {"metadata": {"name": ns}})
    manifest = job_manifest("copy", warehouse, args.tables, args.schemas, args.parallelism)

    def done() -> str | None:
        job = rest.get(f"{JOBS}/namespaces/{ns}/jobs/copy")
        status = job.get("status") or {}
        conds = status.get("conditions") or []
        if any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conds):
            return f"{status.get('succeeded', 0)} succeeded, {status.get('failed', 0)} failed"
        return None

    return measure(
        cp,
        "Indexed Job",
        repetition,
        ns,
        KCM_USER,
        args.tables,
        lambda: rest.post(f"{JOBS}/namespaces/{ns}/jobs", manifest),
        done,
    )


def run_rockyrun(
    cp: ControlPlane,
    rest: Rest,
    warehouse: Path,
    args: argparse.Namespace,
    repetition: int,
    state: Path,
) -> SideResult:
    """Start the operator (user `rocky-operator`, production batching defaults), then the run."""
    ns = f"bench-rockyrun-{repetition}"
    rest.post("/api/v1/namespaces", {"metadata": {"name": ns}})
    operator = OperatorProcess(
        cp,
        ns,
        state / f"operator-{repetition}.log",
        extra_args=("--batch-seconds", "1", "--status-interval-seconds", "5"),
    )
    operator.start()
    manifest = rockyrun_manifest("bench", warehouse, args.parallelism)
    try:

        def done() -> str | None:
            if operator.proc is not None and operator.proc.popen.poll() is not None:
                raise RuntimeError(f"operator exited:\n{operator.proc.output()[-3000:]}")
            run = rest.get(f"{RUNS}/namespaces/{ns}/rockyruns/bench")
            status = run.get("status") or {}
            conds = status.get("conditions") or []
            if any(c["type"] == "Complete" and c["status"] == "True" for c in conds):
                counts = status["tables"]
                return (
                    f"{status['phase']}: {counts['copied']} copied, {counts['failed']} failed "
                    f"{status.get('failures', {})}"
                )
            return None

        return measure(
            cp,
            "RockyRun",
            repetition,
            ns,
            OPERATOR_USER,
            args.tables,
            lambda: rest.post(f"{RUNS}/namespaces/{ns}/rockyruns", manifest),
            done,
        )
    finally:
        operator.stop()


def report(sides: list[SideResult], args: argparse.Namespace) -> None:
    mode = (
        "NO-OP PODS (node agent --synthetic-results): controller speed"
        if args.synthetic
        else "rocky-runner copies one DuckDB table per pod"
    )
    print(
        f"== side by side: {args.tables} tables, parallelism {args.parallelism}, "
        f"{args.schemas} target files, {args.repeat} repetitions alternating; mode: {mode}"
    )
    print(
        f"{'rep':<4}{'side':<13}{'all pods created':>17}{'completed':>11}{'ctl req':>9}"
        f"{'of which del':>13}{'agent req':>10}  result"
    )
    for s in sides:
        print(
            f"{s.repetition:<4}{s.name:<13}{s.all_created_s:>16.1f}s{s.completed_s:>10.1f}s"
            f"{s.total:>9}{s.deletes:>13}{s.agent_requests:>10}  {s.verdict}"
        )
    pairs = []
    for rep in range(args.repeat):
        rr = [s for s in sides if s.repetition == rep and s.name == "RockyRun"]
        job = [s for s in sides if s.repetition == rep and s.name == "Indexed Job"]
        if rr and job:
            pairs.append((rr[0], job[0]))
    if not pairs:
        return

    def ratio(f: Callable[[SideResult], float]) -> str:
        values = [f(rr) / max(f(job), 1e-9) for rr, job in pairs]
        return f"{statistics.median(values):.2f} (" + ", ".join(f"{v:.2f}" for v in values) + ")"

    print("ratios RockyRun / Indexed Job, median (per repetition):")
    print(f"   time to all pods created     {ratio(lambda s: s.all_created_s)}   target <= 1.0")
    print(f"   time to completion           {ratio(lambda s: s.completed_s)}   target <= 1.0")
    print(f"   controller requests          {ratio(lambda s: s.total)}")
    print(f"   controller requests, no del. {ratio(lambda s: s.total - s.deletes)}")
    for s in sides:
        print(f"{s.name} rep {s.repetition} requests: {json.dumps(s.requests)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--parallelism", type=int, default=32)
    parser.add_argument("--schemas", type=int, help="target files (default 2 x parallelism)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--synthetic", action="store_true", help="no-op pods: node agent --synthetic-results"
    )
    parser.add_argument("--skip-rockyrun", action="store_true", help="run only the Job")
    parser.add_argument("--skip-job", action="store_true", help="run only the RockyRun")
    parser.add_argument("--state-dir", type=Path)
    args = parser.parse_args(argv)
    args.schemas = min(args.schemas or 2 * args.parallelism, args.tables)

    state = args.state_dir or Path(tempfile.mkdtemp(prefix="rocky-bench-"))
    state.mkdir(parents=True, exist_ok=True)
    warehouse = state / "warehouse.duckdb"
    make_warehouse(warehouse, args.tables, args.schemas)
    cp = ControlPlane(
        state / "cp",
        binaries_dir(),
        max_pods=max(64, args.parallelism),
        node_agent_args=["--synthetic-results"] if args.synthetic else [],
    )
    sides: list[SideResult] = []
    with cp:
        print(f"control plane up in {cp.startup_seconds:.1f}s", file=sys.stderr)
        rest = Rest(cp)
        apply_crds(cp, "rockyruns.rocky.dev")
        for rep in range(args.repeat):
            order = ["job", "rockyrun"] if rep % 2 == 0 else ["rockyrun", "job"]
            for side in order:
                if side == "job" and not args.skip_job:
                    drop_targets(warehouse)
                    sides.append(run_job(cp, rest, warehouse, args, rep))
                elif side == "rockyrun" and not args.skip_rockyrun:
                    drop_targets(warehouse)
                    sides.append(run_rockyrun(cp, rest, warehouse, args, rep, state))
                else:
                    continue
                copied = "-" if args.synthetic else str(copied_tables(warehouse))
                print(
                    f"rep {rep} {sides[-1].name}: {sides[-1].verdict}; "
                    f"{copied} target tables exist; "
                    f"{sides[-1].completed_s:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    report(sides, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
