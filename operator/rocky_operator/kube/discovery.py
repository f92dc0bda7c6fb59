"""Discovery as a pod of the run: create it, wait for it, read its log, delete it.

The operator holds no warehouse credentials and loads no connector: the discovery pod
(:mod:`rocky_operator.logic.discovery_pod`) gets the run's Secret references like the
copy pods and answers through its log (``pods/log``), checked against the summary in
its termination message. Creating it is idempotent (a deterministic name), so an
operator restarted mid-discovery adopts the pod it had started. A missing Secret shows
as the pod's ``CreateContainerConfigError`` and fails the run as auth-failed, so the
operator needs no Secret read even for the presence check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.kube.client import KubeError
from rocky_operator.logic.discovery_pod import (
    build_discovery_pod,
    discovery_pod_name,
    observe_discovery_pod,
)
from rocky_operator.logic.pods import CONTAINER_NAME
from rocky_runner.contract import FailureKind
from rocky_runner.discovery_channel import ChannelError, Listing, decode_listing

if TYPE_CHECKING:
    from rocky_operator.kube.worker import RunWorker

log = logging.getLogger(__name__)

#: Polling of the discovery pod: starts fast (a small catalog answers in a second or
#: two), backs off to this.
MAX_POLL_SECONDS = 2.0
#: A discovery pod deleted by someone else is recreated at most this often.
MAX_RECREATES = 3


class DiscoveryPodError(Exception):
    """Discovery in the pod failed; ``reason`` / ``kind`` go to the run's condition."""

    def __init__(self, reason: str, message: str, kind: FailureKind) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.kind = kind


async def discover_in_pod(worker: RunWorker, spec: RockyRunSpec) -> Listing:
    """The run's tables and exclusions, listed by its discovery pod."""
    client, namespace, settings = worker.client, worker.namespace, worker.settings
    timeout = settings.discovery_timeout_seconds
    pod = build_discovery_pod(
        run_name=worker.name,
        run_uid=worker.uid,
        namespace=namespace,
        spec=spec,
        deadline_seconds=int(timeout),
        defaults=settings.runner_defaults,
    )
    name = discovery_pod_name(worker.name)
    deadline = time.monotonic() + timeout
    await client.create_pod(namespace, pod)
    try:
        tables = await _wait_for_answer(worker, pod, deadline)
    except asyncio.CancelledError:
        raise  # operator stopping: the next one adopts the pod
    except DiscoveryPodError:
        if not settings.keep_failed_pods:
            await _delete(worker, name)
        raise
    await _delete(worker, name)
    return tables


async def _wait_for_answer(worker: RunWorker, pod: dict[str, Any], deadline: float) -> Listing:
    client, namespace, settings = worker.client, worker.namespace, worker.settings
    name = pod["metadata"]["name"]
    labels = pod["metadata"]["labels"]
    created, seen, poll = 1, False, 0.1
    while True:
        found = [p for p in await client.list_pods(namespace, labels) if _named(p, name)]
        if not found:
            if seen and created <= MAX_RECREATES:  # deleted under us: start again
                await client.create_pod(namespace, pod)
                created += 1
                seen = False
        else:
            seen = True
            state = observe_discovery_pod(
                found[0], worker.controller.clock(), settings.stuck_grace_seconds
            )
            if state.done and state.summary is not None and state.failure_kind is None:
                text = await client.read_pod_log(namespace, name, CONTAINER_NAME)
                try:
                    return decode_listing(text, state.summary)
                except ChannelError as exc:
                    raise DiscoveryPodError(
                        "DiscoveryFailed", f"table discovery failed: {exc}", FailureKind.UNKNOWN
                    ) from exc
            if state.done:
                raise DiscoveryPodError(
                    state.reason,
                    f"table discovery failed: {state.error}",
                    state.failure_kind or FailureKind.UNKNOWN,
                )
        if time.monotonic() >= deadline:
            raise DiscoveryPodError(
                "DiscoveryFailed",
                f"table discovery took longer than {settings.discovery_timeout_seconds:.0f} s",
                FailureKind.TRANSIENT,
            )
        await asyncio.sleep(poll)
        poll = min(poll * 1.5, MAX_POLL_SECONDS)


async def stop_discovery_pod(worker: RunWorker) -> None:
    """Delete the run's discovery pod, if an earlier operator life left one running (a run
    refused before its plan exists, e.g. by a runner policy tightened since)."""
    await _delete(worker, discovery_pod_name(worker.name))


async def _delete(worker: RunWorker, name: str) -> None:
    try:
        await worker.client.delete_pod(worker.namespace, name)
    except KubeError as exc:  # garbage-collected with the run anyway
        log.warning("discovery pod %s/%s not deleted: %s", worker.namespace, name, exc)


def _named(pod: dict[str, object], name: str) -> bool:
    meta = pod.get("metadata")
    return isinstance(meta, dict) and meta.get("name") == name
