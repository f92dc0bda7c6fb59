"""Leader election I/O (kube/leader.py) against a loopback Lease store, and the chart's grant.

The store speaks the Lease API's semantics that election relies on: 404 before the Lease
exists, 409 on a second create, 409 on an update with a stale ``metadata.resourceVersion``.
Two electors share it: one leads, the other waits and takes over once the first releases;
a leader whose Lease is taken stands down. Every request is recorded as the RBAC verb it
needs; that set must be exactly the chart's leader-election Role.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from tests.chart.support import NAMESPACE, Render, find
from tests.support.loopback import serve

from rocky_operator.kube.client import KubeClient
from rocky_operator.kube.configuration import configuration_for
from rocky_operator.kube.leader import LeaderElector
from rocky_operator.logic.leader import LeaseTimings

FAST = LeaseTimings(lease_duration=1.2, renew_deadline=0.8, retry_period=0.1)
PATH = "/apis/coordination.k8s.io/v1/namespaces/ns/leases"


class LeaseStore:
    def __init__(self) -> None:
        self.doc: dict[str, Any] | None = None
        self.version = 0
        self.verbs: set[tuple[str, str, str]] = set()

    def _answer(self, status: int, doc: Any) -> web.Response:
        return web.Response(status=status, text=json.dumps(doc), content_type="application/json")

    async def handle(self, request: web.Request) -> web.Response:
        verb = {"GET": "get", "POST": "create", "PUT": "update"}[request.method]
        self.verbs.add(("coordination.k8s.io", "leases", verb))
        if request.method == "GET":
            if self.doc is None:
                return self._answer(404, {"reason": "NotFound", "message": "no lease"})
            return self._answer(200, self.doc)
        body = await request.json()
        if request.method == "POST" and self.doc is not None:
            return self._answer(409, {"reason": "AlreadyExists", "message": "exists"})
        if request.method == "PUT":
            sent = (body.get("metadata") or {}).get("resourceVersion")
            if self.doc is None or sent != self.doc["metadata"]["resourceVersion"]:
                return self._answer(409, {"reason": "Conflict", "message": "stale"})
        self.version += 1
        body.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        self.doc = body
        return self._answer(201 if request.method == "POST" else 200, body)


@pytest.fixture
async def store() -> AsyncIterator[tuple[LeaseStore, str]]:
    lease = LeaseStore()
    app = web.Application()

    async def dispatch(request: web.Request) -> web.Response:
        return await lease.handle(request)  # looked up per request: a test may swap it

    app.router.add_route("*", PATH + "{tail:.*}", dispatch)
    async with serve(app) as url:
        yield lease, url


def _client(url: str) -> KubeClient:
    return KubeClient(configuration_for(url))


async def test_one_leads_the_other_takes_over_on_release_and_the_chart_grants_that(
    store: tuple[LeaseStore, str], render: Render
) -> None:
    lease, url = store
    a_client, b_client = _client(url), _client(url)
    a = LeaderElector(a_client, "ns", "lease", "a", FAST)
    b = LeaderElector(b_client, "ns", "lease", "b", FAST)
    try:
        await asyncio.wait_for(a.acquire(), 5)
        assert lease.doc is not None
        assert lease.doc["spec"]["holderIdentity"] == "a"
        holding = asyncio.ensure_future(a.hold())
        waiting = asyncio.ensure_future(b.acquire())
        # a keeps renewing: b stays a standby well past the lease duration.
        await asyncio.sleep(FAST.lease_duration * 2)
        assert not waiting.done()
        assert not holding.done()
        assert int(lease.doc["metadata"]["resourceVersion"]) > 5  # renewals happened
        holding.cancel()
        await a.release()
        await asyncio.wait_for(waiting, 5)  # a released: b takes over
        assert lease.doc["spec"]["holderIdentity"] == "b"
        assert lease.doc["spec"]["leaseTransitions"] == 1
        # a, had it not noticed, would find the Lease taken and stand down.
        a.last_renewed = time.monotonic()
        reason = await asyncio.wait_for(a.hold(), 5)
        assert "held by b" in reason
        assert not a.leading
    finally:
        await a_client.close()
        await b_client.close()
    roles = [r for r in find(render(), "Role") if r["metadata"]["name"].endswith("-election")]
    assert [r["metadata"]["namespace"] for r in roles] == [NAMESPACE]
    granted = {
        (group, resource, verb)
        for rule in roles[0]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert lease.verbs == granted


async def test_a_leader_whose_renewals_hang_stands_down_at_the_renew_deadline(
    store: tuple[LeaseStore, str],
) -> None:
    lease, url = store
    client = _client(url)
    a = LeaderElector(client, "ns", "lease", "a", FAST)
    try:
        await asyncio.wait_for(a.acquire(), 5)
        hang = asyncio.Event()
        original = lease.handle

        async def stuck(request: web.Request) -> web.Response:
            await hang.wait()
            return await original(request)

        lease.handle = stuck  # type: ignore[method-assign]
        started = asyncio.get_running_loop().time()
        reason = await asyncio.wait_for(a.hold(), 5)
        elapsed = asyncio.get_running_loop().time() - started
        assert "renew deadline" in reason
        assert elapsed < FAST.lease_duration  # gone before anyone may take over
        hang.set()
    finally:
        await client.close()


async def test_the_watchdog_stands_down_while_the_event_loop_is_blocked(
    store: tuple[LeaseStore, str],
) -> None:
    """A pass that blocks the loop past the renew deadline: hold() cannot run, the
    watchdog thread still calls the stand-down (in the operator: os._exit) in time."""
    _lease, url = store
    client = _client(url)
    a = LeaderElector(client, "ns", "lease", "a", FAST)
    try:
        await asyncio.wait_for(a.acquire(), 5)
        fired: list[tuple[float, str]] = []
        acquired = time.monotonic()
        a.start_watchdog(lambda reason: fired.append((time.monotonic(), reason)), interval=0.02)
        deadline = time.monotonic() + 5
        while not fired and time.monotonic() < deadline:
            time.sleep(0.01)  # noqa: ASYNC251 - blocking the loop is the point: no renewal runs
        assert fired, "the watchdog never fired"
        assert "renew deadline" in fired[0][1]
        assert FAST.renew_deadline <= fired[0][0] - acquired < FAST.lease_duration
    finally:
        await client.close()


async def test_release_stops_the_watchdog(store: tuple[LeaseStore, str]) -> None:
    _lease, url = store
    client = _client(url)
    a = LeaderElector(client, "ns", "lease", "a", FAST)
    try:
        await asyncio.wait_for(a.acquire(), 5)
        fired: list[str] = []
        stop = a.start_watchdog(fired.append, interval=0.02)
        await a.release()
        assert stop.is_set()
        await asyncio.sleep(FAST.renew_deadline + 0.2)
        assert fired == []
    finally:
        await client.close()
