"""The shipped alert rules and dashboard queries, evaluated by a real Prometheus server.

A real Prometheus (cmd/prometheus from the Go module, built by tools/build-go-tools.sh like
promtool) scrapes the real operator (`rocky-operator run`, metrics on 127.0.0.1) every second
and evaluates the chart's rules every second, rendered with `helm template` exactly as the
chart ships them (default windows and thresholds). The operator drives a RockyRun on the real
kube-apiserver whose runner pods run under the node agent: five tables copy, and one fails
`auth-failed` through the real runner (its runner sees a credential file that cannot be read,
as when the Secret volume behind ``ROCKY_DATABRICKS_TOKEN_FILE`` is gone).

Checked: every shipped rule evaluates without error; nothing fires before the run; the
`RockyTableAuthFailed` page fires for the run's namespace in a Prometheus that has existed for
less than the rule's window (the namespace's series start at 0, so the first failure is an
increase); `RockyRunFailed` fires too; and every query of the dashboard (its panels and
variables, Grafana variables substituted) returns the run's numbers: tables copied and failed,
failures by kind, runs by status, no retries, no worker errors, no active run, the operator's
version.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.chart.support import CHART, build_tool
from tests.support.control_plane import ControlPlane, free_port, tail
from tests.support.e2e import OperatorProcess, apply_crds, kubectl, wait_for
from tests.support.warehouses import source_warehouse

import rocky_operator
from rocky_operator.metrics import DURATION_BUCKETS

#: The job of the chart's ServiceMonitor for release "rocky", which the rules select.
JOB = "rocky-metrics"
COPIED = ("t_a", "t_b", "t_c", "t_e", "t_f")
AUTH_FAILED = "t_d"
#: The runner of AUTH_FAILED reads its token from a file that is not there: auth-failed.
RUNNER = [
    "sh",
    "-c",
    f'case "$ROCKY_TASK" in *{AUTH_FAILED}*) '
    "export ROCKY_DATABRICKS_TOKEN_FILE=/nonexistent/rocky/token ;; esac; exec rocky-runner",
]


class Prometheus:
    """A Prometheus server on 127.0.0.1 and its HTTP API."""

    def __init__(self, binary: Path, workdir: Path, config: dict[str, Any]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "prometheus.log"
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.argv = [
            str(binary),
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.started = time.time()
        wait_for(self._ready, timeout=120, what="Prometheus ready")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{tail(self.log)}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=20) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.api("query", **params)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]


def nonzero(values: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in values.items() if v}


def by(result: list[dict[str, Any]], label: str | None = None) -> dict[str, float]:
    """Query result -> {label value: value} (one series without labels: key "")."""
    return {(r["metric"].get(label, "") if label else ""): float(r["value"][1]) for r in result}


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    """The chart's PrometheusRule as a Prometheus rule file (docs/install.md's recipe)."""
    helm = build_tool("helm")
    out = subprocess.run(
        [str(helm), "template", "rocky", str(CHART), "--namespace", "rocky-system",
         "--set", "prometheusRule.enabled=true", "--show-only", "templates/prometheusrule.yaml"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    path = tmp_path / "rocky.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": yaml.safe_load(out)["spec"]["groups"]}))
    return path


@pytest.fixture
def operator(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[int]:
    apply_crds(control_plane, "rockyruns.rocky.dev")
    op = OperatorProcess(control_plane, namespace, tmp_path / "operator.log")
    op.start()
    try:
        yield op.port
    finally:
        op.stop()


@pytest.fixture
def prometheus(operator: int, rules_file: Path, tmp_path: Path) -> Iterator[Prometheus]:
    binary = build_tool("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_file)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "honor_labels": True,  # keep the operator's namespace label (docs/install.md)
                "static_configs": [{"targets": [f"127.0.0.1:{operator}"]}],
            }
        ],
    }
    server = Prometheus(binary, tmp_path, config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse" / "warehouse.duckdb"
    tables = [("src__acme", table) for table in sorted((*COPIED, AUTH_FAILED))]
    return source_warehouse(path, tables, rows=5)


def run_manifest(warehouse: Path) -> dict[str, Any]:
    return {
        "apiVersion": "rocky.dev/v1alpha1",
        "kind": "RockyRun",
        "metadata": {"name": "nightly"},
        "spec": {
            "adapter": {"type": "duckdb", "duckdb": {"path": str(warehouse)}},
            "source": {
                "schemaPattern": {"prefix": "src__", "separator": "__", "components": ["tenant"]}
            },
            "target": {"catalogTemplate": "{tenant}_out", "schemaTemplate": "copy"},
            "strategy": "full_refresh",
            "concurrency": 2,
            "runner": {"command": RUNNER},
        },
    }


def dashboard_queries(namespace: str, range_: str) -> dict[str, list[str]]:
    """Panel title -> its queries, Grafana's variables replaced for this namespace and range."""
    doc = json.loads((CHART / "dashboards" / "rocky-operator.json").read_text())
    values = {
        "$__rate_interval": range_,  # a range-wide interval: each panel's total over the run
        "$__interval": range_,
        "$__range": range_,
        "$namespace": namespace,
        "$job": JOB,
    }
    out: dict[str, list[str]] = {}
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
                expr = expr.replace(variable, value)
            assert "$" not in expr, expr
            out.setdefault(panel["title"], []).append(expr)
    return out


def dashboard_variables() -> list[tuple[str, str, str]]:
    """(name, series selector, label) of the dashboard's query variables, $job replaced."""
    doc = json.loads((CHART / "dashboards" / "rocky-operator.json").read_text())
    out = []
    for variable in doc["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
            assert match, variable["definition"]
            out.append((variable["name"], match.group(1).replace("$job", JOB), match.group(2)))
    return out


def test_real_prometheus_pages_on_auth_failed_and_the_dashboard_shows_the_run(
    control_plane: ControlPlane,
    namespace: str,
    prometheus: Prometheus,
    warehouse: Path,
    tmp_path: Path,
) -> None:
    prom = prometheus
    wait_for(
        lambda: by(prom.query(f'up{{job="{JOB}"}}')) == {"": 1.0},
        timeout=120,
        what="Prometheus scraping the operator",
    )

    # Every shipped rule loaded and evaluates without error on the real server.
    def evaluated() -> list[dict[str, Any]] | None:
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        never = [r for r in rules if r.get("lastEvaluation", "0001").startswith("0001")]
        return rules if rules and not never else None

    rules = wait_for(evaluated, timeout=120, what="every rule evaluated once")
    assert {r["name"] for r in rules} >= {"RockyTableAuthFailed", "RockyRunStuck"}
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    # Quiet before the run (RockyOperatorMetricsAbsent may be pending from an evaluation
    # before the first scrape; it goes with the next one).
    wait_for(
        lambda: not prom.api("alerts")["alerts"],
        timeout=60,
        what="no alert pending or firing before the run",
    )

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run_manifest(warehouse)))
    kubectl(control_plane, "-n", namespace, "apply", "-f", str(path))
    kubectl(control_plane, "-n", namespace, "wait", "--for=condition=Complete",
            "rockyrun/nightly", "--timeout=300s", timeout=330)  # fmt: skip
    run = json.loads(
        kubectl(control_plane, "-n", namespace, "get", "rockyrun", "nightly", "-o", "json").stdout
    )
    status = run["status"]
    assert status["phase"] == "PartialFailure", status
    assert status["tables"]["copied"] == len(COPIED)
    assert status["failures"] == {"auth-failed": 1}

    # The page, for this namespace, from a Prometheus younger than the rule's 10m window.
    def paged() -> list[dict[str, Any]]:
        return [a for a in prom.alerts("RockyTableAuthFailed") if a["state"] == "firing"]

    (page,) = wait_for(paged, timeout=180, what="RockyTableAuthFailed firing")
    assert page["labels"]["namespace"] == namespace
    assert page["labels"]["severity"] == "critical"
    assert float(page["value"]) >= 1.0  # increase() extrapolates: a hair above the count
    assert time.time() - prom.started < 600
    failed_runs = wait_for(
        lambda: [a for a in prom.alerts("RockyRunFailed") if a["state"] == "firing"],
        timeout=180,
        what="RockyRunFailed firing",
    )
    assert [(a["labels"]["namespace"], a["labels"]["status"]) for a in failed_runs] == [
        (namespace, "partial_failure")
    ]
    for quiet in ("RockyRunStuck", "RockyOperatorWorkerErrors", "RockyOperatorDown"):
        assert prom.alerts(quiet) == [], quiet

    # The dashboard's queries over the run: its numbers. Wait until the last scrape after the
    # final status has the finished run (active runs back to 0).
    seconds = math.ceil(time.time() - prom.started) + 60
    range_ = f"{seconds}s"
    queries = dashboard_queries(namespace, range_)
    wait_for(
        lambda: by(prom.query(queries["Active runs"][0])) == {"": 0.0},
        timeout=60,
        what="the finished run scraped",
    )

    # Evaluated at the last scrape: increase() then has nothing to extrapolate at the end (and
    # at the start the counters begin at 0), so counts come out whole even for a short run.
    (last,) = prom.query(f'timestamp(up{{job="{JOB}"}})')
    at = float(last["value"][1])

    def values(title: str, label: str | None = None, index: int = 0) -> dict[str, float]:
        return by(prom.query(queries[title][index], at), label)

    def near(got: dict[str, float], want: dict[str, float]) -> bool:
        return got.keys() == want.keys() and all(abs(got[k] - want[k]) < 0.01 for k in want)

    n_copied, n_failed = float(len(COPIED)), 1.0
    checks: list[tuple[dict[str, float], dict[str, float]]] = [
        (values("Tables copied (range)"), {"": n_copied}),
        (values("Tables failed (range)"), {"": n_failed}),
        (values("Auth failures (range)"), {"": 1.0}),
        # A per-second rate panel: times the range, the attempts.
        ({k: v * seconds for k, v in
          nonzero(values("Failed table attempts by failure_kind", "failure_kind")).items()},
         {"auth-failed": 1.0}),
        (values("Tables copied / failed / skipped / retried", "outcome"),
         {"copied": n_copied, "failed": n_failed, "skipped": 0.0}),
        (values("Tables copied / failed / skipped / retried", index=1), {"": 0.0}),
        (nonzero(values("Runs by status", "status")), {"partial_failure": 1.0}),
        (values("Active runs by namespace", "namespace"), {namespace: 0.0}),
    ]  # fmt: skip
    for got, want in checks:
        assert near(got, want), (got, want)
    retries = values("Retries by failure_kind", "failure_kind")
    assert retries, "no retry series (they start at 0 per namespace)"
    assert set(retries.values()) == {0.0}
    # A failed API call on a loaded machine is possible (and retried); an unexpected error not.
    errors = values("Worker errors by kind", "kind")
    assert errors.keys() == {"api", "unexpected"}
    assert errors["unexpected"] == 0.0
    assert prom.query(queries["Longest without progress"][0]) == []  # no run is running

    # Durations: one run and six table attempts observed; their quantiles lie in the buckets.
    started = datetime.fromisoformat(status["startTime"].replace("Z", "+00:00"))
    finished = datetime.fromisoformat(status["completionTime"].replace("Z", "+00:00"))
    took = (finished - started).total_seconds() + 1
    bound = next(b for b in DURATION_BUCKETS if b >= took)
    for title in ("Run duration percentiles", "Table duration percentiles"):
        for expr in queries[title]:
            (quantile,) = by(prom.query(expr, at)).values()
            assert 0 < quantile <= bound * 5, (title, expr, quantile)

    (info,) = prom.query(queries["Operator version"][0])
    assert info["metric"]["version"] == rocky_operator.__version__

    # The dashboard's variables (label_values(<selector>, <label>)): ours are offered.
    offered = {
        name: prom.api(f"label/{label}/values", **{"match[]": selector})
        for name, selector, label in dashboard_variables()
    }
    assert JOB in offered["job"]
    assert namespace in offered["namespace"]
