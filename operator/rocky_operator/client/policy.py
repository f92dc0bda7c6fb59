"""The seed's "Recommended consumer policy": one action per failure_kind.

| action                                  | failure kinds                          |
|-----------------------------------------|----------------------------------------|
| retry with backoff                      | transient, connection-failed           |
| retry with extended backoff and alert   | quota-exceeded                         |
| don't retry; alert the model owner      | auth-failed, query-rejected, not-found |
| surface the raw error for triage        | unknown (and anything not known yet)   |

Kinds are compared as the kebab-case wire strings, never parsed from error text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    RETRY = "retry"
    RETRY_EXTENDED_AND_ALERT = "retry-extended-and-alert"
    ALERT = "alert"
    SURFACE = "surface"


ACTION_BY_KIND: Mapping[str, Action] = {
    "transient": Action.RETRY,
    "connection-failed": Action.RETRY,
    "quota-exceeded": Action.RETRY_EXTENDED_AND_ALERT,
    "auth-failed": Action.ALERT,
    "query-rejected": Action.ALERT,
    "not-found": Action.ALERT,
    "unknown": Action.SURFACE,
}


def action_for(failure_kind: str | None) -> Action:
    """The action for one failure kind; a kind this table does not know is surfaced, never
    silently retried (Rocky may add kinds, e.g. ``compile-error``)."""
    return ACTION_BY_KIND.get(failure_kind or "unknown", Action.SURFACE)


@dataclass(frozen=True)
class TableFailure:
    target: str
    """The asset key joined by ``/``."""
    failure_kind: str
    error: str
    action: Action


@dataclass(frozen=True)
class Triage:
    """A run's failures sorted by action."""

    failures: tuple[TableFailure, ...] = ()
    by_action: Mapping[Action, tuple[TableFailure, ...]] = field(default_factory=dict)

    def of(self, action: Action) -> tuple[TableFailure, ...]:
        return self.by_action.get(action, ())

    @property
    def retryable_kinds(self) -> list[str]:
        """Kinds a retry may fix (for ``resumeKinds`` of the retry run)."""
        return sorted(
            {
                f.failure_kind
                for f in self.failures
                if f.action in (Action.RETRY, Action.RETRY_EXTENDED_AND_ALERT)
            }
        )


def triage(errors: Iterable[Any]) -> Triage:
    """Sort ``RunResult.errors`` (rocky-sdk TableError objects, or dicts) by action."""
    failures = []
    for err in errors:
        if isinstance(err, Mapping):
            key, kind, text = err.get("asset_key", []), err.get("failure_kind"), err.get("error")
        else:
            key, kind, text = err.asset_key, err.failure_kind, err.error
        kind = str(kind or "unknown")
        failures.append(TableFailure("/".join(key), kind, str(text or ""), action_for(kind)))
    grouped: dict[Action, list[TableFailure]] = {}
    for f in failures:
        grouped.setdefault(f.action, []).append(f)
    return Triage(tuple(failures), {a: tuple(fs) for a, fs in grouped.items()})
