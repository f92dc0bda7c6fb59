"""The metrics endpoint: DESIGN.md's names and labels, /healthz, no per-run labels."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest

from rocky_operator.metrics import Metrics, MetricsServer


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


async def test_metrics_and_health_endpoints() -> None:
    metrics = Metrics()
    metrics.table_failures.labels("data", "auth-failed").inc()
    metrics.table_retries.labels("data", "transient").inc(2)
    metrics.tables.labels("data", "copied").inc(3)
    metrics.runs.labels("data", "partial_failure").inc()
    metrics.runs_active.labels("data").set(1)
    metrics.table_duration.observe(3.5)
    metrics.run_duration.observe(60)
    healthy = [True]
    server = MetricsServer(metrics, host="127.0.0.1", port=0, healthy=lambda: healthy[0])
    await server.start()
    try:
        status, text = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.port}/metrics")
        assert status == 200
        for line in (
            'rocky_table_failures_total{failure_kind="auth-failed",namespace="data"} 1.0',
            'rocky_table_retries_total{failure_kind="transient",namespace="data"} 2.0',
            'rocky_tables_total{namespace="data",outcome="copied"} 3.0',
            'rocky_runs_total{namespace="data",status="partial_failure"} 1.0',
            'rocky_runs_active{namespace="data"} 1.0',
            "rocky_table_duration_seconds_count 1.0",
            "rocky_run_duration_seconds_count 1.0",
        ):
            assert line in text, line
        assert "# TYPE rocky_table_failures_total counter" in text
        status, text = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.port}/healthz")
        assert (status, text.strip()) == (200, "ok")
        healthy[0] = False
        with pytest.raises(urllib.error.HTTPError, match="503"):
            await asyncio.to_thread(_get, f"http://127.0.0.1:{server.port}/healthz")
    finally:
        await server.stop()
