"""Leader election over a ``coordination.k8s.io/v1`` Lease: the decisions, no I/O.

Two or more ``rocky-operator run`` replicas share one Lease; only its holder runs kopf (the
RockyRun workers and the RockySchedule daemons). ``kube/leader.py`` reads and writes the Lease
and does what :func:`decide` says; everything that decides *whether* this replica leads is here.

The rules are client-go's (``k8s.io/client-go/tools/leaderelection``), which keep two leaders
from acting at once without trusting anyone's wall clock:

* A candidate measures a holder's lease from the moment *it saw the record change*, on its own
  monotonic clock, never from the ``renewTime`` the holder wrote (clocks of two nodes differ).
  A record that stops changing for ``leaseDurationSeconds`` is expired and may be taken over.
* The leader renews every ``retry_period``; if no renewal has succeeded for ``renew_deadline``
  (measured from when the last successful renewal was *sent*), it stands down (the process
  exits). ``renew_deadline < lease_duration`` leaves a margin: the leader stops before any
  candidate can consider its lease expired.
* A released Lease (empty holder, on a graceful shutdown) is taken over at once.

Writes use the Lease's ``resourceVersion`` (optimistic concurrency), so two candidates that
both decide to take over cannot both succeed: one gets 409 Conflict and stays a candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class LeaseTimings:
    """How long a lease lasts and how often it is renewed (seconds)."""

    lease_duration: float = 12.0
    """A holder's lease lasts this long after a candidate last saw it change."""
    renew_deadline: float = 8.0
    """The leader stands down when no renewal succeeded for this long."""
    retry_period: float = 1.0
    """Renewals (leader) and attempts (candidates) happen this often."""

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration, got "
                f"{self.retry_period:g} / {self.renew_deadline:g} / {self.lease_duration:g} s"
            )

    @property
    def takeover_bound(self) -> float:
        """Worst case from a leader's death to a candidate holding the lease (seconds)."""
        return self.lease_duration + self.retry_period


@dataclass(frozen=True)
class LeaseRecord:
    """The parts of a Lease that election reads (``spec`` + ``metadata.resourceVersion``)."""

    holder: str
    """``spec.holderIdentity``; empty when released."""
    duration_seconds: float
    """``spec.leaseDurationSeconds`` as the holder wrote it."""
    renew_time: str = ""
    """``spec.renewTime``, compared for change only (never as a time)."""
    transitions: int = 0
    """``spec.leaseTransitions``."""
    resource_version: str = ""


@dataclass(frozen=True)
class Observation:
    """The last Lease record this replica saw, and when (its monotonic clock) it changed."""

    record: LeaseRecord | None
    changed_at: float


def observe(previous: Observation | None, record: LeaseRecord | None, now: float) -> Observation:
    """Fold a freshly read record into what was seen: the time moves only when it changed.

    "Changed" is the holder, its renew time or its duration; a resourceVersion bump alone (e.g.
    a label edit) does not count as a renewal."""
    if previous is not None and _same(previous.record, record):
        return Observation(record=record, changed_at=previous.changed_at)
    return Observation(record=record, changed_at=now)


def _same(a: LeaseRecord | None, b: LeaseRecord | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.holder, a.renew_time, a.duration_seconds) == (
        b.holder,
        b.renew_time,
        b.duration_seconds,
    )


class Action(StrEnum):
    CREATE = "create"
    """No Lease exists: create it, holding it."""
    TAKE_OVER = "take-over"
    """Write this replica as holder (expired, released, or already ours)."""
    RENEW = "renew"
    """This replica leads: write a fresh renew time."""
    WAIT = "wait"
    """Someone else holds a live lease: look again later."""
    STAND_DOWN = "stand-down"
    """This replica led but must stop acting now (lost, or renewal past its deadline)."""


@dataclass(frozen=True)
class Decision:
    action: Action
    wait_seconds: float
    """When to look again (after a successful write, or now on WAIT)."""
    expires_in: float | None = None
    """WAIT: seconds until the holder's lease expires, as this replica measures it."""
    reason: str = ""


def decide(
    *,
    identity: str,
    seen: Observation,
    now: float,
    last_renewed: float | None,
    timings: LeaseTimings,
) -> Decision:
    """What this replica does next.

    ``seen`` is the latest read of the Lease (see :func:`observe`); ``last_renewed`` is when the
    last successful create / take-over / renewal by this replica was sent (its monotonic clock),
    None while it is a candidate. ``now`` is the same clock."""
    retry = timings.retry_period
    leading = last_renewed is not None
    if last_renewed is not None and now - last_renewed >= timings.renew_deadline:
        return Decision(
            Action.STAND_DOWN,
            0.0,
            reason=f"no renewal succeeded for {now - last_renewed:.1f} s "
            f"(renew deadline {timings.renew_deadline:g} s)",
        )
    record = seen.record
    if record is None:
        if leading:
            return Decision(Action.STAND_DOWN, 0.0, reason="the Lease was deleted")
        return Decision(Action.CREATE, retry, reason="no Lease yet")
    if record.holder == identity:
        return Decision(Action.RENEW if leading else Action.TAKE_OVER, retry, reason="ours")
    if leading:
        return Decision(
            Action.STAND_DOWN, 0.0, reason=f"the Lease is held by {record.holder or 'nobody'}"
        )
    if not record.holder:
        return Decision(Action.TAKE_OVER, retry, reason="released")
    expires_in = seen.changed_at + record.duration_seconds - now
    if expires_in <= 0:
        return Decision(
            Action.TAKE_OVER,
            retry,
            reason=f"{record.holder} has not renewed for {now - seen.changed_at:.1f} s",
        )
    # Look again at the retry period, or right when the lease would expire if that is sooner:
    # the takeover then comes within one read of the expiry, not up to a retry period late.
    return Decision(
        Action.WAIT,
        min(retry, expires_in),
        expires_in=expires_in,
        reason=f"held by {record.holder}",
    )
