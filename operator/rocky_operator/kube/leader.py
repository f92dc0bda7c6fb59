"""Leader election I/O: read and write the ``coordination.k8s.io/v1`` Lease.

The decisions are :mod:`rocky_operator.logic.leader`; this module only carries them out with
the operator's API client (:class:`~rocky_operator.kube.client.KubeClient`). Usage, in
``rocky-operator run``::

    elector = LeaderElector(client, namespace, name, identity, timings)
    await elector.acquire()          # returns once this replica holds the Lease
    ... start kopf, and concurrently: await elector.hold()  (returns when it must stand down)
    await elector.release()          # graceful shutdown: a standby takes over at once
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from rocky_operator.kube.client import ConflictError, KubeClient, KubeError, NotFoundError
from rocky_operator.logic.leader import (
    Action,
    Decision,
    LeaseRecord,
    LeaseTimings,
    Observation,
    decide,
    observe,
)

log = logging.getLogger(__name__)


def _micro_time(now: datetime) -> str:
    """A ``metav1.MicroTime``: RFC 3339 with microseconds, UTC."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_record(doc: dict[str, Any]) -> LeaseRecord:
    spec = doc.get("spec") or {}
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration_seconds=float(spec.get("leaseDurationSeconds") or 0),
        renew_time=str(spec.get("renewTime") or ""),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str((doc.get("metadata") or {}).get("resourceVersion") or ""),
    )


class LeaderElector:
    """One replica's side of the election for one Lease."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        name: str,
        identity: str,
        timings: LeaseTimings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_leading: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timings = timings or LeaseTimings()
        self._clock = clock
        self._wall = wall
        self._seen: Observation | None = None
        self._doc: dict[str, Any] | None = None
        self.last_renewed: float | None = None
        self.acquired_at: float | None = None
        self._watchdog_stop: threading.Event | None = None
        #: Told of every transition (the rocky_operator_leader gauge); False until it leads.
        self._on_leading = on_leading
        on_leading(False)

    @property
    def path(self) -> str:
        base = f"/apis/coordination.k8s.io/v1/namespaces/{quote(self.namespace)}/leases"
        return f"{base}/{quote(self.name)}"

    @property
    def leading(self) -> bool:
        return self.last_renewed is not None

    async def _read(self) -> None:
        try:
            doc: dict[str, Any] | None = await self.client.request("GET", self.path)
        except NotFoundError:
            doc = None
        self._doc = doc
        self._seen = observe(self._seen, lease_record(doc) if doc else None, self._clock())

    def _spec(self, *, take_over: bool) -> dict[str, Any]:
        now = _micro_time(self._wall())
        old = (self._doc or {}).get("spec") or {}
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.timings.lease_duration)),
            "acquireTime": now if take_over else old.get("acquireTime", now),
            "renewTime": now,
            "leaseTransitions": int(old.get("leaseTransitions") or 0) + (1 if take_over else 0),
        }
        return spec

    async def _write(self, action: Action) -> bool:
        """Create / take over / renew; True when the API server accepted it."""
        sent = self._clock()
        try:
            if action is Action.CREATE:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {**self._spec(take_over=True), "leaseTransitions": 0},
                }
                base = self.path.rsplit("/", 1)[0]
                doc = await self.client.request("POST", base, body=body)
            else:
                assert self._doc is not None
                take_over = action is Action.TAKE_OVER and not self.leading
                body = {**self._doc, "spec": self._spec(take_over=take_over)}
                # metadata.resourceVersion is kept: a concurrent writer makes this a 409.
                doc = await self.client.request("PUT", self.path, body=body)
        except ConflictError:
            log.info("lease %s/%s: someone else wrote it first", self.namespace, self.name)
            self._doc = None
            return False
        except KubeError as exc:
            log.warning("lease %s/%s: %s failed: %s", self.namespace, self.name, action, exc)
            return False
        self._doc = doc
        self._seen = observe(self._seen, lease_record(doc), self._clock())
        self.last_renewed = sent
        return True

    async def _step(self) -> Decision:
        """Read the Lease, decide, and write when the decision says so."""
        try:
            await self._read()
        except KubeError as exc:
            # Decide on what was last seen: a write with a stale resourceVersion is a 409.
            log.warning("lease %s/%s: read failed: %s", self.namespace, self.name, exc)
        if self._seen is None:
            return Decision(Action.WAIT, self.timings.retry_period, reason="Lease not read yet")
        decision = self._decide()
        if decision.action in (Action.CREATE, Action.TAKE_OVER, Action.RENEW):
            written = (decision.action is Action.CREATE or self._doc is not None) and (
                await self._write(decision.action)
            )
            if not written and self.leading:
                return self._decide()  # a failed renewal: STAND_DOWN once past the deadline
        return decision

    def _decide(self) -> Decision:
        assert self._seen is not None
        return decide(
            identity=self.identity,
            seen=self._seen,
            now=self._clock(),
            last_renewed=self.last_renewed,
            timings=self.timings,
        )

    async def acquire(self) -> None:
        """Wait until this replica holds the Lease."""
        log.info(
            "leader election: %s waits for lease %s/%s", self.identity, self.namespace, self.name
        )
        while not self.leading:
            decision = await self._step()
            if self.leading:
                break
            if decision.action is Action.WAIT:
                log.debug("lease %s/%s: %s", self.namespace, self.name, decision.reason)
            await asyncio.sleep(decision.wait_seconds or self.timings.retry_period)
        self.acquired_at = self._clock()
        self._on_leading(True)
        log.info(
            "leader election: %s leads (lease %s/%s)", self.identity, self.namespace, self.name
        )

    def _stand_down(self) -> None:
        self.last_renewed = None
        self._on_leading(False)

    async def hold(self) -> str:
        """Renew until this replica must stand down; returns the reason.

        The renew deadline is enforced on this replica's clock whatever the API server does:
        a read or write still in flight at the deadline is abandoned (a hung request must not
        keep a leader acting while a standby, after the lease duration, takes over)."""
        deadline = self.timings.renew_deadline
        while True:
            assert self.last_renewed is not None
            remaining = self.last_renewed + deadline - self._clock()
            await asyncio.sleep(min(self.timings.retry_period, max(0.0, remaining)))
            remaining = self.last_renewed + deadline - self._clock()
            if remaining <= 0:
                self._stand_down()
                return f"no renewal succeeded within the renew deadline ({deadline:g} s)"
            try:
                decision = await asyncio.wait_for(self._step(), timeout=remaining)
            except TimeoutError:
                self._stand_down()
                return f"no renewal succeeded within the renew deadline ({deadline:g} s)"
            if decision.action is Action.STAND_DOWN:
                self._stand_down()
                return decision.reason

    def start_watchdog(
        self, on_expired: Callable[[str], None], *, interval: float = 0.25
    ) -> threading.Event:
        """A thread that calls ``on_expired`` once the renew deadline passes without a
        renewal, or leadership ends other than by :meth:`release`.

        :meth:`hold` runs in the event loop; a loop blocked by a long pass (or a stuck
        handler) would not notice the deadline until it runs again, and the run workers might
        act first. The thread runs whatever the loop does (the operator holds the GIL only in
        short slices). Returns the Event that stops it (set by :meth:`release`)."""
        stop = self._watchdog_stop = threading.Event()
        deadline = self.timings.renew_deadline
        reason = f"no renewal succeeded within the renew deadline ({deadline:g} s)"

        def watch() -> None:
            while not stop.wait(interval):
                renewed = self.last_renewed
                if renewed is None or self._clock() - renewed >= deadline:
                    if not stop.is_set():
                        on_expired(reason)
                    return

        threading.Thread(target=watch, name="lease-watchdog", daemon=True).start()
        return stop

    async def release(self) -> None:
        """Give the Lease up (graceful shutdown): empty holder, so a standby takes it now."""
        if self._watchdog_stop is not None:
            self._watchdog_stop.set()
        if not self.leading or self._doc is None:
            return
        self._stand_down()
        spec = {
            **(self._doc.get("spec") or {}),
            "holderIdentity": None,
            "leaseDurationSeconds": 1,
            "renewTime": _micro_time(self._wall()),
        }
        try:
            await self.client.request("PUT", self.path, body={**self._doc, "spec": spec})
            log.info(
                "leader election: %s released lease %s/%s", self.identity, self.namespace, self.name
            )
        except KubeError as exc:
            log.warning("lease %s/%s: release failed: %s", self.namespace, self.name, exc)
