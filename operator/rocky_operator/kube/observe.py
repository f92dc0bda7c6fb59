"""Observing a run: merge its pods with its journal into the attempts the decision core reads.

A pod whose attempt is already recorded as finished adds nothing (the journal holds
its result); a running attempt whose pod is gone becomes a failed attempt
(:func:`~rocky_operator.logic.pods.missing_pod_attempt`). Everything first seen in
this pass is returned in ``new`` so it can be journaled before anything is done.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from rocky_operator.logic.decide import Attempt, AttemptState
from rocky_operator.logic.pods import (
    PodSettings,
    classify_pod,
    missing_pod_attempt,
    pod_identity,
)

AttemptId = tuple[str, int]


@dataclass
class Observation:
    """What one pass saw: every attempt, the ones new to the journal, and the pods' names."""

    attempts: dict[AttemptId, Attempt] = field(default_factory=dict)
    new: dict[AttemptId, Attempt] = field(default_factory=dict)
    pod_names: dict[AttemptId, str] = field(default_factory=dict)
    uncreated: list[Attempt] = field(default_factory=list)
    """Attempts journaled as started whose pods were never created (the operator stopped in
    between, or the create failed): still running, their pods are created now, under the
    same number, so an operator restart costs no retry."""


def observe(
    pods: Sequence[Mapping[str, Any]],
    journal: Mapping[AttemptId, Attempt],
    planned: set[str],
    now: datetime,
    pod_settings: PodSettings,
    created: Container[AttemptId] = frozenset(),
) -> Observation:
    """The journal updated with what the pods of the run show at ``now``.

    A running attempt without a pod is *lost* (transient, the next number) when its pod
    is known to have existed (``created``), and *uncreated* otherwise."""
    seen_now = Observation(attempts=dict(journal))
    attempts, new, pod_names = seen_now.attempts, seen_now.new, seen_now.pod_names
    for pod in pods:
        ident = pod_identity(pod)
        if ident is None or ident[0] not in planned:
            continue
        pod_names[ident] = pod["metadata"]["name"]
        recorded = journal.get(ident)
        stopping = recorded is not None and recorded.state is AttemptState.STOPPED
        if recorded is not None and recorded.state is not AttemptState.RUNNING and not stopping:
            continue
        seen = classify_pod(pod, now, pod_settings)
        if seen is None:
            continue
        if stopping and seen.state is not AttemptState.COPIED:
            continue  # stopped by the run; only a commit it still reports changes that
        if recorded is not None:
            seen = replace(seen, started_at=recorded.started_at)
        attempts[ident] = seen
        if seen.state is not AttemptState.RUNNING or recorded is None:
            new[ident] = seen
    for ident, recorded in journal.items():
        if recorded.state is AttemptState.RUNNING and ident not in pod_names:
            if ident not in created:
                seen_now.uncreated.append(recorded)
                continue
            gone = missing_pod_attempt(ident[0], ident[1], recorded.started_at, now)
            attempts[ident] = new[ident] = gone
    return seen_now
