"""Everything one operator process holds: API client, run controller, metrics server.

Built by ``rocky-operator run`` (or a test) and handed to kopf as ``memo.runtime``,
so the handlers stay free of globals and a test can run two operator lives in one
process (a restart) with separate state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kubernetes_asyncio.client import Configuration

from rocky_operator.kube.client import KubeClient
from rocky_operator.kube.controller import (
    Controller,
    ControllerSettings,
    Discover,
    discover_with_runner,
)
from rocky_operator.kube.pod_watch import PodWatch
from rocky_operator.metrics import Metrics, MetricsServer


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    """One operator process's state."""

    configuration: Configuration
    """The one API configuration (``kube/configuration.py``): the run workers' client, the
    schedules, the Lease and kopf's login all use it."""
    settings: ControllerSettings = field(default_factory=ControllerSettings)
    namespaces: tuple[str, ...] = ()
    """The namespaces watched (the runner pods' watch too); empty: all."""
    metrics_host: str = "0.0.0.0"
    metrics_port: int | None = 8080
    discover: Discover = discover_with_runner
    clock: Callable[[], datetime] = _utcnow
    metrics: Metrics = field(default_factory=Metrics)
    client: KubeClient = field(init=False)
    controller: Controller = field(init=False)
    server: MetricsServer | None = field(default=None, init=False)
    pod_watch: PodWatch = field(init=False)

    def __post_init__(self) -> None:
        self.client = KubeClient(self.configuration)
        self.controller = Controller(
            self.client, self.metrics, self.settings, discover=self.discover, clock=self.clock
        )
        self.pod_watch = PodWatch(
            self.client, self.namespaces, self.controller.wake, self.controller.wake_all
        )

    async def start(self) -> None:
        """Serve /metrics and /healthz (idempotent: a standby serves them before it leads)."""
        if self.metrics_port is not None and self.server is None:
            self.server = MetricsServer(
                self.metrics,
                host=self.metrics_host,
                port=self.metrics_port,
                healthy=self.controller.healthy,
            )
            await self.server.start()

    def start_watching(self) -> None:
        """Watch the runner pods (the leader only: called with kopf's start-up)."""
        self.pod_watch.start()

    async def stop(self) -> None:
        await self.pod_watch.stop()
        await self.controller.stop()
        if self.server is not None:
            await self.server.stop()
            self.server = None
        await self.client.close()
