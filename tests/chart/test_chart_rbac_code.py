"""The chart's roles against the verbs the operator's code calls, verb by verb.

Every public method of the operator's API client (``kube/client.py``, the one client of the
operator process), of the schedule controller's calls over it (``client/schedules.py``) and the
runner pods' watch (``kube/pod_watch.py``) is
called against a loopback HTTP server that records each request; each request becomes the (apiGroup,
resource, verb) RBAC would check. That set, plus what kopf itself does (named below with
why), must be exactly what the chart's ClusterRole grants: a grant no code path needs, or a
call the chart does not grant, fails here, without a cluster. (tests/e2e/test_least_privilege.py
measures the same on the real kube-apiserver from its audit log.) The only calls outside the
grants are the two Secret reads of the in-process discovery mode, which ``rocky-operator run``
never enables.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiohttp import web
from tests.chart.support import REPO, Render, only

from rocky_operator.client.schedules import ScheduleApi
from rocky_operator.kube.client import KubeClient
from rocky_operator.kube.configuration import configuration_for
from rocky_operator.kube.pod_watch import PodWatch
from rocky_operator.kube.settings import ControllerSettings

Verb = tuple[str, str, str]

#: kopf's own requests (not in our clients): its watches, the annotations and finalizers it
#: keeps on the objects it handles, and its Events.
KOPF: dict[Verb, str] = {
    ("rocky.dev", "rockyruns", "list"): "kopf watches RockyRuns (list, then watch)",
    ("rocky.dev", "rockyruns", "watch"): "kopf watches RockyRuns",
    ("rocky.dev", "rockyschedules", "list"): "kopf watches RockySchedules",
    ("rocky.dev", "rockyschedules", "watch"): "kopf watches RockySchedules",
    ("rocky.dev", "rockyschedules", "patch"): "kopf's handler progress annotations",
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"): "kopf's resource discovery",
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"): "kopf's resource discovery",
}
#: Checked by admission, not requested: ownerReferences with blockOwnerDeletion on objects
#: the operator creates (pods and ConfigMaps owned by a run, runs owned by a schedule).
ADMISSION: dict[Verb, str] = {
    ("rocky.dev", "rockyruns/finalizers", "update"): "blockOwnerDeletion on run-owned objects",
    ("rocky.dev", "rockyschedules/finalizers", "update"): "blockOwnerDeletion on its runs",
}
#: Only with ControllerSettings(discovery_in_pod=False): tests' in-process discovery.
IN_PROCESS_DISCOVERY = {("", "secrets", "get")}


def _verb(method: str, path: str, query: dict[str, list[str]]) -> Verb:
    parts = path.strip("/").split("/")
    if parts[0] == "api":  # /api/v1/namespaces/<ns>/<resource>[/<name>[/<sub>]]
        group, rest = "", parts[2:]
    else:  # /apis/<group>/<version>/...
        group, rest = parts[1], parts[3:]
    if rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    named = len(rest) > 1
    verb = {
        "GET": "get" if named else ("watch" if query.get("watch") == ["true"] else "list"),
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if named else "deletecollection",
    }[method]
    return group, resource, verb


class Recorder:
    """A loopback API server that answers every request with an empty object and records it."""

    def __init__(self) -> None:
        self.seen: set[Verb] = set()
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.seen.add(_verb(request.method, request.path, parse_qs(request.query_string)))
        if request.path.endswith("/log"):
            return web.Response(text="")
        body = {"apiVersion": "v1", "kind": "X", "metadata": {"name": "x"}, "items": []}
        return web.Response(text=json.dumps({**body, "data": {}}), content_type="application/json")

    def start(self) -> None:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            ready.set()
            loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        assert ready.wait(10)

    def stop(self) -> None:
        assert self._loop is not None
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    server.start()
    try:
        yield server
    finally:
        server.stop()


#: Arguments by parameter name for every client method.
ARGS: dict[str, Any] = {
    "namespace": "ns",
    "name": "x",
    "labels": {"rocky.dev/run": "x"},
    "pod": {"metadata": {"name": "p"}},
    "container": "runner",
    "key": "k",
    "body": {"metadata": {"name": "x"}},
    "patch": {"data": {}},
    "status": {"phase": "Running"},
    "run_name": "x",
    "run_uid": "u",
    "event_type": "Normal",
    "reason": "R",
    "message": "m",
    "schedule": "s",
}


def _public_methods(cls: type) -> list[str]:
    return [
        n
        for n, member in inspect.getmembers(cls, inspect.isfunction)
        # request, watch: the transport
        if not n.startswith("_") and n not in ("close", "request", "watch")
    ]


def _call_args(fn: Any) -> dict[str, Any]:
    params = inspect.signature(fn).parameters
    return {n: ARGS[n] for n, p in params.items() if n != "self" and p.default is p.empty}


async def _code_verbs(recorder: Recorder) -> set[Verb]:
    kube = KubeClient(configuration_for(recorder.url))
    schedules = ScheduleApi(kube)
    try:
        for name in _public_methods(KubeClient):
            method = getattr(kube, name)
            await method(**_call_args(method))
        for name in _public_methods(ScheduleApi):
            method = getattr(schedules, name)
            await method(**_call_args(method))
        # The runner pods' watch (kube/pod_watch.py): a list for the version, then a watch.
        watch = PodWatch(kube, ["ns"], lambda ns, run: None, lambda: None)
        await watch.watch_once("ns", await watch.current_version("ns"))
    finally:
        await kube.close()
    return set(recorder.seen)


def _granted(role: dict[str, Any]) -> set[Verb]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


async def test_the_charts_grants_are_exactly_what_the_code_and_kopf_call(
    render: Render, recorder: Recorder
) -> None:
    used = await _code_verbs(recorder)
    assert ("", "pods/log", "get") in used  # the calls were really recorded
    granted = _granted(only(render(), "ClusterRole"))
    assert not {g for g in granted if g[1] == "secrets"}, "the operator reads no Secret"
    missing = sorted(used - granted - IN_PROCESS_DISCOVERY)
    assert missing == [], f"called by the operator's code, not granted by the chart: {missing}"
    unused = sorted(granted - used - set(KOPF) - set(ADMISSION))
    assert unused == [], f"granted by the chart, called by no code path: {unused}"
    assert used & IN_PROCESS_DISCOVERY  # those methods exist; the next test keeps them unused


def test_the_command_line_never_discovers_in_process() -> None:
    """The Secret reads above happen only with discovery_in_pod=False, which is the
    in-process test API's setting; ``rocky-operator run`` keeps the default (a pod)."""
    assert ControllerSettings().discovery_in_pod is True
    source = (REPO / "operator" / "rocky_operator" / "commands" / "run.py").read_text()
    assert "discovery_in_pod" not in source
