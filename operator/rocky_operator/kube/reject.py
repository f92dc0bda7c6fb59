"""Rejection of a run that cannot start: Failed, exit code 1, a condition naming why,
a Warning Event and a typed RunOutput saying so (the same shape a local run prints)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError

from rocky_operator.api.status import OutputRef
from rocky_operator.logic.run_output import build_failed_run_output
from rocky_operator.logic.status import build_rejected_status, status_document
from rocky_runner.contract import FailureKind

if TYPE_CHECKING:
    from rocky_operator.kube.worker import RunWorker

log = logging.getLogger(__name__)


class RejectedError(Exception):
    """The run cannot start; ``reason`` is the condition reason."""

    def __init__(self, reason: str, message: str, kind: str = "unknown") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.kind = kind


async def reject(worker: RunWorker, rejected: RejectedError, now: datetime) -> None:
    """End a run that cannot start: Failed, exit code 1, a condition naming why."""
    spec = worker.spec
    output = build_failed_run_output(
        rejected.message,
        started_at=now,
        finished_at=now,
        filter=spec.filter if spec is not None else "",
        failure_kind=_kind(rejected.kind),
        resumed_from=spec.resume_from if spec is not None else None,
    )
    status = build_rejected_status(
        reason=rejected.reason,
        message=rejected.message,
        previous=worker.status,
        generation=worker.generation,
        now=now,
        run_output=output,
    )
    if worker.store is not None and worker.uid:
        names, size, digest = await worker.store.save_output(output)
        status = status.model_copy(
            update={"output": OutputRef(config_maps=names, bytes=size, sha256=digest)}
        )
    await worker.client.patch_run_status(worker.namespace, worker.name, status_document(status))
    await worker.client.post_event(
        namespace=worker.namespace,
        run_name=worker.name,
        run_uid=worker.uid,
        event_type="Warning",
        reason=rejected.reason,
        message=rejected.message,
    )
    metrics = worker.controller.metrics
    metrics.runs.labels(worker.namespace, "failure").inc()
    log.info(
        "run %s/%s rejected: %s: %s",
        worker.namespace,
        worker.name,
        rejected.reason,
        rejected.message,
    )


def _kind(value: str) -> FailureKind:
    try:
        return FailureKind(value)
    except ValueError:
        return FailureKind.UNKNOWN


def validation_message(exc: ValidationError) -> str:
    """The first five problems of a spec that does not validate, one line, naming fields."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        text = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"spec.{where}: {text}" if where else f"spec: {text}")
    return "; ".join(parts)
