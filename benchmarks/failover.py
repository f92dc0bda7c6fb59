"""Leader failover of two operator replicas on the real kube-apiserver (issue 13 goal 5).

    python benchmarks/failover.py [--tables 1000] [--concurrency 32] [--kills 10]

NODE AGENT MODE: --synthetic-results (pods end at once with a valid synthetic result), so what
is measured is the operators' handover, not runner CPU. Two `rocky-operator run` replicas with
`--leader-election-lease` (chart defaults: lease 12 s, renew deadline 8 s, retry 1 s), each as
its own user. During one RockyRun the replica holding the Lease is SIGKILLed ``--kills`` times,
each time once the current leader has written the run's status itself; the killed replica
restarts as the standby. Printed: seconds from each SIGKILL to the other replica holding the
Lease (target <= 15 s) and to its first RockyRun status write (audit log), p50 / max; then
the run's end: attempts == tables, attempt pods created twice (target 0), 409s on pod creates.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb
from tests.support.control_plane import ControlPlane, audit_offset, binaries_dir
from tests.support.e2e import Rest, apply_crds, kubectl, wait_for
from tests.support.manifests import staging_run
from tests.support.replicas import (
    Replicas,
    apply,
    audit_events,
    complete,
    done_tables,
    first_action,
    pod_creates,
)

MODE = "node agent --synthetic-results (pods end at once with a valid synthetic result)"
NAMESPACE = "failover"


def make_warehouse(path: Path, tables: int) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute("BEGIN")
        con.execute("CREATE SCHEMA src__acme__us")
        for i in range(tables):
            con.execute(f"CREATE TABLE src__acme__us.t{i:06d} (id INTEGER)")
        con.execute("COMMIT")
    finally:
        con.close()


def status_write(cp: ControlPlane, since: int, user: str) -> Callable[[], datetime | None]:
    """A probe: when `user` first wrote a RockyRun status after audit offset `since`."""
    return lambda: first_action(audit_events(cp, since, NAMESPACE), user)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--state-dir", type=Path)
    args = parser.parse_args()
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="rocky-failover-"))
    state.mkdir(parents=True, exist_ok=True)
    warehouse = state / "warehouse.duckdb"
    make_warehouse(warehouse, args.tables)
    cp = ControlPlane(state / "cp", binaries_dir(), node_agent_args=["--synthetic-results"])
    with cp:
        print(f"control plane up in {cp.startup_seconds:.1f} s; {MODE}", flush=True)
        rest = Rest(cp)
        apply_crds(cp, "rockyruns.rocky.dev", "rockyschedules.rocky.dev")
        kubectl(cp, "create", "namespace", NAMESPACE)
        pair = Replicas(cp, NAMESPACE, state)
        try:
            pair.start("a")
            wait_for(lambda: pair.holder() == "a1", timeout=60, what="a1 to lead")
            pair.start("b")
            since = audit_offset(cp)
            apply(cp, NAMESPACE, staging_run("failover", warehouse, concurrency=args.concurrency))
            leases: list[float] = []
            actions: list[float] = []
            for kill in range(args.kills):
                leader = pair.holder()
                user = "operator" if leader.startswith("a") else "benchmark"
                mark = audit_offset(cp)
                wait_for(
                    status_write(cp, mark, user),
                    timeout=300,
                    what=f"{leader}'s own status write",
                )
                if complete(rest, NAMESPACE, "failover"):
                    print(f"the run completed after {kill} kills; use more --tables")
                    break
                other = "benchmark" if user == "operator" else "operator"
                mark = audit_offset(cp)
                killed_at = datetime.now(UTC)
                holder, took = pair.kill_leader()
                first = wait_for(
                    status_write(cp, mark, other),
                    timeout=300,
                    what=f"{holder}'s first status write",
                )
                leases.append(took)
                actions.append((first - killed_at).total_seconds())
                done = done_tables(rest, NAMESPACE, "failover")
                print(
                    f"kill {kill + 1}: {leader} -> {holder} holds the Lease after {took:.1f} s, "
                    f"first status write after {actions[-1]:.1f} s ({done} tables done)",
                    flush=True,
                )
            t = time.monotonic()
            status = wait_for(
                lambda: complete(rest, NAMESPACE, "failover"), timeout=3600, what="Complete"
            )
            creates, conflicts = pod_creates(audit_events(cp, since, NAMESPACE))
        finally:
            pair.stop()
    print(f"\n{MODE}; {args.tables} tables, concurrency {args.concurrency}")
    if leases:
        print(
            f"SIGKILL -> standby holds the Lease: p50 {statistics.median(leases):.1f} s, "
            f"max {max(leases):.1f} s (target <= 15 s) over {len(leases)} kills"
        )
        print(
            f"SIGKILL -> new leader's first status write: p50 {statistics.median(actions):.1f} s,"
            f" max {max(actions):.1f} s"
        )
    twice = sum(1 for n in creates.values() if n > 1)
    print(
        f"run Complete {time.monotonic() - t:.0f} s after the last kill: attempts "
        f"{status['tables']['attempts']} of {args.tables} tables; attempt pods created "
        f"{len(creates)}, twice {twice} (target 0), 409s on attempt pod creates {conflicts}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
