"""Prometheus metrics of the operator (DESIGN.md names and labels) and /healthz.

The metrics live in their own registry (no process or platform collectors leaking
into tests). Counters are monotonic and counted exactly once per table result: the
controller counts a result at the moment it first records it in the run's journal,
which happens once per attempt even across operator restarts (an adopted result is
already in the journal and is not counted again). No label carries a run or table
name, so the series count stays bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, float("inf"))


class Metrics:
    """The operator's metrics in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.table_failures = Counter(
            "rocky_table_failures_total",
            "Table attempts that failed, by failure_kind (retried ones included).",
            ["namespace", "failure_kind"],
            registry=self.registry,
        )
        self.table_retries = Counter(
            "rocky_table_retries_total",
            "Retries started, by the failure_kind of the attempt being retried.",
            ["namespace", "failure_kind"],
            registry=self.registry,
        )
        self.tables = Counter(
            "rocky_tables_total",
            "Tables by final outcome: copied, failed, skipped (never attempted).",
            ["namespace", "outcome"],
            registry=self.registry,
        )
        self.runs = Counter(
            "rocky_runs_total",
            "Finished runs by status: success, partial_failure, failure.",
            ["namespace", "status"],
            registry=self.registry,
        )
        self.runs_active = Gauge(
            "rocky_runs_active", "Runs in progress.", ["namespace"], registry=self.registry
        )
        self.table_duration = Histogram(
            "rocky_table_duration_seconds",
            "Duration of table attempts.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.run_duration = Histogram(
            "rocky_run_duration_seconds",
            "Duration of finished runs.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data


class MetricsServer:
    """``/metrics`` and ``/healthz`` on one port (aiohttp, in the operator's loop)."""

    def __init__(
        self, metrics: Metrics, *, host: str, port: int, healthy: Callable[[], bool]
    ) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self.healthy = healthy
        self._runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        if self.healthy():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="unhealthy\n")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # ephemeral port (tests): learn which one
            server = site._server
            if isinstance(server, asyncio.base_events.Server) and server.sockets:
                self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
