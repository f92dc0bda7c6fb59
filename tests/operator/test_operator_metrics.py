"""The metrics endpoint: DESIGN.md's names and labels, /healthz, no per-run labels; series
created at 0 per namespace, build info, worker errors by kind, the progress gauge."""

from __future__ import annotations

import asyncio
import platform
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.operator.conftest import run_spec
from tests.operator.harness import Cluster, FakeKubelet, Outcome, operator_life

import rocky_operator
from rocky_operator.kube.client import KubeError
from rocky_operator.kube.controller import Controller, ControllerSettings, RunWorker
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


def test_namespace_series_start_at_zero_and_build_info_names_the_versions() -> None:
    """Prometheus' increase() starts at a series' first sample: a namespace's counters exist
    at 0 before its first failure, so the first one is an increase the alerts see."""
    metrics = Metrics()
    assert "rocky_tables_total{" not in metrics.exposition().decode()
    metrics.init_namespace("data")
    metrics.init_namespace("data")  # idempotent
    text = metrics.exposition().decode()
    for kind in ("auth-failed", "transient", "quota-exceeded", "unknown"):
        assert f'rocky_table_failures_total{{failure_kind="{kind}",namespace="data"}} 0.0' in text
    assert "compile-error" not in text  # Rocky's kind, never produced by the operator
    assert 'rocky_tables_total{namespace="data",outcome="copied"} 0.0' in text
    assert 'rocky_runs_total{namespace="data",status="partial_failure"} 0.0' in text
    assert 'rocky_worker_errors_total{kind="unexpected",namespace="data"} 0.0' in text
    assert 'rocky_runs_active{namespace="data"} 0.0' in text
    (info,) = [line for line in text.splitlines() if line.startswith("rocky_build_info{")]
    assert f'version="{rocky_operator.__version__}"' in info
    assert f'python_version="{platform.python_version()}"' in info
    assert 'kopf_version="' in info
    assert 'kopf_version=""' not in info
    assert info.endswith(" 1.0")


def test_progress_is_the_oldest_running_run_and_goes_with_the_last() -> None:
    metrics = Metrics()
    metrics.set_progress("data", [200.0, 100.0])
    sample = metrics.registry.get_sample_value
    assert sample("rocky_run_last_progress_timestamp_seconds", {"namespace": "data"}) == 100.0
    metrics.set_progress("data", [])
    assert sample("rocky_run_last_progress_timestamp_seconds", {"namespace": "data"}) is None
    metrics.set_progress("data", [])  # nothing to remove: fine


class _FailingClient:
    """get_run fails as planned, then the run is gone (404): the worker ends."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors

    async def get_run(self, namespace: str, name: str) -> dict[str, object]:
        if self.errors:
            raise self.errors.pop(0)
        raise KubeError(404, "NotFound", f"rockyruns {name} not found")


async def test_worker_errors_are_counted_by_kind() -> None:
    metrics = Metrics()
    client = _FailingClient(
        [
            RuntimeError("a bug"),
            KubeError(500, "InternalError", "etcd timeout"),
            KubeError(0, "", "connection refused"),
            ValueError("another bug"),
        ]
    )
    controller = Controller(
        client,  # type: ignore[arg-type]
        metrics,
        ControllerSettings(error_backoff_seconds=0.01),
    )
    worker = RunWorker(controller, "data", "r1")
    controller.workers[("data", "r1")] = worker
    await asyncio.wait_for(worker.main(), timeout=30)
    sample = metrics.registry.get_sample_value
    labels = {"namespace": "data"}
    assert sample("rocky_worker_errors_total", {**labels, "kind": "api"}) == 2.0
    assert sample("rocky_worker_errors_total", {**labels, "kind": "unexpected"}) == 2.0
    assert controller.errors == 2
    assert controller.workers == {}
    assert sample("rocky_run_last_progress_timestamp_seconds", labels) is None


async def _until(check: Callable[[], bool], *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_running_run_exports_its_last_progress_until_it_is_gone(
    api_server: str, cluster: Cluster, kubelet: FakeKubelet, warehouse: Path
) -> None:
    """Real kopf on the in-process API: a run with one runner that hangs. Its last progress is
    the last recorded result, and stays there while nothing moves; deleted, it goes away."""
    kubelet.plant("t12", [Outcome("hang")])  # the last: tables share one target file, one at a time
    started = time.time()
    async with operator_life(api_server, cluster.namespace) as life:
        sample = life.runtime.metrics.registry.get_sample_value
        labels = {"namespace": cluster.namespace}
        await cluster.create_run("hung", run_spec(warehouse))
        await cluster.wait_run(
            "hung",
            lambda r: ((r.get("status") or {}).get("tables") or {}).get("copied") == 11,
            deadline_seconds=60,
        )
        await asyncio.sleep(0.5)  # the pass that recorded the 11th result has reported
        progress = sample("rocky_run_last_progress_timestamp_seconds", labels)
        assert progress is not None
        assert started <= progress <= time.time()
        # Several resync passes (0.5 s) later nothing moved: the same time.
        await asyncio.sleep(2.0)
        assert sample("rocky_run_last_progress_timestamp_seconds", labels) == progress
        assert sample("rocky_runs_active", labels) == 1.0

        await cluster.api.delete(cluster.run_path("hung"))
        await _until(lambda: sample("rocky_runs_active", labels) == 0.0, seconds=30)
        assert sample("rocky_run_last_progress_timestamp_seconds", labels) is None
