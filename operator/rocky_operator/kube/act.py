"""Acting on a decision: create the pods of started attempts, delete finished pods.

Both run after the journal records what they are about to do (see
:mod:`rocky_operator.kube.worker`), so a crash in between loses nothing. The final
pass writes the final status before it deletes the last pods; an operator stopped in
between leaves pods of a finished run, which the next one removes
(:func:`sweep_finished_run`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from rocky_operator.kube.client import KubeClient, KubeError
from rocky_operator.logic.decide import Attempt, AttemptState, Decision
from rocky_operator.logic.pod_manifest import build_pod
from rocky_operator.logic.pods import LABEL_RUN, PodSettings, classify_pod
from rocky_runner.contract import FailureKind

if TYPE_CHECKING:
    from rocky_operator.kube.worker import RunWorker


async def create_pods(worker: RunWorker, starts: Sequence[Attempt]) -> None:
    assert worker.spec is not None
    assert worker.store is not None
    if worker.halt is not None:  # the frozen spec is outside the runner policy: no pod
        return
    by_key = worker.by_key
    gate = asyncio.Semaphore(worker.settings.create_parallelism)
    failed: list[Attempt] = []

    async def create(attempt: Attempt) -> None:
        assert worker.spec is not None
        pod = build_pod(
            run_name=worker.name,
            run_uid=worker.uid,
            namespace=worker.namespace,
            spec=worker.spec,
            table=by_key[attempt.table],
            attempt=attempt.number,
            defaults=worker.settings.runner_defaults,
        )
        async with gate:
            try:
                await worker.client.create_pod(worker.namespace, pod)
                worker.pods_created((attempt.table, attempt.number))
            except KubeError as exc:
                if exc.status in (0, 429) or exc.status >= 500:
                    raise
                # The API refused the pod itself (invalid, forbidden): no retry helps.
                failed.append(
                    replace(
                        attempt,
                        state=AttemptState.FAILED,
                        finished_at=attempt.started_at,
                        failure_kind=FailureKind.UNKNOWN,
                        error=f"the API server refused the runner pod: {exc}",
                    )
                )

    outcomes = await asyncio.gather(*(create(a) for a in starts), return_exceptions=True)
    if failed:
        await worker.store.append_journal(failed)
        worker.record(failed)
        worker.unobserved.extend(failed)
        worker.wake()
    for outcome in outcomes:  # an API error: the pass is retried (those pods come then)
        if isinstance(outcome, BaseException):
            raise outcome


async def delete_finished(
    worker: RunWorker, pod_names: Mapping[tuple[str, int], str], decision: Decision
) -> None:
    aborted = set(decision.abort)
    doomed = []
    for ident, name in pod_names.items():
        recorded = worker.journal.get(ident)
        if recorded is None or recorded.state is AttemptState.RUNNING:
            continue
        if (
            recorded.state is AttemptState.FAILED
            and worker.settings.keep_failed_pods
            and ident not in aborted
        ):
            continue
        doomed.append(name)
    gate = asyncio.Semaphore(worker.settings.create_parallelism)

    async def delete(name: str) -> None:
        async with gate:
            await worker.client.delete_pod(worker.namespace, name)

    await asyncio.gather(*(delete(n) for n in doomed))


async def sweep_finished_run(
    client: KubeClient,
    namespace: str,
    run_name: str,
    now: datetime,
    *,
    keep_failed_pods: bool,
    parallelism: int,
) -> int:
    """Delete the runner pods left by a finished run; returns how many were deleted.

    The final status is written before the last pods are deleted, and only once every
    result is journaled: any runner pod of a finished run is done with. As in the final
    pass, the pods of failed attempts stay with ``keep_failed_pods``."""
    pods = await client.list_pods(namespace, {LABEL_RUN: run_name})
    doomed = []
    for pod in pods:
        seen = classify_pod(pod, now, PodSettings(stuck_grace_seconds=0.0))
        if seen is None:
            continue  # not a runner pod
        if keep_failed_pods and seen.state is AttemptState.FAILED:
            continue
        doomed.append(pod["metadata"]["name"])
    gate = asyncio.Semaphore(parallelism)

    async def delete(name: str) -> None:
        async with gate:
            await client.delete_pod(namespace, name)

    await asyncio.gather(*(delete(n) for n in doomed))
    return len(doomed)
