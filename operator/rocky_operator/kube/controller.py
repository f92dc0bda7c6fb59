"""All run workers of one operator process (:class:`Controller`).

The phases of a run live in their own modules: :mod:`~rocky_operator.kube.prepare`
(validate, check Secrets, plan once), :mod:`~rocky_operator.kube.observe` (pods +
journal -> attempts), :mod:`~rocky_operator.kube.act` (create / delete pods),
:mod:`~rocky_operator.kube.report` (metrics, Events, status, final output), tied
together by :class:`~rocky_operator.kube.worker.RunWorker`. The names below are
re-exported so callers import them from here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from rocky_operator.api.status import FINISHED_PHASES, RockyRunStatus
from rocky_operator.kube.act import sweep_finished_run
from rocky_operator.kube.client import KubeClient, KubeError
from rocky_operator.kube.prepare import discover_with_runner
from rocky_operator.kube.reject import RejectedError
from rocky_operator.kube.settings import ControllerSettings, Discover
from rocky_operator.kube.worker import RunWorker
from rocky_operator.logic.spec_change import edit_to_acknowledge
from rocky_operator.logic.status import status_document
from rocky_operator.metrics import Metrics

__all__ = [
    "Controller",
    "ControllerSettings",
    "Discover",
    "RejectedError",
    "RunWorker",
    "discover_with_runner",
]

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Controller:
    """All run workers of this operator process."""

    def __init__(
        self,
        client: KubeClient,
        metrics: Metrics,
        settings: ControllerSettings | None = None,
        *,
        discover: Discover = discover_with_runner,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.client = client
        self.metrics = metrics
        self.settings = settings or ControllerSettings()
        self.discover = discover
        self.clock = clock
        self.workers: dict[tuple[str, str], RunWorker] = {}
        self.status_writes = 0
        self.errors = 0
        self.stopping = False
        self.acknowledging: set[tuple[str, str]] = set()
        self.swept: set[tuple[str, str]] = set()
        """Finished runs whose leftover pods this process looked for (once each)."""
        self.side_tasks: set[asyncio.Task[None]] = set()

    def touch_run(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """A RockyRun was seen: make sure a worker drives it (unless it has finished).

        A spec edit (a new ``metadata.generation``) never changes what a run does: the
        worker notes it (``SpecChangedIgnored``, ``observedGeneration``); a finished
        run's status is updated the same way."""
        if self.stopping:
            return
        meta = body.get("metadata") or {}
        generation = meta.get("generation")
        worker = self.workers.get((namespace, name))
        if worker is not None:
            if isinstance(generation, int) and generation > (worker.generation or 0):
                worker.generation = generation
                worker.wake()
            return
        if meta.get("deletionTimestamp"):
            return
        if (body.get("status") or {}).get("phase") in FINISHED_PHASES:
            self.acknowledge_edit(namespace, name, body)
            self.sweep(namespace, name)
            return
        worker = RunWorker(self, namespace, name)
        self.workers[(namespace, name)] = worker
        worker.task = asyncio.create_task(worker.main(), name=f"rockyrun {namespace}/{name}")

    def acknowledge_edit(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """A finished run whose spec was edited: observe the generation, say it is ignored."""
        if (namespace, name) in self.acknowledging:
            return
        try:
            status = RockyRunStatus.model_validate(body.get("status") or {})
        except ValidationError:
            return
        generation = (body.get("metadata") or {}).get("generation")
        noted = edit_to_acknowledge(
            status, generation if isinstance(generation, int) else None, self.clock()
        )
        if noted is None:
            return
        self.acknowledging.add((namespace, name))

        async def patch() -> None:
            try:
                await self.client.patch_run_status(namespace, name, status_document(noted))
            except KubeError as exc:  # the next event of the run tries again
                log.warning("run %s/%s: could not note a spec edit: %s", namespace, name, exc)
            finally:
                self.acknowledging.discard((namespace, name))

        self.side_task(patch(), f"rockyrun {namespace}/{name} edit")

    def sweep(self, namespace: str, name: str) -> None:
        """A finished run not driven by this process: delete its leftover pods, once (an
        operator stopped after the final status, before the last pod deletions)."""
        if (namespace, name) in self.swept:
            return
        self.swept.add((namespace, name))

        async def sweep() -> None:
            try:
                deleted = await sweep_finished_run(
                    self.client,
                    namespace,
                    name,
                    self.clock(),
                    keep_failed_pods=self.settings.keep_failed_pods,
                    parallelism=self.settings.create_parallelism,
                )
            except KubeError as exc:  # looked for again by the next process
                log.warning("run %s/%s: could not delete leftover pods: %s", namespace, name, exc)
                return
            if deleted:
                log.info("run %s/%s: deleted %d leftover pod(s)", namespace, name, deleted)

        self.side_task(sweep(), f"rockyrun {namespace}/{name} sweep")

    def side_task(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self.side_tasks.add(task)
        task.add_done_callback(self.side_tasks.discard)

    def report_progress(self, namespace: str) -> None:
        """Export the oldest last progress of the namespace's running runs."""
        self.metrics.set_progress(
            namespace,
            (
                w.progress_at
                for w in self.workers.values()
                if w.namespace == namespace and w.progress_at is not None
            ),
        )

    def wake(self, namespace: str, run_name: str) -> None:
        worker = self.workers.get((namespace, run_name))
        if worker is not None:
            worker.wake()

    def wake_all(self) -> None:
        """Every worker passes soon (the pod watch may have missed events)."""
        for worker in self.workers.values():
            worker.wake()

    async def forget(self, namespace: str, name: str) -> None:
        """The RockyRun is gone: stop its worker (its pods go with it by ownership)."""
        worker = self.workers.pop((namespace, name), None)
        if worker is not None and worker.task is not None:
            worker.task.cancel()
            await asyncio.gather(worker.task, return_exceptions=True)

    async def stop(self) -> None:
        self.stopping = True
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        tasks += list(self.side_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.workers.clear()

    def healthy(self) -> bool:
        """False when a worker died of an unexpected exception."""
        return not any(
            w.task is not None
            and w.task.done()
            and not w.task.cancelled()
            and w.task.exception() is not None
            for w in self.workers.values()
        )
