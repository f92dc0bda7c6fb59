"""The operator's own watch of the runner pods (issue 13 goal 4): an event only wakes a worker.

A run worker's pass is level-based: it lists its run's pods and reads its journal, whatever
woke it. So a pod event needs no handler machinery at all, only "which run": one watch per
watched namespace (or one cluster-wide) of the pods labelled ``rocky.dev/run``, started by
the leader with kopf (its startup handler) and stopped with it. Per event: one JSON decode,
one dictionary lookup, one ``asyncio.Event.set()``; no diff-base, no progress storage, no
per-object state (kopf kept all three for every pod event when it watched the pods).

The watch follows the API's protocol: list (one item, for the collection's
``resourceVersion``), watch from there with bookmarks, continue from the last version seen
when the server ends the watch (``timeoutSeconds``), list again on 410 Gone (the version
was compacted away) and after errors, with backoff. Events missed in between do not matter
beyond latency: after every list every worker is woken (its pass sees what changed), and
each worker also passes every ``resync_seconds``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

from rocky_operator.kube.client import GoneError, KubeClient, KubeError
from rocky_operator.logic.pods import LABEL_RUN

log = logging.getLogger(__name__)

#: Server-side length of one watch request; the watch then continues from its last version.
WATCH_SECONDS = 300
#: Backoff after a failed list or watch: first and longest wait, in seconds.
BACKOFF_SECONDS = (0.5, 30.0)


@dataclass(frozen=True)
class PodEvent:
    """What a watch event tells the operator: the run to wake, and where the watch is."""

    resource_version: str | None
    namespace: str = ""
    run: str | None = None


def decode_event(line: bytes) -> PodEvent:
    """One line of a pod watch; :class:`GoneError` (410) or :class:`KubeError` for an
    ``ERROR`` event. ``run`` is None for bookmarks and pods of no run."""
    event = json.loads(line)
    obj = event.get("object") or {}
    if event.get("type") == "ERROR":
        code = int(obj.get("code") or 0)
        error = GoneError if code == 410 else KubeError
        raise error(code, str(obj.get("reason") or ""), str(obj.get("message") or ""))
    meta = obj.get("metadata") or {}
    version = meta.get("resourceVersion")
    if event.get("type") == "BOOKMARK":
        return PodEvent(version)
    run = (meta.get("labels") or {}).get(LABEL_RUN)
    return PodEvent(version, str(meta.get("namespace") or ""), run)


async def lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The newline-separated lines of a streamed body, whatever their length (a pod with a
    large spec can exceed the stream reader's line limit)."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            if end > start:
                yield pending[start:end]
            start = end + 1
        pending = pending[start:]
    if pending.strip():
        yield pending


class PodWatch:
    """Watches the runner pods of the given namespaces (none: all) and wakes their runs."""

    def __init__(
        self,
        client: KubeClient,
        namespaces: Sequence[str],
        wake: Callable[[str, str], None],
        wake_all: Callable[[], None],
        *,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        self.client = client
        self.scopes: list[str | None] = list(dict.fromkeys(namespaces)) or [None]
        self.wake = wake
        self.wake_all = wake_all
        self.watch_seconds = watch_seconds
        self.events = 0
        """Pod events seen (bookmarks excluded)."""
        self.lists = 0
        """Lists made: one per scope at start, one more after each 410 or error."""
        self.watching: asyncio.Event = asyncio.Event()
        """Set once every scope's first watch request has been answered."""
        self._tasks: list[asyncio.Task[None]] = []
        self._answered: set[str | None] = set()

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self.follow(scope), name=f"pod watch {scope or '*'}")
                for scope in self.scopes
            ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    @staticmethod
    def path(namespace: str | None) -> str:
        return f"/api/v1/namespaces/{quote(namespace)}/pods" if namespace else "/api/v1/pods"

    async def follow(self, namespace: str | None) -> None:
        """List, then watch from the list's version for as long as the watch can continue."""
        delay = BACKOFF_SECONDS[0]
        while True:
            try:
                version = await self.current_version(namespace)
                self.wake_all()  # whatever changed while nobody watched
                while True:
                    version = await self.watch_once(namespace, version)
                    delay = BACKOFF_SECONDS[0]
            except GoneError:
                log.info("pod watch %s: version too old, listing again", namespace or "*")
                continue
            except KubeError as exc:
                log.warning(
                    "pod watch %s: %s; listing again in %.1f s", namespace or "*", exc, delay
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_SECONDS[1])

    async def current_version(self, namespace: str | None) -> str | None:
        """The ``resourceVersion`` of the runner pods' collection now (one item listed)."""
        self.lists += 1
        doc = await self.client.request(
            "GET",
            self.path(namespace),
            query=[("labelSelector", LABEL_RUN), ("limit", "1")],
        )
        version = ((doc or {}).get("metadata") or {}).get("resourceVersion")
        return str(version) if version else None

    async def watch_once(self, namespace: str | None, version: str | None) -> str | None:
        """One watch request from ``version``: wake the run of every event; the last
        version seen (the watch goes on from there)."""
        query = [("labelSelector", LABEL_RUN), ("allowWatchBookmarks", "true")]
        if version:
            query.append(("resourceVersion", version))
        async with self.client.watch(
            self.path(namespace), query, timeout_seconds=self.watch_seconds
        ) as body:
            self._answered.add(namespace)
            if len(self._answered) == len(self.scopes):
                self.watching.set()
            try:
                async for line in lines(body.iter_any()):
                    event = decode_event(line)
                    version = event.resource_version or version
                    if event.run is not None:
                        self.events += 1
                        self.wake(event.namespace, event.run)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                raise KubeError(0, type(exc).__name__, str(exc)) from exc
        return version
