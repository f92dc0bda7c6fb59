"""Scenario harness: an API server, the operator in-process, and a fake kubelet.

The scenarios in ``test_operator_controller.py`` talk to "a Kubernetes API" only through
:class:`Cluster` (plain HTTP JSON via ``tests.support.kubeapi.KubeApi``) and plant
pod outcomes through a kubelet object with ``plant(table, outcomes)``. With kmock the
kubelet is :class:`FakeKubelet`, which writes pod statuses the way a kubelet does;
against the real kube-apiserver of the control-plane suite the same scenarios run
with its node agent (swap the ``cluster`` and ``kubelet`` fixtures).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import attrs
import kmock
import kopf
from kmock._internal import parsing as _parsing
from kubernetes_asyncio.client import Configuration
from tests.support.kubeapi import ApiError, KubeApi

from rocky_operator.api.spec import API_GROUP, API_VERSION, PLURAL
from rocky_operator.kube import configuration as kube_configuration
from rocky_operator.kube.controller import ControllerSettings
from rocky_operator.kube.runtime import Runtime
from rocky_operator.logic.pods import LABEL_RUN
from rocky_operator.logic.runner_policy import ENV_SOURCES, RunnerPolicy
from rocky_runner.contract import (
    EXIT_CODE_BY_KIND,
    FailureKind,
    TableResult,
    encode_result,
)

JSON = dict[str, Any]

#: The scenarios use made-up images and commands (the fake kubelet runs none of them), so
#: their runner policy allows every choice; tests/security checks the default policy.
ALLOW_ALL_RUNNERS = RunnerPolicy(
    images=("*",),
    service_accounts=("*",),
    allow_command_override=True,
    volume_types=("*",),
    mount_paths=("*",),
    env_sources=ENV_SOURCES,
)

FAST = ControllerSettings(
    runner_policy=ALLOW_ALL_RUNNERS,
    # kmock has no kubelet to run a discovery pod: discover in-process (real DuckDB).
    discovery_in_pod=False,
    batch_seconds=0.05,
    status_interval_seconds=0.3,
    resync_seconds=0.5,
    stuck_grace_seconds=0.5,
    error_backoff_seconds=0.2,
)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- The in-process API server (kmock) -------------------------------------------------------


def _parse_path_with_namespaces(path: str) -> Any:
    """kmock 0.8 cannot parse ``/api/v1/namespaces`` (the cluster-scoped namespace list
    kopf's backbone reads): it takes ``namespaces`` for the namespace prefix of a
    namespaced path. Parse it as the ``namespaces`` resource; defer otherwise."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) in (3, 4):
        name = parts[3] if len(parts) == 4 else None
        return _parsing.ParsedPath("", "v1", "namespaces", None, name, None)
    return _ORIGINAL_PARSE_PATH(path)


_ORIGINAL_PARSE_PATH = _parsing.parse_path
_parsing.parse_path = _parse_path_with_namespaces


@attrs.define(kw_only=True)
class CountingEmulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator, counting requests by client (the operator: its own
    client and kopf; or the test), verb and resource, and keeping
    only a short request history: kmock matches each request against its whole history
    (O(n) per request), which makes runs of thousands of requests crawl."""

    counts: Counter[str] = attrs.field(factory=Counter, init=False)

    async def __call__(self, raw_request: Any) -> Any:
        del self._requests[:-8]
        path = raw_request.path.split("?", 1)[0].strip("/").split("/")
        resource = next((p for p in reversed(path) if p in RESOURCES), "other")
        if path[-1] == "status":
            resource += "/status"
        watch = "WATCH" if raw_request.query.get("watch") == "true" else raw_request.method
        agent = raw_request.headers.get("User-Agent", "")
        who = "operator" if agent.startswith(("rocky-operator", "kopf")) else "test"
        self.counts[f"{who} {watch} {resource}"] += 1
        return await super().__call__(raw_request)


RESOURCES = {
    "pods",
    "configmaps",
    "secrets",
    "events",
    "rockyruns",
    "namespaces",
    "customresourcedefinitions",
}


def declare_resources(api: Any) -> None:
    """What the test API server serves: RockyRuns, the core kinds the operator uses,
    and kopf's backbone (namespaces, CRDs)."""
    info = kmock.ResourceInfo
    api.resources["rocky.dev/v1alpha1/rockyruns"] = info(
        kind="RockyRun",
        singular="rockyrun",
        namespaced=True,
        shortnames={"rr"},
        verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
        subresources={"status"},
    )
    # kopf's backbone: it waits for these to be discoverable before it watches anything.
    api.resources["v1/namespaces"] = info(
        kind="Namespace", singular="namespace", namespaced=False, verbs={"get", "list", "watch"}
    )
    api.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = info(
        kind="CustomResourceDefinition",
        singular="customresourcedefinition",
        namespaced=False,
        verbs={"get", "list", "watch"},
    )
    for plural, kind in (
        ("pods", "Pod"),
        ("configmaps", "ConfigMap"),
        ("secrets", "Secret"),
        ("events", "Event"),
    ):
        api.resources[f"v1/{plural}"] = info(
            kind=kind,
            singular=kind.lower(),
            namespaced=True,
            verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
        )


# --- The API as a scenario sees it --------------------------------------------------------


@dataclass
class Cluster:
    """What a scenario needs from an API server, in one namespace."""

    api: KubeApi
    namespace: str

    def run_path(self, name: str | None = None) -> str:
        base = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{self.namespace}/{PLURAL}"
        return f"{base}/{name}" if name else base

    async def create_run(self, name: str, spec: Mapping[str, Any]) -> JSON:
        body = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": "RockyRun",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "generation": 1,
                "uid": f"uid-{name}",
            },
            "spec": dict(spec),
        }
        return await self.api.post(self.run_path(), body)

    async def run(self, name: str) -> JSON:
        return await self.api.get(self.run_path(name))

    async def wait_run(
        self, name: str, check: Callable[[JSON], bool], *, deadline_seconds: float = 8.0
    ) -> JSON:
        deadline = time.monotonic() + deadline_seconds
        while True:
            try:
                run = await self.run(name)
            except ApiError:
                run = {}
            if run and check(run):
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"RockyRun {name} did not get there: {json.dumps(run)[:3000]}")
            await asyncio.sleep(0.05)

    async def wait_finished(self, name: str, *, deadline_seconds: float = 8.0) -> JSON:
        return await self.wait_run(
            name,
            lambda r: (
                (r.get("status") or {}).get("phase") in ("Succeeded", "PartialFailure", "Failed")
            ),
            deadline_seconds=deadline_seconds,
        )

    async def pods(self, run: str | None = None) -> list[JSON]:
        doc = await self.api.get(f"/api/v1/namespaces/{self.namespace}/pods")
        items: list[JSON] = doc.get("items") or []
        if run is None:
            return items
        return [p for p in items if (p["metadata"].get("labels") or {}).get(LABEL_RUN) == run]

    async def wait_pods_gone(self, run: str, *, deadline_seconds: float = 30.0) -> list[JSON]:
        """The run's pods once none is left (or, past the deadline, those still there)."""
        deadline = time.monotonic() + deadline_seconds
        while True:
            left = await self.pods(run)
            if not left or time.monotonic() >= deadline:
                return left
            await asyncio.sleep(0.05)

    async def config_maps(self) -> list[JSON]:
        doc = await self.api.get(f"/api/v1/namespaces/{self.namespace}/configmaps")
        return list(doc.get("items") or [])

    async def events(self) -> list[JSON]:
        doc = await self.api.get(f"/api/v1/namespaces/{self.namespace}/events")
        return list(doc.get("items") or [])

    async def create_secret(self, name: str, data: Mapping[str, str]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": self.namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        await self.api.post(f"/api/v1/namespaces/{self.namespace}/secrets", body)

    async def delete_pod(self, name: str) -> None:
        with contextlib.suppress(ApiError):
            await self.api.delete(f"/api/v1/namespaces/{self.namespace}/pods/{name}")


# --- Planted pod outcomes ---------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What the fake kubelet makes of one attempt's pod."""

    kind: str
    """copied | failed | exit | oom | evicted | preempted | deadline | config-error |
    image-pull | deleted | hang | garbage | container-unknown"""
    failure_kind: FailureKind | None = None
    code: int | None = None
    error: str = ""
    delay: float = 0.0


def copied() -> Outcome:
    return Outcome("copied")


def failed(kind: FailureKind, error: str = "") -> Outcome:
    return Outcome("failed", failure_kind=kind, error=error or f"planted {kind} failure")


def exit_only(code: int) -> Outcome:
    return Outcome("exit", code=code)


def garbage(code: int) -> Outcome:
    return Outcome("garbage", code=code)


@dataclass
class FakeKubelet:
    """Plays a kubelet for pods on a test API server: status as the planted outcomes say.

    Outcomes are planted per source table name (the last part of the asset key) and
    per attempt (the last planted outcome repeats); an unplanted table copies.
    """

    api: KubeApi
    namespace: str
    planted: dict[str, list[Outcome]] = field(default_factory=dict)
    handled: set[str] = field(default_factory=set)
    paused: bool = False
    poll_seconds: float = 0.03
    _task: asyncio.Task[None] | None = None

    def plant(self, table: str, outcomes: Sequence[Outcome]) -> None:
        self.planted[table] = list(outcomes)

    async def __aenter__(self) -> FakeKubelet:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            if not self.paused:
                try:
                    doc = await self.api.get(f"/api/v1/namespaces/{self.namespace}/pods")
                except ApiError:
                    doc = {}
                fresh = [
                    p for p in doc.get("items") or [] if p["metadata"]["name"] not in self.handled
                ]
                await asyncio.gather(*(self._play(p) for p in fresh))
            await asyncio.sleep(self.poll_seconds)

    async def _play(self, pod: JSON) -> None:
        name = pod["metadata"]["name"]
        self.handled.add(name)
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
        task = json.loads(env["ROCKY_TASK"])
        attempt = int(pod["metadata"]["labels"]["rocky.dev/attempt"])
        plan = self.planted.get(task["source"]["table"], [copied()])
        outcome = plan[min(attempt, len(plan)) - 1]
        if outcome.delay:
            await asyncio.sleep(outcome.delay)
        status = None if outcome.kind == "deleted" else pod_status(outcome, task["asset_key"])
        path = f"/api/v1/namespaces/{self.namespace}/pods/{name}"
        try:
            if outcome.kind == "deleted":
                await self.api.merge_patch(path + "/status", pod_status(Outcome("hang"), []))
                await asyncio.sleep(0.1)
                await self.api.delete(path)
            elif status is not None:
                await self.api.merge_patch(path + "/status", status)
        except ApiError:
            pass


def _terminated(code: int, message: str | None, reason: str = "Error") -> JSON:
    term: JSON = {
        "exitCode": code,
        "reason": "Completed" if code == 0 else reason,
        "startedAt": now_rfc3339(),
        "finishedAt": now_rfc3339(),
    }
    if message is not None:
        term["message"] = message
    return {
        "name": "runner",
        "ready": False,
        "restartCount": 0,
        "image": "runner",
        "state": {"terminated": term},
    }


def pod_status(outcome: Outcome, asset_key: list[str]) -> JSON | None:
    """The ``status`` a kubelet would write for this outcome (None: leave it running)."""
    running = {
        "name": "runner",
        "ready": True,
        "restartCount": 0,
        "image": "runner",
        "state": {"running": {"startedAt": now_rfc3339()}},
    }
    base: JSON = {"startTime": now_rfc3339()}
    match outcome.kind:
        case "copied":
            msg = encode_result(
                TableResult(asset_key=asset_key, outcome="copied", rows_copied=3, duration_ms=5)
            ).decode()
            return {
                "status": {**base, "phase": "Succeeded", "containerStatuses": [_terminated(0, msg)]}
            }
        case "failed":
            kind = outcome.failure_kind or FailureKind.UNKNOWN
            msg = encode_result(
                TableResult(
                    asset_key=asset_key, outcome="failed", failure_kind=kind, error=outcome.error
                )
            ).decode()
            return {
                "status": {
                    **base,
                    "phase": "Failed",
                    "containerStatuses": [_terminated(EXIT_CODE_BY_KIND[kind], msg)],
                }
            }
        case "exit":
            return {
                "status": {
                    **base,
                    "phase": "Failed",
                    "containerStatuses": [_terminated(outcome.code or 1, None)],
                }
            }
        case "garbage":
            return {
                "status": {
                    **base,
                    "phase": "Failed",
                    "containerStatuses": [
                        _terminated(outcome.code or 1, "Traceback (most recent call last): boom")
                    ],
                }
            }
        case "oom":
            return {
                "status": {
                    **base,
                    "phase": "Failed",
                    "containerStatuses": [_terminated(137, None, "OOMKilled")],
                }
            }
        case "evicted":
            return {
                "status": {
                    **base,
                    "phase": "Failed",
                    "reason": "Evicted",
                    "message": "The node was low on resource: memory.",
                    "containerStatuses": [_terminated(137, None)],
                }
            }
        case "preempted":
            return {
                "status": {
                    **base,
                    "phase": "Failed",
                    "conditions": [
                        {
                            "type": "DisruptionTarget",
                            "status": "True",
                            "reason": "PreemptionByScheduler",
                            "message": "preempted by a higher-priority pod",
                        }
                    ],
                    "containerStatuses": [_terminated(143, None)],
                }
            }
        case "deadline":
            return {
                "status": {
                    **base,
                    "phase": "Failed",
                    "reason": "DeadlineExceeded",
                    "message": "Pod was active on the node longer than the specified deadline",
                    "containerStatuses": [_terminated(143, None)],
                }
            }
        case "config-error":
            return {
                "status": {
                    **base,
                    "phase": "Pending",
                    "containerStatuses": [
                        {
                            "name": "runner",
                            "ready": False,
                            "restartCount": 0,
                            "image": "runner",
                            "state": {
                                "waiting": {
                                    "reason": "CreateContainerConfigError",
                                    "message": 'secret "missing" not found',
                                }
                            },
                        }
                    ],
                }
            }
        case "image-pull":
            return {
                "status": {
                    **base,
                    "phase": "Pending",
                    "containerStatuses": [
                        {
                            "name": "runner",
                            "ready": False,
                            "restartCount": 0,
                            "image": "runner",
                            "state": {
                                "waiting": {
                                    "reason": "ImagePullBackOff",
                                    "message": "Back-off pulling image",
                                }
                            },
                        }
                    ],
                }
            }
        case "hang":
            return {"status": {**base, "phase": "Running", "containerStatuses": [running]}}
        case "container-unknown":  # what a restarted kubelet reports for a container it lost
            lost = "The container could not be located when the pod was terminated"
            return {
                "status": {
                    **base,
                    "phase": "Failed",
                    "containerStatuses": [_terminated(137, lost, "ContainerStatusUnknown")],
                }
            }
    raise ValueError(f"unknown planted outcome {outcome.kind}")


# --- The operator in-process --------------------------------------------------------------


@dataclass
class OperatorLife:
    """One life of the operator: kopf in a thread with its own event loop.

    Its own loop, as in a real deployment: kopf treats every task created in its loop
    during its lifetime as its own (and cancels "hung" ones at exit), which must not
    include the test API server's request handlers.
    """

    runtime: Runtime
    namespace: str
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _main: asyncio.Task[None] | None = None
    _thread: threading.Thread | None = None

    def _run(self, ready: threading.Event) -> None:
        async def main() -> None:
            import rocky_operator.handlers  # noqa: F401  (registers the handlers)

            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._main = asyncio.current_task()
            ready.set()
            await kopf.operator(
                namespaces=[self.namespace],
                standalone=True,
                stop_flag=self._stop,
                memo=kopf.Memo(runtime=self.runtime),
            )

        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(main())

    async def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        await asyncio.to_thread(ready.wait, 10)

    async def stop(self) -> None:
        """Stop kopf gracefully (cleanup activity included)."""
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            await asyncio.to_thread(self._thread.join, 30)

    async def kill(self) -> None:
        """Kill the operator abruptly, mid-pass: no cleanup, nothing flushed (a crash)."""
        if self._loop is not None and self._main is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._main.cancel)
            await asyncio.to_thread(self._thread.join, 30)


#: Client configurations of API servers that need credentials (a real kube-apiserver),
#: by server URL; a server not listed here is the unauthenticated test server.
CONFIGURATIONS: dict[str, Configuration] = {}


def configuration_for(server: str) -> Configuration:
    if server in CONFIGURATIONS:
        return CONFIGURATIONS[server]
    return kube_configuration.configuration_for(server)


@contextlib.asynccontextmanager
async def operator_life(
    server: str,
    namespace: str,
    settings: ControllerSettings = FAST,
    prepare: Callable[[Runtime], None] | None = None,
    **kwargs: Any,
) -> AsyncIterator[OperatorLife]:
    kwargs.setdefault("namespaces", (namespace,))
    runtime = Runtime(
        configuration=configuration_for(server), settings=settings, metrics_port=None, **kwargs
    )
    if prepare is not None:
        prepare(runtime)
    life = OperatorLife(runtime, namespace)
    await life.start()
    try:
        yield life
    finally:
        await life.stop()


def make_warehouse(path: str, schemas: Sequence[str], tables: Sequence[str]) -> None:
    """A DuckDB file with these source schemas, each holding these (one-row) tables."""
    import duckdb

    con = duckdb.connect(path)
    try:
        con.execute("BEGIN")
        for schema in schemas:
            con.execute(f"CREATE SCHEMA {schema}")
            for table in tables:
                con.execute(
                    f"CREATE TABLE {schema}.{table} AS SELECT 1 AS id, "
                    "TIMESTAMP '2024-01-01' AS _fivetran_synced"
                )
        con.execute("COMMIT")
    finally:
        con.close()
