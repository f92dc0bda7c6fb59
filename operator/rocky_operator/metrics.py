"""Prometheus metrics of the operator (DESIGN.md names and labels) and /healthz.

The metrics live in their own registry (no process or platform collectors leaking
into tests). Counters are monotonic and counted exactly once per table result: the
controller counts a result at the moment it first records it in the run's journal,
which happens once per attempt even across operator restarts (an adopted result is
already in the journal and is not counted again). No label carries a run or table
name, so the series count stays bounded.

A namespace's counters are created at 0 for every label value (:meth:`Metrics.init_namespace`)
when a run of it is first seen: Prometheus computes ``increase()`` from a series' first
sample, so a series that first appeared at 1 would hide its first failure from the alerts
and the dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
from collections.abc import Callable, Iterable
from importlib import metadata

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from rocky_operator import __version__
from rocky_runner.contract import FailureKind

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, float("inf"))
#: failure_kind values the operator records (compile-error is Rocky's, never produced here).
FAILURE_KINDS = tuple(k.value for k in FailureKind if k is not FailureKind.COMPILE_ERROR)
TABLE_OUTCOMES = ("copied", "failed", "skipped")
RUN_STATUSES = ("success", "partial_failure", "failure")
#: kind of rocky_worker_errors_total: an API call that failed (retried with backoff), or an
#: unexpected exception in a run's worker (a bug; also retried).
WORKER_ERROR_KINDS = ("api", "unexpected")


def _version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


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
        self.worker_errors = Counter(
            "rocky_worker_errors_total",
            "Errors in run workers, by kind: api (a Kubernetes API call failed) or unexpected "
            "(an exception the worker did not expect); each is retried with backoff.",
            ["namespace", "kind"],
            registry=self.registry,
        )
        self.run_progress = Gauge(
            "rocky_run_last_progress_timestamp_seconds",
            "Unix time of the oldest last progress (planned, an attempt started or a result "
            "recorded) among the namespace's running runs; absent when none is running.",
            ["namespace"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "rocky_operator_leader",
            "1 while this replica leads: it holds the leader-election Lease, or runs without "
            "leader election (--leader-election-lease unset); 0 while it stands by.",
            registry=self.registry,
        )
        self.leader.set(1)  # without leader election; an elector sets 0 until it leads
        self.build_info = Gauge(
            "rocky_build_info",
            "Always 1; the labels name the operator's version, Python and kopf.",
            ["version", "python_version", "kopf_version"],
            registry=self.registry,
        )
        self.build_info.labels(__version__, platform.python_version(), _version_of("kopf")).set(1)
        self._namespaces: set[str] = set()

    def init_namespace(self, namespace: str) -> None:
        """Create the namespace's series at 0 (once), so their first increase is seen."""
        if namespace in self._namespaces:
            return
        self._namespaces.add(namespace)
        for kind in FAILURE_KINDS:
            self.table_failures.labels(namespace, kind)
            self.table_retries.labels(namespace, kind)
        for outcome in TABLE_OUTCOMES:
            self.tables.labels(namespace, outcome)
        for status in RUN_STATUSES:
            self.runs.labels(namespace, status)
        for kind in WORKER_ERROR_KINDS:
            self.worker_errors.labels(namespace, kind)
        self.runs_active.labels(namespace)

    def set_progress(self, namespace: str, times: Iterable[float]) -> None:
        """The namespace's running runs' last progress times (Unix seconds): keep the oldest."""
        oldest = min(times, default=None)
        if oldest is None:
            with contextlib.suppress(KeyError):  # none was running
                self.run_progress.remove(namespace)
        else:
            self.run_progress.labels(namespace).set(oldest)

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
