"""Runner pods: their names and labels, and what an observed pod means.

The manifests are built in :mod:`rocky_operator.logic.pod_manifest`. :func:`classify_pod`
reads an observed pod
(the API's JSON) into a :class:`~rocky_operator.logic.decide.Attempt` following
DESIGN.md's table:

=====================================================  =================================
what happened to the pod                               failure_kind
=====================================================  =================================
terminated with a valid result message                 the message's kind
exit code 10..16, message missing or unreadable        the kind of that code
OOMKilled, crashed with another code, no result        unknown (error names both)
evicted, preempted, node lost (DisruptionTarget)       transient
activeDeadlineSeconds exceeded                         transient
Secret or key missing (CreateContainerConfigError)     auth-failed (after a short grace)
ConfigMap or key missing (CreateContainerConfigError)  not-found (after a short grace)
image cannot be pulled                                 unknown (after a grace period)
pod deleted by someone else before it finished         transient
=====================================================  =================================

Pure: no client, no clock (``now`` is an argument), no logging.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rocky_operator.logic.decide import Attempt, AttemptState
from rocky_operator.logic.results import result_attempt
from rocky_runner.contract import (
    KIND_BY_EXIT_CODE,
    FailureKind,
    MessageError,
    decode_result,
)

LABEL_RUN = "rocky.dev/run"
LABEL_TABLE = "rocky.dev/table"
LABEL_ATTEMPT = "rocky.dev/attempt"
LABEL_ROLE = "rocky.dev/role"
ANNOTATION_ASSET_KEY = "rocky.dev/asset-key"
CONTAINER_NAME = "runner"

#: Waiting reasons that never resolve by themselves, by the kind they fail as.
STUCK_WAITING: Mapping[str, FailureKind] = {
    "CreateContainerConfigError": FailureKind.AUTH_FAILED,
    "ErrImagePull": FailureKind.UNKNOWN,
    "ImagePullBackOff": FailureKind.UNKNOWN,
    "InvalidImageName": FailureKind.UNKNOWN,
    "ErrImageNeverPull": FailureKind.UNKNOWN,
    "CreateContainerError": FailureKind.UNKNOWN,
}
#: Grace of a pod whose kubelet message names a missing Secret, ConfigMap or key: the
#: cause is known, so it fails well before the full stuck grace (120 s by default), yet
#: not at once, so a Secret applied together with the run (one GitOps sync) still counts.
DEFINITIVE_GRACE_SECONDS = 10.0
_MISSING_SECRET = re.compile(r'secret "[^"]*" not found|couldn\'t find key \S+ in secret', re.I)
_MISSING_CONFIG_MAP = re.compile(
    r'configmap "[^"]*" not found|couldn\'t find key \S+ in configmap', re.I
)


def stuck_verdict(reason: str, message: str, grace_seconds: float) -> tuple[FailureKind, float]:
    """The kind a pod waiting with ``reason`` fails as, and after how many seconds.

    The full ``grace_seconds`` for an image or a container the kubelet cannot create
    (it may still come); :data:`DEFINITIVE_GRACE_SECONDS` at most when the kubelet names
    a missing Secret (auth-failed) or ConfigMap (not-found) or one of their keys.
    """
    kind = STUCK_WAITING[reason]
    if reason == "CreateContainerConfigError":
        if _MISSING_CONFIG_MAP.search(message) and not _MISSING_SECRET.search(message):
            return FailureKind.NOT_FOUND, min(grace_seconds, DEFINITIVE_GRACE_SECONDS)
        if _MISSING_SECRET.search(message):
            return kind, min(grace_seconds, DEFINITIVE_GRACE_SECONDS)
    return kind, grace_seconds


#: Pod-level reasons (``status.reason``) of a pod the cluster took away: transient.
DISRUPTED_REASONS = frozenset(
    {
        "Evicted",
        "Preempting",
        "NodeLost",
        "NodeShutdown",
        "Shutdown",
        "Terminated",
        "UnexpectedAdmissionError",
    }
)
DEADLINE_REASON = "DeadlineExceeded"
#: A terminated container's reason when the kubelet lost it (a kubelet restart, a lost node).
LOST_CONTAINER_REASONS = frozenset({"ContainerStatusUnknown"})
#: Default of how long a pod may sit in a stuck waiting state before it counts as failed
#: (a Secret created a little late, a registry hiccup).
DEFAULT_STUCK_GRACE_SECONDS = 120.0


@dataclass(frozen=True)
class PodSettings:
    """Operator-wide knobs for runner pods (command-line options of ``rocky-operator run``)."""

    stuck_grace_seconds: float = DEFAULT_STUCK_GRACE_SECONDS
    """How long a pod may wait with an image-pull or config error before it fails."""


# --- Observation ---------------------------------------------------------------------


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp of the API (``2026-01-02T03:04:05Z``) as an aware datetime."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def pod_identity(pod: Mapping[str, Any]) -> tuple[str, int] | None:
    """(table key, attempt number) from a pod's labels; None for a pod that is not ours."""
    labels = pod.get("metadata", {}).get("labels") or {}
    key = labels.get(LABEL_TABLE)
    number = labels.get(LABEL_ATTEMPT)
    if not key or not number or not str(number).isdigit():
        return None
    return key, int(number)


def _asset_key_annotation(meta: Mapping[str, Any]) -> list[str] | None:
    """The asset key the operator stamped on the pod (None when absent or unreadable)."""
    raw = (meta.get("annotations") or {}).get(ANNOTATION_ASSET_KEY)
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    ok = isinstance(value, list) and all(isinstance(p, str) for p in value)
    return value if ok else None


def _container_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == CONTAINER_NAME:
            return status  # type: ignore[no-any-return]
    return statuses[0] if statuses else {}


def _has_condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond  # type: ignore[no-any-return]
    return None


def classify_pod(
    pod: Mapping[str, Any], now: datetime, settings: PodSettings = PodSettings()
) -> Attempt | None:
    """The attempt an observed pod stands for; None when the pod is not a runner pod."""
    identity = pod_identity(pod)
    if identity is None:
        return None
    key, number = identity
    meta = pod.get("metadata", {})
    status = pod.get("status", {})
    started = parse_time(status.get("startTime")) or parse_time(meta.get("creationTimestamp"))
    started = started or now
    container = _container_status(pod)
    state = container.get("state") or {}
    terminated = state.get("terminated") or (container.get("lastState") or {}).get("terminated")
    phase = status.get("phase")

    def failed(kind: FailureKind, error: str, finished: datetime | None = None) -> Attempt:
        return Attempt(
            table=key,
            number=number,
            state=AttemptState.FAILED,
            started_at=started,
            finished_at=finished or now,
            failure_kind=kind,
            error=error,
        )

    finished_at = parse_time((terminated or {}).get("finishedAt"))
    message = (terminated or {}).get("message")
    decode_problem = "no result message"
    if message:
        try:
            result = decode_result(message)
        except MessageError as exc:
            decode_problem = str(exc)
        else:
            code = (terminated or {}).get("exitCode")
            return result_attempt(
                table=key,
                number=number,
                started_at=started,
                finished_at=finished_at or now,
                result=result,
                exit_code=code if isinstance(code, int) else None,
                asset_key=_asset_key_annotation(meta),
            )

    reason = status.get("reason") or ""
    disruption = _has_condition(pod, "DisruptionTarget")
    ended = (
        phase in ("Succeeded", "Failed") or bool(terminated) or bool(meta.get("deletionTimestamp"))
    )
    if reason in DISRUPTED_REASONS or (disruption is not None and ended):
        why = reason or (disruption or {}).get("reason") or "DisruptionTarget"
        detail = status.get("message") or (disruption or {}).get("message") or ""
        return failed(
            FailureKind.TRANSIENT,
            f"pod was disrupted ({why}): {detail}".rstrip(": "),
            finished_at,
        )
    if reason == DEADLINE_REASON:
        return failed(
            FailureKind.TRANSIENT,
            "pod exceeded activeDeadlineSeconds "
            f"({pod.get('spec', {}).get('activeDeadlineSeconds')} s) and was stopped",
            finished_at,
        )
    if terminated:
        code = terminated.get("exitCode")
        term_reason = terminated.get("reason") or "Error"
        if term_reason in LOST_CONTAINER_REASONS:
            # The kubelet (restarted, or its node gone) lost track of the container: what
            # it ran is unknown, so it is retried (DESIGN.md's classification table).
            detail = str(terminated.get("message") or "").strip()
            return failed(
                FailureKind.TRANSIENT,
                f"the kubelet lost the runner container ({term_reason}): {detail}".rstrip(": "),
                finished_at,
            )
        if isinstance(code, int) and code in KIND_BY_EXIT_CODE:
            kind = KIND_BY_EXIT_CODE[code]
            return failed(
                kind,
                f"runner exited with code {code} ({kind}) without a readable result: "
                f"{decode_problem}",
                finished_at,
            )
        return failed(
            FailureKind.UNKNOWN,
            f"runner container ended with reason {term_reason}, exit code {code}, and "
            f"without a readable result ({decode_problem})",
            finished_at,
        )
    if phase in ("Succeeded", "Failed"):
        return failed(
            FailureKind.UNKNOWN,
            f"pod phase {phase} ({reason or 'no reason'}) without a container result",
        )
    waiting = state.get("waiting") or {}
    waiting_reason = waiting.get("reason") or ""
    if waiting_reason in STUCK_WAITING:
        created = parse_time(meta.get("creationTimestamp")) or started
        detail = waiting.get("message") or ""
        kind, grace = stuck_verdict(waiting_reason, detail, settings.stuck_grace_seconds)
        if waiting_reason == "InvalidImageName" or (now - created).total_seconds() >= grace:
            what = (
                "a ConfigMap or key it reads is missing"
                if kind is FailureKind.NOT_FOUND
                else "a Secret or key for its credentials is missing"
                if waiting_reason == "CreateContainerConfigError"
                else "its image cannot be pulled"
                if "Image" in waiting_reason
                else "its container cannot be created"
            )
            return failed(kind, f"pod stuck in {waiting_reason}: {what}: {detail}".rstrip(": "))
    if meta.get("deletionTimestamp"):
        return failed(FailureKind.TRANSIENT, "pod was deleted by someone else before it finished")
    return Attempt(table=key, number=number, state=AttemptState.RUNNING, started_at=started)


def missing_pod_attempt(key: str, number: int, started_at: datetime, now: datetime) -> Attempt:
    """An attempt whose pod existed (seen, or recorded as created) and is gone without a
    result: transient, retried under the next attempt number.

    Only for a pod known to have existed: an attempt journaled as started whose pod was
    never created (the operator stopped in between, or the create failed) is not lost but
    created now under the same number, costing no retry (kube/observe.py, ``uncreated``).
    """
    return Attempt(
        table=key,
        number=number,
        state=AttemptState.FAILED,
        started_at=started_at,
        finished_at=now,
        failure_kind=FailureKind.TRANSIENT,
        error="runner pod disappeared before it finished (deleted by someone else?)",
    )


def aborted_attempt(attempt: Attempt, reason: str, now: datetime) -> Attempt:
    """A running attempt stopped by the operator (fail-fast): STOPPED, so the table counts
    as not attempted (``contained``, blocked by the failed table), not as failed. If its
    pod still reports a commit, the copy wins (see ``kube.observe``)."""
    return Attempt(
        table=attempt.table,
        number=attempt.number,
        state=AttemptState.STOPPED,
        started_at=attempt.started_at,
        finished_at=now,
        error=f"stopped before it finished: {reason}",
    )
