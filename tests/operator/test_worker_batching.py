"""RunWorker.sleep(): leading-edge coalescing of pod events (at most one pass per batch)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace

from rocky_operator.kube.report import monotonic
from rocky_operator.kube.settings import ControllerSettings
from rocky_operator.kube.worker import RunWorker


def worker(batch: float) -> RunWorker:
    settings = ControllerSettings(batch_seconds=batch, resync_seconds=600.0)
    controller = SimpleNamespace(settings=settings, clock=lambda: datetime.now(UTC))
    return RunWorker(controller, "ns", "run")  # type: ignore[arg-type]


def test_a_wake_after_an_idle_batch_runs_a_pass_at_once() -> None:
    async def scenario() -> float:
        w = worker(batch=600.0)
        w.pass_started = monotonic() - 600.0  # the latest pass began a batch ago
        w.wake()
        # would hang (600 s) if the wake still waited a whole batch
        await asyncio.wait_for(w.sleep(), timeout=60.0)
        return 0.0 if w.wake_event.is_set() else 1.0

    assert asyncio.run(scenario()) == 1.0  # woken, and the wake consumed


def test_wakes_within_a_batch_wait_for_the_rest_of_it() -> None:
    async def scenario() -> tuple[float, bool]:
        w = worker(batch=0.5)
        w.pass_started = monotonic()
        w.wake()
        await w.sleep()
        elapsed = monotonic() - w.pass_started
        return elapsed, w.wake_event.is_set()

    elapsed, still_set = asyncio.run(scenario())
    assert elapsed >= 0.5  # a burst still coalesces: no second pass within the batch
    assert not still_set


def test_a_burst_during_the_interval_becomes_one_wake() -> None:
    async def scenario() -> bool:
        w = worker(batch=0.3)
        w.pass_started = monotonic()
        task = asyncio.ensure_future(w.sleep())
        for _ in range(5):
            w.wake()
            await asyncio.sleep(0)
        await task
        return w.wake_event.is_set()

    assert asyncio.run(scenario()) is False
