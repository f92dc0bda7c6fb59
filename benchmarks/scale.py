"""One RockyRun of N tables on the real kube-apiserver, pods ending at once (issue 13 goal 1).

    python benchmarks/scale.py --tables 2000 [--concurrency 500] [--fail-every 50]
    python benchmarks/scale.py --tables 100000 --schemas 1000

NODE AGENT MODE: --synthetic-results. The node agent runs no process: every pod ends at once
with a valid synthetic runner result (tests/support/node_agent.py), so what is measured is
the operator and the API server, not runner CPU. Every ``--fail-every``-th table is named
``fail_<i>`` and its pod fails with ``query-rejected`` (planted failures).

The control plane is tests/support/control_plane.py (etcd, kube-apiserver with an audit log,
kube-controller-manager, the node agent); the operator runs as its own process
(``rocky-operator run``, production batching defaults: --batch-seconds 1,
--status-interval-seconds 5) as user ``rocky-operator``. Figures printed, against the
targets of issue 13:

- operator CPU seconds per table (user + system of the operator process from the RockyRun's
  creation to its Complete condition; discovery and planning included): target <= 5 ms;
- operator peak RSS (VmHWM): target <= 500 MB;
- RockyRun object size, compact JSON, at the end: target <= 250 KB;
- the complete output (``rocky-operator output``) has every planted failure, validates
  against contracts/rocky-run.schema.json and parses with rocky_sdk;
- API requests per table by the operator (kopf included), from the audit log: target <= 2.2;
- last pod -> final status: from the node agent's last pod status write to the operator's
  final RockyRun status write (audit log times), per run; p95 over ``--repeat`` runs:
  target <= 1 s. Also the p50/p95 over all pods of "pod terminal -> pod deleted by the
  operator" (the operator deletes a pod once its result is journaled).

The source warehouse is a DuckDB file with ``--schemas`` schemas ``src__acme__r<j>`` (each
its own target file ``acme_r<j>.duckdb``: DuckDB allows one writer per file, so a run's
concurrency is bounded by the number of target files it writes; nothing is written here).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import duckdb
from audit_log import Request, by_verb_and_resource, read_requests
from tests.support.control_plane import ControlPlane, audit_offset, binaries_dir
from tests.support.e2e import OperatorProcess, Rest, apply_crds, start_process, wait_for
from tests.support.manifests import staging_run

OPERATOR_USER = "rocky-operator"
RUNS = "/apis/rocky.dev/v1alpha1"
AGENT_USER = "rocky-node-agent"
MODE = "node agent --synthetic-results (pods end at once with a valid synthetic result)"


def make_warehouse(path: Path, tables: int, schemas: int, fail_every: int) -> int:
    """``tables`` tables spread over ``schemas`` schemas; returns how many are planted to fail."""
    con = duckdb.connect(str(path))
    planted = 0
    try:
        con.execute("BEGIN")
        for j in range(schemas):
            con.execute(f"CREATE SCHEMA src__acme__r{j:04d}")
        for i in range(tables):
            fail = fail_every > 0 and i % fail_every == fail_every - 1
            planted += fail
            name = f"fail_{i:06d}" if fail else f"t{i:06d}"
            con.execute(f"CREATE TABLE src__acme__r{i % schemas:04d}.{name} (id INTEGER)")
        con.execute("COMMIT")
    finally:
        con.close()
    return planted


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ProfiledOperator(OperatorProcess):
    """The operator under cProfile (``--profile``; its CPU figure then includes the profiler)."""

    def __init__(self, *args: Any, profile: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.profile = profile

    def start(self) -> None:
        self.proc = start_process(
            self.cp,
            [
                sys.executable,
                "-m",
                "cProfile",
                "-o",
                str(self.profile),
                "-m",
                "rocky_operator.cli",
                "run",
                "--namespace",
                self.namespace,
                "--metrics-host",
                "127.0.0.1",
                "--metrics-port",
                str(self.port),
                *self.extra_args,
            ],
            log=self.log,
            env=self.env,
        )
        wait_for(self._healthy, timeout=60, what="the operator's /healthz")


@dataclass
class RunFigures:
    tables: int
    seconds: float
    cpu_per_table_ms: float
    peak_rss_mb: float
    object_kb: float
    requests_per_table: float
    requests: dict[str, int]
    last_pod_to_final_s: float
    terminal_to_deleted_p50: float
    terminal_to_deleted_p95: float
    output_ok: str


def latencies(requests: list[Request], namespace: str) -> tuple[float, float, float]:
    """(last pod -> final status, p50 and p95 of pod terminal -> deleted), seconds."""
    terminal: dict[str, float] = {}
    deleted: dict[str, float] = {}
    final_status = 0.0
    for r in requests:
        if r.namespace != namespace:
            continue
        t = r.received.timestamp()
        if r.user == AGENT_USER and r.verb == "patch" and r.resource == "pods/status":
            terminal[r.name] = t  # synthetic pods: one status write, the terminal one
        elif r.user == OPERATOR_USER and r.verb == "delete" and r.resource == "pods":
            deleted.setdefault(r.name, t)
        elif r.user == OPERATOR_USER and r.verb == "patch" and r.resource == "rockyruns/status":
            final_status = max(final_status, t)
    waits = sorted(deleted[n] - terminal[n] for n in terminal if n in deleted)
    last_pod = max(terminal.values(), default=final_status)
    if not waits:
        return final_status - last_pod, float("nan"), float("nan")
    p95 = waits[min(len(waits) - 1, int(len(waits) * 0.95))]
    return final_status - last_pod, statistics.median(waits), p95


def check_output(cp: ControlPlane, namespace: str, name: str, planted: int, tables: int) -> str:
    """The complete output through the CLI: every planted failure, valid, parseable."""
    import jsonschema
    import rocky_sdk
    from tests.support.rocky_schema import rocky_schema

    exe = Path(sys.executable).parent / "rocky-operator"
    proc = subprocess.run(
        [str(exe), "output", name, "-n", namespace],
        capture_output=True,
        text=True,
        env=cp.env("operator"),
        timeout=600,
        check=False,
    )
    if proc.returncode not in (0, 2):
        return f"FAILED: rocky-operator output exited {proc.returncode}: {proc.stderr[-500:]}"
    output = json.loads(proc.stdout)
    jsonschema.Draft7Validator(rocky_schema()).validate(output)
    rocky_sdk.parse_rocky_output(proc.stdout)
    failed = [e for e in output.get("errors") or [] if "fail_" in json.dumps(e.get("asset_key"))]
    copied = len(output.get("materializations") or [])
    ok = len(failed) == planted and copied == tables - planted
    return (
        f"{'ok' if ok else 'MISMATCH'}: {len(output.get('errors') or [])} errors "
        f"({len(failed)} of {planted} planted failures), {copied} materializations, "
        f"{len(proc.stdout) / 1e6:.1f} MB; schema-valid, parsed by rocky_sdk"
    )


def one_run(
    cp: ControlPlane, rest: Rest, state: Path, index: int, args: argparse.Namespace, planted: int
) -> RunFigures:
    namespace = f"scale-{index}"
    rest.post("/api/v1/namespaces", {"metadata": {"name": namespace}})
    settings = ("--batch-seconds", "1", "--status-interval-seconds", "5")
    log = state / f"operator-{index}.log"
    operator = (
        ProfiledOperator(cp, namespace, log, settings, profile=args.profile)
        if args.profile
        else OperatorProcess(cp, namespace, log, extra_args=settings)
    )
    operator.start()
    try:
        assert operator.proc is not None
        pid = operator.proc.popen.pid
        offset = audit_offset(cp)
        cpu0 = proc_cpu_seconds(pid)
        t0 = time.monotonic()
        rest.post(
            f"{RUNS}/namespaces/{namespace}/rockyruns",
            staging_run("scale", state / "warehouse.duckdb", concurrency=args.concurrency),
        )

        def complete() -> dict[str, Any] | None:
            if operator.proc is not None and operator.proc.popen.poll() is not None:
                raise RuntimeError(f"operator exited:\n{operator.proc.output()[-3000:]}")
            run = rest.get(f"{RUNS}/namespaces/{namespace}/rockyruns/scale")
            conds = (run.get("status") or {}).get("conditions") or []
            done = any(c["type"] == "Complete" and c["status"] == "True" for c in conds)
            return run if done else None

        run = wait_for(complete, timeout=args.timeout, interval=1.0, what="the run to complete")
        seconds = time.monotonic() - t0
        cpu = proc_cpu_seconds(pid) - cpu0
        rss = proc_peak_rss_mb(pid)
    finally:
        operator.stop()
    time.sleep(3)  # the audit backend writes in batches
    requests = read_requests(cp.audit_log, offset)
    ops = [r for r in requests if r.user == OPERATOR_USER]
    last_to_final, p50, p95 = latencies(requests, namespace)
    counts = run["status"]["tables"]
    print(
        f"   run {index}: {run['status']['phase']}, {counts['copied']} copied, "
        f"{counts['failed']} failed in {seconds:.1f} s",
        flush=True,
    )
    return RunFigures(
        tables=args.tables,
        seconds=seconds,
        cpu_per_table_ms=cpu / args.tables * 1000,
        peak_rss_mb=rss,
        object_kb=len(json.dumps(run, separators=(",", ":"))) / 1000,
        requests_per_table=len(ops) / args.tables,
        requests=dict(by_verb_and_resource(requests, OPERATOR_USER).most_common()),
        last_pod_to_final_s=last_to_final,
        terminal_to_deleted_p50=p50,
        terminal_to_deleted_p95=p95,
        output_ok=check_output(cp, namespace, "scale", planted, args.tables),
    )


def report(runs: list[RunFigures], args: argparse.Namespace, planted: int) -> None:
    def line(label: str, value: float, unit: str, target: float) -> None:
        verdict = "ok" if value <= target else f"MISSED by {value / target:.1f}x"
        print(f"   {label:<28}{value:9.2f} {unit:<3} target <= {target:g} {unit}: {verdict}")

    print(
        f"== scale: {args.tables} tables in one RockyRun, concurrency {args.concurrency}, "
        f"{args.schemas} schemas / target files, {planted} planted failures"
    )
    print(f"   mode: {MODE}")
    for i, r in enumerate(runs):
        print(f"-- run {i}: {r.seconds:.1f} s ({r.tables / r.seconds:.0f} tables/s)")
        line("operator CPU per table", r.cpu_per_table_ms, "ms", 5)
        line("operator peak RSS", r.peak_rss_mb, "MB", 500)
        line("RockyRun object (compact)", r.object_kb, "KB", 250)
        line("operator API requests/table", r.requests_per_table, "", 2.2)
        line("last pod -> final status", r.last_pod_to_final_s, "s", 1)
        print(
            f"   pod terminal -> deleted     p50 {r.terminal_to_deleted_p50:.2f} s, "
            f"p95 {r.terminal_to_deleted_p95:.2f} s"
        )
        print(f"   complete output             {r.output_ok}")
        print(f"   operator requests by verb: {json.dumps(r.requests)}")
    finals = sorted(r.last_pod_to_final_s for r in runs)
    p95 = finals[min(len(finals) - 1, int(len(finals) * 0.95))]
    print(f"== over {len(runs)} run(s):")
    line("last pod -> final status p95", p95, "s", 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=2000)
    parser.add_argument(
        "--schemas", type=int, help="default: max(2 x concurrency, tables / 100), at most tables"
    )
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument(
        "--fail-every", type=int, default=50, help="plant a failure every N tables (0: none)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs, one after another")
    parser.add_argument("--timeout", type=float, default=7200)
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--profile", type=Path, help="run the operator under cProfile, stats here")
    args = parser.parse_args()
    if args.schemas is None:
        args.schemas = min(args.tables, max(2 * args.concurrency, args.tables // 100))
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="rocky-scale-"))
    state.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    planted = make_warehouse(state / "warehouse.duckdb", args.tables, args.schemas, args.fail_every)
    print(
        f"warehouse: {args.tables} tables in {args.schemas} schemas, {time.monotonic() - t:.1f} s",
        flush=True,
    )
    cp = ControlPlane(
        state / "cp",
        binaries_dir(),
        node_agent_args=["--synthetic-results", "--synthetic-fail-pattern", "/fail_"],
    )
    with cp:
        print(f"control plane up in {cp.startup_seconds:.1f} s; {MODE}", flush=True)
        rest = Rest(cp)
        apply_crds(cp, "rockyruns.rocky.dev")
        runs = [one_run(cp, rest, state, i, args, planted) for i in range(args.repeat)]
    report(runs, args, planted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
