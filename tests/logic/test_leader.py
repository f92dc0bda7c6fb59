"""Leader election decisions (logic/leader.py): who leads, when a lease expires, when to stop."""

from __future__ import annotations

import random

import pytest

from rocky_operator.logic.leader import (
    Action,
    LeaseRecord,
    LeaseTimings,
    Observation,
    decide,
    observe,
)

T = LeaseTimings(lease_duration=12, renew_deadline=8, retry_period=2)


def rec(holder: str, renew: str = "r1", duration: float = 12) -> LeaseRecord:
    return LeaseRecord(holder=holder, duration_seconds=duration, renew_time=renew)


def test_no_lease_is_created() -> None:
    d = decide(identity="a", seen=Observation(None, 0), now=0, last_renewed=None, timings=T)
    assert d.action is Action.CREATE


def test_a_live_lease_of_another_is_waited_on_until_it_expires() -> None:
    seen = Observation(rec("b"), changed_at=100)
    d = decide(identity="a", seen=seen, now=105, last_renewed=None, timings=T)
    assert d.action is Action.WAIT
    assert d.expires_in == pytest.approx(7)
    assert d.wait_seconds == 2
    # Close to the expiry, look again right at it, not a whole retry period later.
    d = decide(identity="a", seen=seen, now=111.5, last_renewed=None, timings=T)
    assert d.action is Action.WAIT
    assert d.wait_seconds == pytest.approx(0.5)
    d = decide(identity="a", seen=seen, now=112, last_renewed=None, timings=T)
    assert d.action is Action.TAKE_OVER


def test_expiry_uses_the_duration_the_holder_wrote() -> None:
    seen = Observation(rec("b", duration=30), changed_at=0)
    assert decide(identity="a", seen=seen, now=29, last_renewed=None, timings=T).action is (
        Action.WAIT
    )
    assert decide(identity="a", seen=seen, now=30, last_renewed=None, timings=T).action is (
        Action.TAKE_OVER
    )


def test_a_released_lease_is_taken_over_at_once() -> None:
    seen = Observation(rec(""), changed_at=100)
    d = decide(identity="a", seen=seen, now=100, last_renewed=None, timings=T)
    assert d.action is Action.TAKE_OVER


def test_the_leader_renews_then_stands_down_past_the_renew_deadline() -> None:
    seen = Observation(rec("a"), changed_at=100)
    assert decide(identity="a", seen=seen, now=107.9, last_renewed=100, timings=T).action is (
        Action.RENEW
    )
    d = decide(identity="a", seen=seen, now=108, last_renewed=100, timings=T)
    assert d.action is Action.STAND_DOWN
    assert "renew deadline" in d.reason


def test_a_leader_that_finds_another_holder_or_no_lease_stands_down() -> None:
    for record in (rec("b"), rec(""), None):
        seen = Observation(record, changed_at=100)
        d = decide(identity="a", seen=seen, now=101, last_renewed=100, timings=T)
        assert d.action is Action.STAND_DOWN, record


def test_a_candidate_that_finds_itself_holder_takes_over_rather_than_renews() -> None:
    # E.g. its write went through but the answer was lost.
    seen = Observation(rec("a"), changed_at=100)
    assert decide(identity="a", seen=seen, now=100, last_renewed=None, timings=T).action is (
        Action.TAKE_OVER
    )


def test_observe_moves_the_clock_only_when_the_record_changes() -> None:
    first = observe(None, rec("b", "r1"), 10)
    assert first.changed_at == 10
    # Same holder / renew time / duration: no renewal seen, even with a new resourceVersion.
    same = LeaseRecord(holder="b", duration_seconds=12, renew_time="r1", resource_version="9")
    assert observe(first, same, 20).changed_at == 10
    assert observe(first, rec("b", "r2"), 20).changed_at == 20
    assert observe(first, rec("c", "r1"), 20).changed_at == 20
    assert observe(first, None, 20).changed_at == 20
    assert observe(observe(None, None, 5), None, 20).changed_at == 5


def test_timings_must_leave_a_margin() -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        LeaseTimings(lease_duration=10, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError, match="retry period"):
        LeaseTimings(lease_duration=15, renew_deadline=10, retry_period=10)
    assert LeaseTimings().takeover_bound <= 15  # the bound, with the defaults


def test_simulated_replicas_never_both_act() -> None:
    """Random message delays and crashes on a shared register with compare-and-swap: at no
    instant do two replicas consider themselves leader, and a live replica always takes over
    within ``takeover_bound`` of the last leader's death."""
    rng = random.Random(13)
    takeovers = 0
    for _trial in range(40):
        store: dict[str, object] = {"record": None, "version": 0}
        ids = ["a", "b", "c"]
        seen: dict[str, Observation | None] = dict.fromkeys(ids)
        renewed: dict[str, float | None] = dict.fromkeys(ids)
        wake = {i: rng.uniform(0, 2) for i in ids}
        dead: set[str] = set()
        last_leader_death: float | None = None
        failures = 0
        now = 0.0
        while now < 120:
            who = min((i for i in ids if i not in dead), key=lambda i: wake[i])
            now = wake[who]
            read_version = store["version"]
            record = store["record"]
            assert record is None or isinstance(record, LeaseRecord)
            observation = observe(seen[who], record, now)
            seen[who] = observation
            d = decide(
                identity=who, seen=observation, now=now, last_renewed=renewed[who], timings=T
            )
            if d.action is Action.STAND_DOWN:
                renewed[who] = None
            elif d.action in (Action.CREATE, Action.TAKE_OVER, Action.RENEW):
                # The write lands unless another write came first (409).
                # A write fails now and then (a timeout, a partition: the leader keeps
                # believing it leads until its renew deadline).
                if store["version"] == read_version and rng.random() > 0.1:
                    store["record"] = rec(who, renew=f"{who}@{now}")
                    store["version"] = int(store["version"]) + 1  # type: ignore[call-overload]
                    renewed[who] = now
                elif last_leader_death is not None:
                    failures += 1
            leaders = [
                i
                for i in ids
                if i not in dead and renewed[i] is not None and now - renewed[i] < T.renew_deadline  # type: ignore[operator]
            ]
            assert len(leaders) <= 1, (now, leaders)
            if leaders and last_leader_death is not None:
                # Each failed write after the death costs one more retry period.
                bound = T.takeover_bound + 0.4 + failures * (T.retry_period + 0.2)
                assert now - last_leader_death <= bound, (now - last_leader_death, failures)
                last_leader_death = None
                failures = 0
                takeovers += 1
            # Kill the leader now and then (once per trial, keep two alive).
            if leaders and not dead and rng.random() < 0.02:
                dead.add(leaders[0])
                last_leader_death = now
            wake[who] = now + d.wait_seconds + rng.uniform(0, 0.2)
    assert takeovers >= 20  # the property was exercised, not vacuous
