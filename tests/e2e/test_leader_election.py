"""Two `rocky-operator run` replicas, one leader (issue 13 goal 5), on the real kube-apiserver.

Both replicas run with `--leader-election-lease`; each authenticates as its own user
(`rocky-operator`, `rocky-benchmark`) so the audit log tells their requests apart. Checked:

- the standby makes no request but Lease reads while the leader drives a run;
- a SIGKILL of the leader (a child process) -> the standby holds the Lease within 15 s
  (measured and printed) and completes the run, no attempt started twice;
- chaos: during a 200-table run the leader is killed 5 times (each killed replica restarts
  as the new standby) -> the final output is identical to an uninterrupted run of the same
  tables, and every attempt's pod was created exactly once.

Runner pods run a few lines of Python instead of `rocky-runner` (a command override): they
write a valid runner result for their table after a short sleep, so 200 pods are cheap on a
loaded 2-core machine while each still runs as a process under the node agent. Tables named
`fail_*` fail with `query-rejected`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from tests.support.control_plane import ControlPlane, audit_offset
from tests.support.e2e import Rest, apply_crds, wait_for
from tests.support.manifests import staging_run
from tests.support.replicas import (
    USERNAMES,
    Replicas,
    apply,
    audit_events,
    complete,
    done_tables,
    first_action,
    pod_creates,
)

from rocky_operator.logic.leader import LeaseTimings

#: Seconds from the leader's SIGKILL to the standby holding the Lease (issue 13 goal 5).
TAKEOVER_BOUND = 15.0
STUB = (
    "import json, os, sys, time\n"
    "key = json.loads(os.environ['ROCKY_TASK'])['asset_key']\n"
    "time.sleep({seconds})\n"
    "fail = key[-1].startswith('fail_')\n"
    "result = {{'v': 1, 'asset_key': key, 'outcome': 'failed' if fail else 'copied',\n"
    "           'rows_copied': None if fail else 1,\n"
    "           'failure_kind': 'query-rejected' if fail else None,\n"
    "           'error': 'planted failure' if fail else None}}\n"
    "open(os.environ['ROCKY_RESULT_PATH'], 'w').write(json.dumps(result))\n"
    "sys.exit(12 if fail else 0)\n"
)


def stub_run(name: str, warehouse: Path, *, concurrency: int, seconds: float) -> dict[str, Any]:
    """A run whose runner pods are the stub above (a valid result after `seconds`)."""
    command = ["python", "-c", STUB.format(seconds=seconds)]
    return staging_run(name, warehouse, concurrency=concurrency, runner={"command": command})


def make_warehouse(path: Path, tables: int, fail_every: int) -> int:
    con = duckdb.connect(str(path))
    try:
        con.execute("CREATE SCHEMA src__acme__us")
        planted = 0
        for i in range(tables):
            fail = i % fail_every == fail_every - 1
            planted += fail
            con.execute(f"CREATE TABLE src__acme__us.{'fail' if fail else 't'}_{i:04d} (id INT)")
    finally:
        con.close()
    return planted


@pytest.fixture
def replicas(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Replicas]:
    apply_crds(control_plane, "rockyruns.rocky.dev", "rockyschedules.rocky.dev")
    pair = Replicas(control_plane, namespace, tmp_path)
    try:
        pair.start("a")
        wait_for(lambda: pair.holder() == "a1", timeout=60, what="replica a to lead")
        pair.start("b")
        yield pair
    finally:
        pair.stop()


def full_output(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    exe = Path(sys.executable).parent / "rocky-operator"
    proc = subprocess.run(
        [str(exe), "output", name, "-n", namespace],
        capture_output=True,
        text=True,
        env=cp.env("admin"),
        timeout=300,
        check=False,
    )
    assert proc.returncode in (0, 2), proc.stderr[-2000:]
    output: dict[str, Any] = json.loads(proc.stdout)
    return output


def comparable(output: dict[str, Any]) -> dict[str, Any]:
    """What two runs of the same tables must agree on: per-table outcome, kind, rows, error."""
    return {
        "copied": sorted(
            (json.dumps(m.get("asset_key")), m.get("rows_copied", m.get("rows")))
            for m in output.get("materializations") or []
        ),
        "errors": sorted(
            (json.dumps(e.get("asset_key")), e.get("failure_kind"), e.get("error"))
            for e in output.get("errors") or []
        ),
        "keys": sorted(output),
    }


def test_standby_takes_over_within_15s_of_the_leaders_sigkill(
    control_plane: ControlPlane, namespace: str, replicas: Replicas, tmp_path: Path
) -> None:
    rest = Rest(control_plane)
    warehouse = tmp_path / "source.duckdb"
    tables, planted = 30, make_warehouse(warehouse, 30, fail_every=10)
    since = audit_offset(control_plane)
    apply(control_plane, namespace, stub_run("ha", warehouse, concurrency=3, seconds=1.0))
    wait_for(
        lambda: 5 <= done_tables(rest, namespace, "ha") < tables - 5,
        timeout=180,
        interval=0.1,
        what="the run to be under way",
    )
    # The standby acted on nothing: its only requests in this namespace are Lease reads.
    standby = [
        ((e.get("objectRef") or {}).get("resource"), e.get("verb"))
        for e in audit_events(control_plane, since, namespace)
        if (e.get("user") or {}).get("username") == USERNAMES["benchmark"]
    ]
    assert standby, "the standby never read the Lease"
    assert set(standby) == {("leases", "get")}, Counter(standby)

    killed_at = datetime.now(UTC)
    holder, took = replicas.kill_leader()
    print(f"\nleader a1 SIGKILLed -> {holder} holds the Lease after {took:.1f} s")
    assert holder == "b1"
    assert took <= TAKEOVER_BOUND
    first = wait_for(
        lambda: first_action(audit_events(control_plane, since, namespace), "benchmark"),
        timeout=120,
        what="the new leader's first RockyRun status write",
    )
    print(f"new leader's first RockyRun status write {(first - killed_at).total_seconds():.1f} s "
          "after the SIGKILL")  # fmt: skip
    status = wait_for(lambda: complete(rest, namespace, "ha"), timeout=240, what="ha Complete")
    assert status["tables"]["copied"] == tables - planted
    assert status["tables"]["failed"] == planted
    assert status["tables"]["attempts"] == tables
    creates, conflicts = pod_creates(audit_events(control_plane, since, namespace))
    assert len(creates) == tables
    assert set(creates.values()) == {1}, creates.most_common(3)
    assert conflicts == 0
    # The new leader did the rest of the run.
    after = [
        e
        for e in audit_events(control_plane, since, namespace)
        if (e.get("user") or {}).get("username") == USERNAMES["benchmark"]
        and (e.get("objectRef") or {}).get("resource") == "pods"
        and e.get("verb") == "create"
    ]
    assert after, "the new leader created no pod"


def test_a_gracefully_stopped_leader_hands_over_at_once(replicas: Replicas) -> None:
    """SIGTERM (a rolling update, a drain): the leader releases the Lease on its way out, so
    the standby takes over at its next read instead of waiting out the lease duration."""
    op = replicas.procs["a"]
    assert op.proc is not None
    started = time.monotonic()
    assert op.proc.terminate(grace=30) == 0, op.proc.output()[-3000:]
    op.proc = None
    wait_for(lambda: replicas.holder() == "b1", timeout=60, interval=0.1, what="b1 to lead")
    took = time.monotonic() - started
    print(
        f"\nleader a1 SIGTERMed -> b1 holds the Lease after {took:.1f} s (graceful stop included)"
    )
    assert "released lease" in op.log.read_text(errors="replace")
    assert took < LeaseTimings().lease_duration  # a release, not an expiry


@pytest.mark.slow
def test_leader_killed_5_times_during_200_tables_gives_the_uninterrupted_output(
    control_plane: ControlPlane, namespace: str, replicas: Replicas, tmp_path: Path
) -> None:
    rest = Rest(control_plane)
    warehouse = tmp_path / "source.duckdb"
    tables, planted = 200, make_warehouse(warehouse, 200, fail_every=20)

    # The uninterrupted run of the same tables, under the same two replicas.
    apply(control_plane, namespace, stub_run("calm", warehouse, concurrency=8, seconds=0.0))
    calm = wait_for(lambda: complete(rest, namespace, "calm"), timeout=600, what="calm Complete")
    assert calm["tables"]["copied"] == tables - planted

    since = audit_offset(control_plane)
    apply(control_plane, namespace, stub_run("chaos", warehouse, concurrency=4, seconds=0.3))
    takeovers: list[float] = []
    for kill in range(5):
        before = done_tables(rest, namespace, "chaos")
        # Kill once the current leader has made progress of its own (10 more tables).
        wait_for(
            lambda before=before: done_tables(rest, namespace, "chaos") >= before + 10,  # type: ignore[misc]
            timeout=300,
            interval=0.1,
            what=f"progress before kill {kill + 1}",
        )
        assert not complete(rest, namespace, "chaos"), f"finished after {kill} kills"
        holder, took = replicas.kill_leader()
        takeovers.append(took)
        print(f"kill {kill + 1}: {holder} leads after {took:.1f} s")
    chaos = wait_for(lambda: complete(rest, namespace, "chaos"), timeout=600, what="chaos Complete")
    print(f"takeover after SIGKILL: max {max(takeovers):.1f} s, all {takeovers}")
    assert max(takeovers) <= TAKEOVER_BOUND

    assert chaos["tables"]["attempts"] == tables
    for key in ("copied", "failed", "total"):
        assert chaos["tables"].get(key) == calm["tables"].get(key), key
    assert comparable(full_output(control_plane, namespace, "chaos")) == comparable(
        full_output(control_plane, namespace, "calm")
    )
    creates, conflicts = pod_creates(audit_events(control_plane, since, namespace))
    twice = {name: n for name, n in creates.items() if n > 1}
    print(f"attempt pods created: {len(creates)}, twice: {len(twice)}, 409s: {conflicts}")
    assert len(creates) == tables
    assert twice == {}
    assert conflicts == 0
