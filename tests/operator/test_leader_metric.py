"""The rocky_operator_leader gauge follows kube/leader.py's transitions: 0 while a replica
stands by, 1 once it holds the Lease, 0 again when it releases it or stands down; 1 for an
operator that runs without leader election (it is the only one)."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

from rocky_operator.kube.client import ConflictError, NotFoundError
from rocky_operator.kube.leader import LeaderElector
from rocky_operator.logic.leader import LeaseTimings
from rocky_operator.metrics import Metrics

FAST = LeaseTimings(lease_duration=1.2, renew_deadline=0.8, retry_period=0.1)


class MemoryLeases:
    """The Lease API's semantics election relies on: 404, 409 on a second create or a stale
    resourceVersion. Stands in for the operator's API client (only ``request`` is used)."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] | None = None
        self.version = 0

    async def request(self, method: str, path: str, body: Any = None, **_: Any) -> Any:
        if method == "GET":
            if self.doc is None:
                raise NotFoundError(404, "NotFound", "no lease")
            return copy.deepcopy(self.doc)
        if method == "POST" and self.doc is not None:
            raise ConflictError(409, "AlreadyExists", "exists")
        if method == "PUT":
            sent = (body.get("metadata") or {}).get("resourceVersion")
            if self.doc is None or sent != self.doc["metadata"]["resourceVersion"]:
                raise ConflictError(409, "Conflict", "stale")
        self.version += 1
        self.doc = copy.deepcopy(body)
        self.doc.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.doc)


def _gauge(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("rocky_operator_leader")
    assert value is not None
    return value


def _elector(leases: MemoryLeases, identity: str, metrics: Metrics) -> LeaderElector:
    return LeaderElector(
        leases,  # type: ignore[arg-type]
        "ns",
        "lease",
        identity,
        FAST,
        on_leading=metrics.leader.set,
    )


def test_without_leader_election_the_replica_leads() -> None:
    metrics = Metrics()
    assert _gauge(metrics) == 1
    assert b"rocky_operator_leader 1.0" in metrics.exposition()


async def test_gauge_follows_acquire_release_and_standing_down() -> None:
    leases = MemoryLeases()
    a_metrics, b_metrics = Metrics(), Metrics()
    a = _elector(leases, "a", a_metrics)
    b = _elector(leases, "b", b_metrics)
    assert (_gauge(a_metrics), _gauge(b_metrics)) == (0, 0)  # both stand by until they lead

    await asyncio.wait_for(a.acquire(), 5)
    assert (_gauge(a_metrics), _gauge(b_metrics)) == (1, 0)
    waiting = asyncio.ensure_future(b.acquire())
    await asyncio.sleep(FAST.retry_period * 3)
    assert not waiting.done()
    assert _gauge(b_metrics) == 0  # a standby

    await a.release()
    assert _gauge(a_metrics) == 0
    await asyncio.wait_for(waiting, 5)
    assert _gauge(b_metrics) == 1

    # a, had it not noticed the release, finds the Lease held by b and stands down.
    a.last_renewed = time.monotonic()
    a_metrics.leader.set(1)
    reason = await asyncio.wait_for(a.hold(), 5)
    assert "held by b" in reason
    assert (_gauge(a_metrics), _gauge(b_metrics)) == (0, 1)


async def test_a_leader_that_cannot_renew_reads_zero() -> None:
    leases = MemoryLeases()
    metrics = Metrics()
    a = _elector(leases, "a", metrics)
    await asyncio.wait_for(a.acquire(), 5)
    assert _gauge(metrics) == 1

    async def refused(*_: Any, **__: Any) -> Any:
        raise ConflictError(409, "Conflict", "someone else")

    leases.request = refused  # type: ignore[method-assign]
    reason = await asyncio.wait_for(a.hold(), 5)
    assert "renew" in reason or "held" in reason
    assert _gauge(metrics) == 0
