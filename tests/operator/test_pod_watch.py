"""The operator's own watch of the runner pods (kube/pod_watch.py).

The protocol against a loopback API server that answers the way kube-apiserver does (a list's
``resourceVersion``, a streamed watch of one JSON event per line, bookmarks, a watch ended by
the server, an ``ERROR`` event with 410 Gone, a 500), then a whole run on kmock woken by the
watch alone (workers' resync set to an hour). The real kube-apiserver runs the same watch in
the e2e suite (every e2e run of the operator depends on it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from tests.operator.conftest import run_spec
from tests.operator.harness import FAST, Cluster, FakeKubelet, operator_life

from rocky_operator.kube.client import GoneError, KubeClient, KubeError
from rocky_operator.kube.configuration import configuration_for
from rocky_operator.kube.pod_watch import PodWatch, decode_event, lines


def _event(kind: str, name: str, version: str, run: str | None = "r1", ns: str = "ns") -> bytes:
    labels = {"rocky.dev/run": run} if run else {"app": "other"}
    meta = {"name": name, "namespace": ns, "resourceVersion": version, "labels": labels}
    return json.dumps({"type": kind, "object": {"kind": "Pod", "metadata": meta}}).encode()


def test_decode_event_wakes_the_labelled_run_only() -> None:
    event = decode_event(_event("MODIFIED", "p1", "17", run="nightly", ns="team-a"))
    assert (event.namespace, event.run, event.resource_version) == ("team-a", "nightly", "17")
    assert decode_event(_event("ADDED", "p2", "18", run=None)).run is None
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "99"}}}
    event = decode_event(json.dumps(bookmark).encode())
    assert (event.run, event.resource_version) == (None, "99")


def test_decode_event_raises_for_error_events() -> None:
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
    with pytest.raises(GoneError):
        decode_event(json.dumps(gone).encode())
    other = {"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "boom"}}
    with pytest.raises(KubeError) as caught:
        decode_event(json.dumps(other).encode())
    assert caught.value.status == 500
    assert not isinstance(caught.value, GoneError)


async def test_lines_rejoin_split_chunks_and_keep_long_lines() -> None:
    long = b'{"x": "' + b"a" * 300_000 + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        data = b"one\n" + long + b"\n\ntwo\nthr"
        for i in range(0, len(data), 7_001):
            yield data[i : i + 7_001]
        yield b"ee"

    assert [line async for line in lines(chunks())] == [b"one", long, b"two", b"three"]


class WatchServer:
    """Scripted answers: each watch request takes the next script (a list of lines, or an
    HTTP status); every request's query is recorded."""

    def __init__(self, scripts: list[list[bytes] | int], list_version: str = "5") -> None:
        self.scripts = scripts
        self.list_version = list_version
        self.requests: list[dict[str, str]] = []
        self.done = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append({"path": request.path, **query})
        if query.get("watch") != "true":
            body = {"kind": "PodList", "metadata": {"resourceVersion": self.list_version}}
            return web.json_response({**body, "items": []})
        if not self.scripts:
            self.done.set()
            await asyncio.sleep(3600)  # an idle watch, until the client goes
        script = self.scripts.pop(0)
        if isinstance(script, int):
            return web.json_response({"kind": "Status", "code": script}, status=script)
        response = web.StreamResponse()
        await response.prepare(request)
        for line in script:
            await response.write(line + b"\n")
        return response


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    runners: list[web.AppRunner] = []

    async def start(server: WatchServer) -> str:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", server.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)  # idle watches end at once
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_watch_continues_relists_on_gone_and_backs_off_on_errors(serve: Any) -> None:
    gone = json.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410}}).encode()
    bookmark = json.dumps({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}})
    server = WatchServer(
        [
            [_event("ADDED", "p1", "6"), _event("MODIFIED", "p1", "7", run=None)],
            [bookmark.encode()],  # the server ends each watch; the next starts at 9
            [_event("DELETED", "p1", "10", run="r2", ns="other"), gone],
            500,  # after the relist: an error answer, then a relist after a backoff
            [_event("ADDED", "p3", "12")],
        ]
    )
    url = await serve(server)
    woken: list[tuple[str, str]] = []
    everyone: list[int] = []
    client = KubeClient(configuration_for(url))
    watch = PodWatch(
        client, ["ns"], lambda ns, run: woken.append((ns, run)), lambda: everyone.append(1)
    )
    watch.start()
    try:
        await asyncio.wait_for(server.done.wait(), 30)
    finally:
        await watch.stop()
        await client.close()
    assert woken == [("ns", "r1"), ("other", "r2"), ("ns", "r1")]
    assert watch.events == 3
    assert watch.lists == 3
    assert len(everyone) == 3
    watches = [r for r in server.requests if r.get("watch") == "true"]
    assert [w.get("resourceVersion") for w in watches] == ["5", "7", "9", "5", "5", "12"]
    assert all(r["path"] == "/api/v1/namespaces/ns/pods" for r in server.requests)
    assert all(r["labelSelector"] == "rocky.dev/run" for r in server.requests)
    assert all(w["allowWatchBookmarks"] == "true" for w in watches)
    lists = [r for r in server.requests if r.get("watch") != "true"]
    assert all(r["limit"] == "1" for r in lists)


async def test_cluster_wide_when_no_namespace_is_given(serve: Any) -> None:
    server = WatchServer([[_event("ADDED", "p1", "6", ns="anywhere")]])
    url = await serve(server)
    woken: list[tuple[str, str]] = []
    client = KubeClient(configuration_for(url))
    watch = PodWatch(client, [], lambda ns, run: woken.append((ns, run)), lambda: None)
    watch.start()
    try:
        await asyncio.wait_for(server.done.wait(), 30)
        await asyncio.wait_for(watch.watching.wait(), 30)
    finally:
        await watch.stop()
        await client.close()
    assert woken == [("anywhere", "r1")]
    assert {r["path"] for r in server.requests} == {"/api/v1/pods"}


async def test_a_run_is_driven_by_pod_events_alone(
    api_server: str, cluster: Cluster, kubelet: FakeKubelet, warehouse: Path
) -> None:
    """No periodic pass (resync an hour): only the pod watch can wake the worker after it
    created its pods, so the run finishing shows the watch delivered their events."""
    settings = replace(FAST, resync_seconds=3600.0)
    async with operator_life(api_server, cluster.namespace, settings) as life:
        await cluster.create_run("woken", run_spec(warehouse))
        run = await cluster.wait_finished("woken")
        assert life.runtime.pod_watch.events > 0
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["tables"]["copied"] == 12
