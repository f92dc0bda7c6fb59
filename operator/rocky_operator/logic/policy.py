"""How a run treats failures: retries per failure_kind, fail-fast, the auth breaker.

The defaults follow the consumer policy recommended by Rocky's per-table error
containment page: retry ``transient`` and ``connection-failed`` with exponential
backoff, retry ``quota-exceeded`` with an extended backoff, never retry the kinds
that need a human (``auth-failed``, ``query-rejected``, ``not-found``) nor
``unknown`` (surface it for triage instead of retrying blindly).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from rocky_operator.api.spec import RockyRunSpec
from rocky_runner.contract import FailureKind


@dataclass(frozen=True)
class RetryRule:
    """Retry rule of one failure kind."""

    max_retries: int
    """How many more attempts after the first failure (0: never retried)."""
    backoff_seconds: float
    """Delay before the first retry, in seconds; doubles with each further retry."""
    max_backoff_seconds: float
    """Upper bound of any one delay, in seconds."""


NO_RETRY = RetryRule(max_retries=0, backoff_seconds=0.0, max_backoff_seconds=0.0)

#: The default rule per failure kind (DESIGN.md, "Retry policy").
DEFAULT_RETRY: Mapping[FailureKind, RetryRule] = MappingProxyType(
    {
        FailureKind.TRANSIENT: RetryRule(3, 10.0, 300.0),
        FailureKind.CONNECTION_FAILED: RetryRule(3, 10.0, 300.0),
        FailureKind.QUOTA_EXCEEDED: RetryRule(2, 60.0, 900.0),
        FailureKind.AUTH_FAILED: NO_RETRY,
        FailureKind.QUERY_REJECTED: NO_RETRY,
        FailureKind.NOT_FOUND: NO_RETRY,
        FailureKind.UNKNOWN: NO_RETRY,
        FailureKind.COMPILE_ERROR: NO_RETRY,
    }
)

#: Circuit breaker default: stop launching new tables after this many auth-failed results.
DEFAULT_AUTH_FAILED_THRESHOLD = 3


def backoff_delay(rule: RetryRule, retry_number: int) -> float:
    """Seconds to wait before retry ``retry_number`` (1 = the first retry).

    ``backoff_seconds * 2 ** (retry_number - 1)``, capped at ``max_backoff_seconds``
    (the cap never lowers the delay below ``backoff_seconds`` if it was set lower).
    """
    if retry_number < 1:
        raise ValueError(f"retry_number starts at 1, got {retry_number}")
    delay = rule.backoff_seconds * (2.0 ** min(retry_number - 1, 62))
    cap = max(rule.max_backoff_seconds, rule.backoff_seconds)
    return float(min(delay, cap))


@dataclass(frozen=True)
class RunPolicy:
    """Everything the decision core needs to know from the spec about scheduling."""

    concurrency: int = 8
    """Runner processes / pods in flight at once."""
    fail_fast: bool = False
    """Abort the rest of the run on the first final failure."""
    retry: Mapping[FailureKind, RetryRule] = field(default_factory=lambda: dict(DEFAULT_RETRY))
    """Retry rule per failure kind; a kind missing here is never retried."""
    auth_failed_threshold: int = DEFAULT_AUTH_FAILED_THRESHOLD
    """Open the breaker after this many auth-failed results; 0 disables it."""

    def rule_for(self, kind: FailureKind | None) -> RetryRule:
        """The retry rule of a failure kind (a missing kind counts as unknown)."""
        return self.retry.get(kind or FailureKind.UNKNOWN, NO_RETRY)

    @classmethod
    def from_spec(cls, spec: RockyRunSpec) -> RunPolicy:
        """The policy of a RockyRun: defaults overlaid with ``spec.retry`` per kind.

        An override sets only the fields it names; e.g. ``transient: {maxRetries: 5}``
        keeps the default 10 s backoff.
        """
        rules: dict[FailureKind, RetryRule] = {}
        for kind, default in DEFAULT_RETRY.items():
            override = spec.retry.rule_for(kind.value)
            if override is None:
                rules[kind] = default
                continue
            rules[kind] = RetryRule(
                max_retries=(
                    override.max_retries
                    if override.max_retries is not None
                    else default.max_retries
                ),
                backoff_seconds=(
                    override.backoff_seconds
                    if override.backoff_seconds is not None
                    else default.backoff_seconds
                ),
                max_backoff_seconds=(
                    override.max_backoff_seconds
                    if override.max_backoff_seconds is not None
                    else default.max_backoff_seconds
                ),
            )
        return cls(
            concurrency=spec.concurrency,
            fail_fast=spec.fail_fast,
            retry=MappingProxyType(rules),
            auth_failed_threshold=spec.circuit_breaker.auth_failed_threshold,
        )
