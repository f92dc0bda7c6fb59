"""Observing a run: merge its pods with its journal into the attempts the decision core reads.

A pod whose attempt is already recorded as finished adds nothing (the journal holds
its result); a running attempt whose pod is gone becomes a failed attempt
(:func:`~rocky_operator.logic.pods.missing_pod_attempt`). Everything first seen in
this pass is returned in ``new`` so it can be journaled before anything is done.
"""

from __future__ import annotations

from collections import ChainMap, Counter
from collections.abc import Collection, Container, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

from rocky_operator.logic.decide import Attempt, AttemptState
from rocky_operator.logic.pods import (
    PodSettings,
    classify_pod,
    missing_pod_attempt,
    pod_identity,
)
from rocky_operator.logic.status import count_retries
from rocky_runner.contract import FailureKind

AttemptId = tuple[str, int]


def _kind(attempt: Attempt | None) -> str:
    """The failure_kind a retry of ``attempt`` is counted under (as ``count_retries``)."""
    return ((attempt.failure_kind if attempt else None) or FailureKind.UNKNOWN).value


class JournalIndex:
    """What a pass needs of the journal without reading all of it (issue 13 goal 1): the
    attempts recorded as running and the retries by kind (``count_retries``), kept up to
    date by :meth:`record`, the one way the worker adds to its journal."""

    def __init__(self, journal: Mapping[AttemptId, Attempt]) -> None:
        self.running: set[AttemptId] = {
            ident for ident, a in journal.items() if a.state is AttemptState.RUNNING
        }
        self._retries: Counter[str] = Counter(count_retries(journal.values()))

    def record(
        self, journal: MutableMapping[AttemptId, Attempt], attempts: Iterable[Attempt]
    ) -> None:
        for attempt in attempts:
            ident = (attempt.table, attempt.number)
            old = journal.get(ident)
            if old is None and attempt.number > 1:
                self._retries[_kind(journal.get((attempt.table, attempt.number - 1)))] += 1
            if (attempt.table, attempt.number + 1) in journal and _kind(old) != _kind(attempt):
                self._retries[_kind(old)] -= 1  # the next attempt retried this one
                self._retries[_kind(attempt)] += 1
            journal[ident] = attempt
            if attempt.state is AttemptState.RUNNING:
                self.running.add(ident)
            else:
                self.running.discard(ident)

    @property
    def retries(self) -> dict[str, int]:
        return {kind: n for kind, n in sorted(self._retries.items()) if n > 0}


@dataclass
class Observation:
    """What one pass saw: every attempt, the ones new to the journal, and the pods' names."""

    attempts: MutableMapping[AttemptId, Attempt] = field(default_factory=dict)
    """The journal with what this pass saw over it (a view: the journal is not copied)."""
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
    running: Collection[AttemptId] | None = None,
) -> Observation:
    """The journal updated with what the pods of the run show at ``now``.

    A running attempt without a pod is *lost* (transient, the next number) when its pod
    is known to have existed (``created``), and *uncreated* otherwise. ``running``: the
    journal's running attempts, when known (:class:`JournalIndex`; else the journal is
    read through): a pass then costs O(pods + running), not O(journal)."""
    overlay: dict[AttemptId, Attempt] = {}
    seen_now = Observation(attempts=ChainMap(overlay, cast(dict[AttemptId, Attempt], journal)))
    attempts, new, pod_names = overlay, seen_now.new, seen_now.pod_names
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
    if running is None:
        running = [i for i, a in journal.items() if a.state is AttemptState.RUNNING]
    for ident in sorted(running):
        recorded = journal[ident]
        if recorded.state is AttemptState.RUNNING and ident not in pod_names:
            if ident not in created:
                seen_now.uncreated.append(recorded)
                continue
            gone = missing_pod_attempt(ident[0], ident[1], recorded.started_at, now)
            attempts[ident] = new[ident] = gone
    return seen_now
