"""Reporting a run: metrics, Warning Events, the status (rate-limited), the final output.

Status writes are limited to one per ``status_interval_seconds`` except on
transitions (phase or condition changes); the final status carries the RunOutput
reference saved by :class:`~rocky_operator.kube.store.RunStore`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rocky_operator.api.status import OutputRef, RockyRunStatus
from rocky_operator.kube.prepare import load_carried
from rocky_operator.logic.decide import AttemptState, Decision, TableState
from rocky_operator.logic.run_output import build_run_output, run_status
from rocky_operator.logic.runner_policy import note_policy_halt
from rocky_operator.logic.spec_change import note_spec_change
from rocky_operator.logic.status import REASON_NO_TABLES, build_status, status_document
from rocky_operator.logic.tables import REASON_MISSING, first_names, no_tables_message

if TYPE_CHECKING:
    from rocky_operator.kube.worker import RunWorker

log = logging.getLogger(__name__)

_TABLE_KEY = re.compile(r"\b[0-9a-f]{10}\b")


def monotonic() -> float:
    """The event loop's clock (status write rate limiting)."""
    return asyncio.get_running_loop().time()


def readable(worker: RunWorker, text: str) -> str:
    """Table keys in a decision's reason replaced by the tables' asset keys."""

    def name(match: re.Match[str]) -> str:
        table = worker.by_key.get(match.group(0))
        return "/".join(table.asset_key) if table else match.group(0)

    return _TABLE_KEY.sub(name, text)


def count(worker: RunWorker, new: Any, decision: Decision) -> None:
    """Metrics for what was recorded for the first time in this pass (the journal in
    memory has it already)."""
    metrics = worker.controller.metrics
    ns = worker.namespace
    for attempt in new:
        if attempt.state is AttemptState.RUNNING:
            if attempt.number > 1:
                previous = worker.journal.get((attempt.table, attempt.number - 1))
                kind = (previous.failure_kind if previous else None) or "unknown"
                metrics.table_retries.labels(ns, str(kind)).inc()
            continue
        if attempt.state is AttemptState.FAILED:
            metrics.table_failures.labels(ns, str(attempt.failure_kind or "unknown")).inc()
        if attempt.finished_at:
            seconds = (attempt.finished_at - attempt.started_at).total_seconds()
            metrics.table_duration.observe(max(seconds, 0.0))
        outcome = decision.outcomes.get(attempt.table)
        if outcome is not None and outcome.attempts == attempt.number:
            if outcome.state is TableState.COPIED:
                metrics.tables.labels(ns, "copied").inc()
            elif outcome.state is TableState.FAILED:
                metrics.tables.labels(ns, "failed").inc()


async def announce_failures(worker: RunWorker, new: Any, decision: Decision) -> None:
    """One Warning event per failure_kind for tables that failed for good in this pass."""
    by_kind: dict[str, list[str]] = {}
    for attempt in new:
        outcome = decision.outcomes.get(attempt.table)
        if (
            attempt.state is AttemptState.FAILED
            and outcome is not None
            and outcome.state is TableState.FAILED
            and outcome.attempts == attempt.number
        ):
            kind = str(attempt.failure_kind or "unknown")
            table = worker.by_key.get(attempt.table)
            name = "/".join(table.asset_key) if table else attempt.table
            by_kind.setdefault(kind, []).append(name)
    for kind, tables in sorted(by_kind.items()):
        shown = first_names(tables)
        await worker.client.post_event(
            namespace=worker.namespace,
            run_name=worker.name,
            run_uid=worker.uid,
            event_type="Warning",
            reason="TablesFailed",
            message=f"{len(tables)} table(s) failed with {kind}: {shown}",
        )


async def announce_exclusions(worker: RunWorker) -> None:
    """One Warning event for listed tables the source does not have (``source.tables``
    names that vanish otherwise); views excluded by default are in the output only."""
    missing = ["/".join(e.asset_key) for e in worker.excluded if e.reason == REASON_MISSING]
    if not missing:
        return
    shown = first_names(missing)
    await worker.client.post_event(
        namespace=worker.namespace,
        run_name=worker.name,
        run_uid=worker.uid,
        event_type="Warning",
        reason="TablesExcluded",
        message=f"{len(missing)} listed table(s) not found in the source: {shown} "
        "(runOutput.excluded_tables)",
    )


def current_status(
    worker: RunWorker,
    decision: Decision,
    now: datetime,
    *,
    run_output: Mapping[str, Any] | None = None,
    output: OutputRef | None = None,
) -> RockyRunStatus:
    """The run's status after ``decision``, with a later spec edit noted; the RunOutput and
    its ConfigMaps are given when the run ends."""
    assert worker.start_time is not None
    assert worker.spec is not None
    status = build_status(
        decision=decision,
        attempts=worker.journal.values(),
        retries=worker.index.retries,
        resumed=len(worker.resumed),
        previous=worker.status,
        generation=worker.generation,
        start_time=worker.start_time,
        now=now,
        run_output=run_output,
        output=output,
        excluded=len(worker.excluded),
        no_tables=no_tables_message(
            worker.spec,
            planned=len(worker.tables),
            resumed=len(worker.resumed),
            excluded=worker.excluded,
        ),
    )
    status = note_spec_change(
        status, generation=worker.generation, frozen_generation=worker.spec_generation, now=now
    )
    if worker.halt is not None:
        status = note_policy_halt(status, worker.halt, now=now, generation=worker.generation)
    return status


async def write_status(worker: RunWorker, decision: Decision, now: datetime) -> None:
    status = current_status(worker, decision, now)
    doc = status_document(status)
    if doc == worker.written:
        worker.pending_write = False
        return
    transition = worker.status.phase != status.phase or {
        c.type: c.status for c in worker.status.conditions
    } != {c.type: c.status for c in status.conditions}
    elapsed = monotonic() - worker.last_write
    if not transition and elapsed < worker.settings.status_interval_seconds:
        worker.pending_write = True
        return
    await worker.client.patch_run_status(worker.namespace, worker.name, doc)
    worker.controller.status_writes += 1
    worker.status, worker.written, worker.pending_write = status, doc, False
    worker.last_write = monotonic()


async def finish(worker: RunWorker, decision: Decision, now: datetime) -> None:
    assert worker.spec is not None
    assert worker.store is not None
    assert worker.start_time is not None
    full = build_run_output(
        worker.tables,
        decision.outcomes,
        started_at=worker.start_time,
        finished_at=now,
        filter=worker.spec.filter,
        resumed_from=worker.spec.resume_from,
        concurrency=worker.spec.concurrency,
        interrupted=False,
        excluded=worker.excluded,
    )
    if worker.spec.resume_from:  # what the runs before it copied and still fail
        full.update(await load_carried(worker.store))
    names, size, digest = await worker.store.save_output(full)
    status = current_status(
        worker,
        decision,
        now,
        run_output=full,
        output=OutputRef(config_maps=names, bytes=size, sha256=digest),
    )
    await worker.client.patch_run_status(worker.namespace, worker.name, status_document(status))
    worker.controller.status_writes += 1
    worker.status = status
    metrics = worker.controller.metrics
    counts = status.tables
    outcome = run_status(counts.copied, counts.failed, counts.not_attempted)
    metrics.tables.labels(worker.namespace, "skipped").inc(counts.not_attempted)
    metrics.runs.labels(worker.namespace, outcome).inc()
    metrics.run_duration.observe(max((now - worker.start_time).total_seconds(), 0.0))
    kinds = Counter(status.failures)
    detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    await announce_exclusions(worker)
    empty = not worker.tables and not worker.resumed
    await worker.client.post_event(
        namespace=worker.namespace,
        run_name=worker.name,
        run_uid=worker.uid,
        event_type="Normal" if outcome == "success" and not empty else "Warning",
        reason=REASON_NO_TABLES
        if empty
        else {
            "success": "RunSucceeded",
            "partial_failure": "RunPartiallyFailed",
            "failure": "RunFailed",
        }[outcome],
        message=f"{status.message}" + (f" (failures: {detail})" if detail else ""),
    )
    log.info("run %s/%s finished: %s", worker.namespace, worker.name, status.message)
