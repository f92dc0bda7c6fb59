"""Two `rocky-operator run` replicas sharing one leader-election Lease, as processes against
the test control plane: which one leads, kill the leader, wait for the takeover; and the audit-log
helpers that tell the replicas' requests apart (each authenticates as its own user).

Used by tests/e2e/test_leader_election.py and benchmarks/failover.py.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.support.control_plane import ControlPlane
from tests.support.e2e import OperatorProcess, Rest, kubectl, wait_for

LEASE = "rocky-operator-leader"
RUNS = "/apis/rocky.dev/v1alpha1"
USERS = {"a": "operator", "b": "benchmark"}
USERNAMES = {"operator": "rocky-operator", "benchmark": "rocky-benchmark"}


class Replicas:
    """Two operator replicas; a killed one restarts as a standby with a new identity."""

    def __init__(self, cp: ControlPlane, namespace: str, tmp_path: Path) -> None:
        self.cp = cp
        self.namespace = namespace
        self.rest = Rest(cp)
        self.starts = Counter[str]()
        self.procs: dict[str, OperatorProcess] = {}
        for slot, user in USERS.items():
            self.procs[slot] = OperatorProcess(
                cp,
                namespace,
                tmp_path / f"operator-{slot}.log",
                env={"KUBECONFIG": str(cp.kubeconfig_for(user))},
            )

    def start(self, slot: str) -> str:
        self.starts[slot] += 1
        identity = f"{slot}{self.starts[slot]}"
        op = self.procs[slot]
        op.extra_args = (
            "--leader-election-lease", LEASE,
            "--leader-election-namespace", self.namespace,
            "--leader-election-identity", identity,
        )  # fmt: skip
        op.start()
        return identity

    def holder(self) -> str:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{LEASE}"
        with contextlib.suppress(Exception):
            return str(self.rest.get(path)["spec"].get("holderIdentity") or "")
        return ""

    def kill_leader(self) -> tuple[str, float]:
        """SIGKILL the replica holding the Lease, restart it as a standby; returns the new
        holder and the seconds from the kill to the other replica holding the Lease."""
        old = self.holder()
        slot = old[0]
        proc = self.procs[slot].proc
        assert proc is not None
        killed_at = time.monotonic()
        proc.kill9()
        self.procs[slot].proc = None
        other = "b" if slot == "a" else "a"
        new = wait_for(
            lambda: (h := self.holder()).startswith(other) and h,
            timeout=60,
            interval=0.1,
            what=f"replica {other} to take the Lease from {old}",
        )
        took = time.monotonic() - killed_at
        self.start(slot)
        return str(new), took

    def stop(self) -> None:
        for op in self.procs.values():
            op.stop()


def apply(cp: ControlPlane, namespace: str, doc: dict[str, Any]) -> None:
    kubectl(cp, "-n", namespace, "apply", "-f", "-", input=json.dumps(doc))


def run_status(rest: Rest, namespace: str, name: str) -> dict[str, Any]:
    return dict(rest.get(f"{RUNS}/namespaces/{namespace}/rockyruns/{name}").get("status") or {})


def done_tables(rest: Rest, namespace: str, name: str) -> int:
    tables = run_status(rest, namespace, name).get("tables") or {}
    return int(tables.get("copied", 0)) + int(tables.get("failed", 0))


def complete(rest: Rest, namespace: str, name: str) -> dict[str, Any] | None:
    status = run_status(rest, namespace, name)
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return status if conditions.get("Complete") == "True" else None


def audit_events(cp: ControlPlane, since: int, namespace: str) -> list[dict[str, Any]]:
    events = []
    with cp.audit_log.open("rb") as fh:
        fh.seek(since)
        for line in fh:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if (event.get("objectRef") or {}).get("namespace") == namespace:
                    events.append(event)
    return events


def pod_creates(events: list[dict[str, Any]]) -> tuple[Counter[str], int]:
    """Table-attempt pods created (201) by either replica, by name; and 409s on their creates."""
    creates: Counter[str] = Counter()
    conflicts = 0
    for event in events:
        ref = event.get("objectRef") or {}
        user = (event.get("user") or {}).get("username")
        if (
            event.get("verb") != "create"
            or ref.get("resource") != "pods"
            or ref.get("subresource")
            or user not in USERNAMES.values()
        ):
            continue
        if str(ref.get("name", "")).endswith("-discovery"):
            # The run's one discovery pod: a new leader taking over during discovery finds
            # it (409) and reads its answer; it copies nothing.
            continue
        code = (event.get("responseStatus") or {}).get("code")
        if code == 201:
            creates[str(ref.get("name"))] += 1
        elif code == 409:
            conflicts += 1
    return creates, conflicts


def first_action(events: list[dict[str, Any]], user: str) -> datetime | None:
    """When `user` first wrote a RockyRun's status (audit time), if it did."""
    for event in events:
        ref = event.get("objectRef") or {}
        if (
            (event.get("user") or {}).get("username") == USERNAMES[user]
            and ref.get("resource") == "rockyruns"
            and ref.get("subresource") == "status"
            and event.get("stage") == "ResponseComplete"
        ):
            stamp = str(event["requestReceivedTimestamp"]).replace("Z", "+00:00")
            return datetime.fromisoformat(stamp)
    return None
