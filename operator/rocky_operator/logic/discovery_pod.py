"""The discovery pod: its manifest, and what an observed one means.

Discovery runs as a short-lived runner pod of the run, so the operator never reads a
warehouse Secret nor loads a connector: same image, same Secret references, same
volumes, same restricted security context as the copy pods, with ``ROCKY_DISCOVERY``
(the adapter and schema pattern) instead of ``ROCKY_TASK``. It always runs the
runner command (``rocky-runner``): a run's command override wraps a copy, not this.
Its answer comes back through the pod log (:mod:`rocky_runner.discovery_channel`).

Pure: no client, no clock (``now`` is an argument), no logging.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.logic.pod_manifest import RunnerDefaults, owner_reference, runner_pod_spec
from rocky_operator.logic.pods import (
    CONTAINER_NAME,
    LABEL_ROLE,
    LABEL_RUN,
    STUCK_WAITING,
    parse_time,
    stuck_verdict,
)
from rocky_operator.logic.runner_policy import RUNNER_COMMAND
from rocky_operator.logic.tables import adapter_settings
from rocky_runner.contract import (
    KIND_BY_EXIT_CODE,
    FailureKind,
)
from rocky_runner.discovery_channel import ENV_DISCOVERY, DiscoveryTask, parse_summary

ROLE_DISCOVERY = "discovery"
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_MAX_NAME = 63


def discovery_pod_name(run_name: str) -> str:
    """``<run>-discovery``: no table attempt ends so (theirs end in ``-<number>``)."""
    run = _NOT_DNS.sub("-", run_name.lower()).strip("-")
    suffix = "discovery"
    run = run[: _MAX_NAME - len(suffix) - 1].rstrip("-")
    return f"{run}-{suffix}" if run else suffix


def discovery_labels(run_name: str) -> dict[str, str]:
    return {
        LABEL_RUN: run_name,
        LABEL_ROLE: ROLE_DISCOVERY,
        "app.kubernetes.io/name": "rocky-runner",
        "app.kubernetes.io/managed-by": "rocky-operator",
    }


def discovery_task(spec: RockyRunSpec) -> DiscoveryTask:
    pattern = spec.source.schema_pattern
    return DiscoveryTask(
        adapter=adapter_settings(spec),
        prefix=pattern.prefix,
        separator=pattern.separator,
        components=list(pattern.components),
        catalog=spec.source.catalog,
        tables=list(spec.source.tables) if spec.source.tables else None,
        include_views=spec.source.include_views,
    )


def build_discovery_pod(
    *,
    run_name: str,
    run_uid: str,
    namespace: str,
    spec: RockyRunSpec,
    deadline_seconds: int,
    defaults: RunnerDefaults,
) -> dict[str, Any]:
    """The Pod manifest of the run's discovery."""
    pod_spec = runner_pod_spec(
        spec,
        defaults,
        first_env={ENV_DISCOVERY: discovery_task(spec).model_dump_json(exclude_defaults=True)},
        command=RUNNER_COMMAND,
    )
    pod_spec["activeDeadlineSeconds"] = max(int(deadline_seconds), 1)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": discovery_pod_name(run_name),
            "namespace": namespace,
            "labels": discovery_labels(run_name),
            "ownerReferences": [owner_reference(run_name, run_uid)],
        },
        "spec": pod_spec,
    }


@dataclass(frozen=True)
class DiscoveryState:
    """What an observed discovery pod says."""

    done: bool
    """Finished (either way): read the log, or report the failure."""
    summary: Mapping[str, Any] | None = None
    """The termination summary (``outcome`` discovered / failed), when there is one."""
    failure_kind: FailureKind | None = None
    """Set when discovery failed."""
    error: str = ""
    """Why it failed, one line (the runner's redacted error, or the pod's state)."""
    reason: str = "DiscoveryFailed"
    """Condition reason of the failed run."""


def observe_discovery_pod(
    pod: Mapping[str, Any], now: datetime, stuck_grace_seconds: float
) -> DiscoveryState:
    """The state of a discovery pod: running, succeeded (summary) or failed (why)."""
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    container: Mapping[str, Any] = next(
        (c for c in statuses if c.get("name") == CONTAINER_NAME), {}
    )
    state = container.get("state") or {}
    terminated = state.get("terminated")
    if terminated:
        summary = parse_summary(terminated.get("message"))
        code = terminated.get("exitCode")
        if summary is not None and summary.get("outcome") == "discovered" and code == 0:
            return DiscoveryState(done=True, summary=summary)
        if summary is not None and summary.get("outcome") == "failed":
            kind = _kind(summary.get("failure_kind"))
            return DiscoveryState(True, summary, kind, str(summary.get("error") or ""))
        by_code = KIND_BY_EXIT_CODE.get(code) if isinstance(code, int) else None
        why = terminated.get("reason") or "Error"
        return DiscoveryState(
            True, None, by_code or FailureKind.UNKNOWN,
            f"discovery pod ended ({why}, exit code {code}) without a result",
        )  # fmt: skip
    if status.get("reason") == "DeadlineExceeded":
        return DiscoveryState(
            True, None, FailureKind.TRANSIENT, "discovery pod exceeded its deadline"
        )
    if status.get("phase") in ("Failed", "Succeeded"):
        why = status.get("reason") or status.get("phase")
        return DiscoveryState(True, None, FailureKind.TRANSIENT, f"discovery pod ended ({why})")
    waiting = state.get("waiting") or {}
    waiting_reason = str(waiting.get("reason") or "")
    if waiting_reason in STUCK_WAITING:
        since = parse_time((pod.get("metadata") or {}).get("creationTimestamp")) or parse_time(
            status.get("startTime")
        )
        message = str(waiting.get("message") or "")
        stuck_kind, grace = stuck_verdict(waiting_reason, message, stuck_grace_seconds)
        if since is None or (now - since).total_seconds() >= grace:
            detail = f"{waiting_reason}: {message}".rstrip(": ")
            reason = (
                "SecretNotFound"
                if stuck_kind is FailureKind.AUTH_FAILED and "secret" in detail.lower()
                else "DiscoveryFailed"
            )
            return DiscoveryState(
                True, None, stuck_kind, f"discovery pod could not start ({detail})", reason
            )
    return DiscoveryState(done=False)


def _kind(value: object) -> FailureKind:
    try:
        return FailureKind(str(value))
    except ValueError:
        return FailureKind.UNKNOWN
