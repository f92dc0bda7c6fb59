"""The chart's alert rules and Grafana dashboard against what the operator really exports.

- The rendered PrometheusRule passes `promtool check rules`, and `promtool test rules`
  (tests/chart/promtool/alerts_test.yaml) pins which alert fires when, with which labels.
- Every PromQL query of the rules and of the dashboard parses (promql-parser, the Rust port of
  Prometheus' parser) and uses only metric series the operator's registry
  (`rocky_operator.metrics.Metrics`) exports, with label names those metrics carry.
- The dashboard shows what the issue asks for (failures by kind, tables, runs, durations,
  active runs).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from tests.chart.support import CHART, Render, only

from rocky_operator.metrics import Metrics

HERE = Path(__file__).parent
#: Labels Prometheus adds to every scraped series (target labels).
TARGET_LABELS = {"job", "instance"}
#: Synthetic series Prometheus writes per target.
SYNTHETIC = {"up": TARGET_LABELS}
#: Grafana variables, replaced by example values before parsing.
GRAFANA_VARIABLES = {
    "$__rate_interval": "2m",
    "$__interval": "1m",
    "$__range": "1d",
    "$namespace": "team-a|team-b",
    "$job": "rocky-metrics",
}


def exported_series() -> dict[str, set[str]]:
    """Series names the operator exports -> their label names (from its real registry)."""
    series: dict[str, set[str]] = {}
    metrics = Metrics()
    for collector in vars(metrics).values():
        if not isinstance(collector, MetricWrapperBase):
            continue
        labels = set(collector._labelnames)
        (family,) = collector.describe()
        if family.type == "counter":
            series[f"{family.name}_total"] = labels
        elif family.type == "histogram":
            series[f"{family.name}_bucket"] = labels | {"le"}
            series[f"{family.name}_sum"] = labels
            series[f"{family.name}_count"] = labels
        else:
            series[family.name] = labels
    return series


def test_registry_has_the_design_metrics() -> None:
    """DESIGN.md's metric names and labels are what the registry exports."""
    series = exported_series()
    assert series["rocky_table_failures_total"] == {"namespace", "failure_kind"}
    assert series["rocky_table_retries_total"] == {"namespace", "failure_kind"}
    assert series["rocky_tables_total"] == {"namespace", "outcome"}
    assert series["rocky_runs_total"] == {"namespace", "status"}
    assert series["rocky_runs_active"] == {"namespace"}
    assert "rocky_table_duration_seconds_bucket" in series
    assert "rocky_run_duration_seconds_bucket" in series
    assert series["rocky_worker_errors_total"] == {"namespace", "kind"}
    assert series["rocky_run_last_progress_timestamp_seconds"] == {"namespace"}
    assert series["rocky_build_info"] == {"version", "python_version", "kopf_version"}
    assert series["rocky_operator_leader"] == set()


def _walk(node: Any) -> Iterator[Any]:
    yield node
    for attr in ("lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(node, attr, None)
        if child is not None and not isinstance(child, str | int | float):
            yield from _walk(child)
    for child in getattr(node, "args", None) or []:
        yield from _walk(child)


def query_references(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) one PromQL expression uses."""
    ast = promql_parser.parse(expr)
    names: set[str] = set()
    labels: set[str] = set()
    for node in _walk(ast):
        if type(node).__name__ == "VectorSelector":
            matchers = list(node.matchers.matchers)
            name = node.name or next(m.value for m in matchers if m.name == "__name__")
            names.add(name)
            labels |= {m.name for m in matchers if m.name != "__name__"}
        modifier = getattr(node, "modifier", None)
        if modifier is not None:
            grouping = getattr(modifier, "matching", None) or modifier
            labels |= set(getattr(grouping, "labels", None) or [])
    return names, labels


def check_query(expr: str, exported: dict[str, set[str]], where: str) -> set[str]:
    """Assert one query uses only exported series and their labels; returns the names."""
    names, labels = query_references(expr)
    known = exported | SYNTHETIC
    unknown = names - known.keys()
    assert not unknown, f"{where}: {sorted(unknown)} not exported by rocky_operator.metrics"
    available = TARGET_LABELS.union(*(known[n] for n in names))
    assert labels <= available, (
        f"{where}: labels {sorted(labels - available)} not on {sorted(names)}"
    )
    return names


def test_reference_checker_catches_unknown_names_and_labels() -> None:
    """The checker itself: a typo'd metric or a label a metric lacks is reported."""
    exported = exported_series()
    check_query('sum by (namespace) (rate(rocky_runs_total{status="failure"}[5m]))', exported, "ok")
    with pytest.raises(AssertionError, match="rocky_run_total"):
        check_query("rate(rocky_run_total[5m])", exported, "typo")
    with pytest.raises(AssertionError, match="namespace"):
        check_query(
            "histogram_quantile(0.9, sum by (le) "
            '(rate(rocky_run_duration_seconds_bucket{namespace="a"}[5m])))',
            exported,
            "histograms have no namespace label",
        )


def rendered_rules(render: Render, *, annotations: bool = True) -> dict[str, Any]:
    manifests = render(
        set_values=["prometheusRule.enabled=true"], show_only="templates/prometheusrule.yaml"
    )
    groups = only(manifests, "PrometheusRule")["spec"]["groups"]
    if not annotations:
        for group in groups:
            for rule in group["rules"]:
                rule.pop("annotations", None)
    return {"groups": groups}


def test_promtool_check_rules(render: Render, promtool: Path, tmp_path: Path) -> None:
    for scenario, values in (
        ("defaults", []),
        ("monitoring", [CHART / "ci" / "monitoring-values.yaml"]),
    ):
        manifests = render(values=values, set_values=["prometheusRule.enabled=true"])
        rules = {"groups": only(manifests, "PrometheusRule")["spec"]["groups"]}
        path = tmp_path / f"{scenario}.rules.yaml"
        path.write_text(yaml.safe_dump(rules))
        proc = subprocess.run(
            [str(promtool), "check", "rules", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert re.search(r"SUCCESS: \d+ rules found", proc.stdout), proc.stdout


def test_promtool_alert_unit_tests(render: Render, promtool: Path, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rendered_rules(render, annotations=False)))
    shutil.copy(HERE / "promtool" / "alerts_test.yaml", tmp_path / "alerts_test.yaml")
    proc = subprocess.run(
        [str(promtool), "test", "rules", "alerts_test.yaml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_is_actionable(render: Render) -> None:
    rules = rendered_rules(render)["groups"][0]["rules"]
    alerts = {rule["alert"]: rule for rule in rules}
    assert set(alerts) == {
        "RockyTableAuthFailed",
        "RockyTableQuotaExceeded",
        "RockyTableTransientFailureBurst",
        "RockyRunFailed",
        "RockyRunStuck",
        "RockyOperatorWorkerErrors",
        "RockyOperatorDown",
        "RockyOperatorMetricsAbsent",
        "RockyOperatorNoLeader",
    }
    assert alerts["RockyTableAuthFailed"]["labels"]["severity"] == "critical"
    assert alerts["RockyOperatorDown"]["labels"]["severity"] == "critical"
    assert alerts["RockyOperatorMetricsAbsent"]["expr"].startswith("absent(")
    docs = (CHART.parents[1] / "docs" / "install.md").read_text()
    for name, rule in alerts.items():
        annotations = rule["annotations"]
        assert annotations["summary"], name
        assert len(annotations["description"]) > 150, name
        anchor = annotations["runbook_url"].rsplit("#", 1)[1]
        assert anchor == name.lower()
        assert re.search(rf"^#+ .*{name}\b", docs, re.MULTILINE), f"docs/install.md lacks {name}"


def test_rule_queries_use_only_exported_metrics(render: Render) -> None:
    exported = exported_series()
    used: set[str] = set()
    for rule in rendered_rules(render)["groups"][0]["rules"]:
        used |= check_query(rule["expr"], exported, rule.get("alert", rule.get("record", "?")))
    assert {
        "rocky_table_failures_total",
        "rocky_runs_total",
        "rocky_worker_errors_total",
        "rocky_run_last_progress_timestamp_seconds",
        "up",
    } <= used


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CHART / "dashboards" / "rocky-operator.json").read_text())
    return data


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(panel title, query) of every panel target and query variable."""
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
            assert match, variable["definition"]
            yield f"variable {variable['name']}", match.group(1)


def _substitute(expr: str) -> str:
    for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def test_dashboard_queries_use_only_exported_metrics() -> None:
    exported = exported_series()
    used: set[str] = set()
    for title, expr in dashboard_queries():
        used |= check_query(_substitute(expr), exported, f"dashboard panel {title!r}")
    # Everything the operator exports is on the dashboard.
    expected = {n for n in exported if not n.endswith(("_sum", "_count"))}
    assert expected <= used, sorted(expected - used)


def test_dashboard_shows_what_on_call_needs() -> None:
    panels = {p["title"]: p for p in dashboard()["panels"] if p["type"] != "row"}
    exprs = {title: " ".join(t["expr"] for t in p["targets"]) for title, p in panels.items()}

    def panel_with(*fragments: str) -> str:
        hits: list[str] = [t for t, e in exprs.items() if all(f in e for f in fragments)]
        assert hits, f"no panel queries {fragments}"
        return hits[0]

    panel_with("rocky_table_failures_total", "by (failure_kind)")
    panel_with("rocky_tables_total", "by (outcome)", "rocky_table_retries_total")
    panel_with("rocky_runs_total", "by (status)")
    panel_with("rocky_runs_active")
    panel_with("rocky_worker_errors_total", "by (kind)")
    title = panel_with("time() - min(rocky_run_last_progress_timestamp_seconds")
    assert panels[title]["fieldConfig"]["defaults"]["unit"] == "s"
    panel_with("rocky_build_info", "version")
    for metric in ("rocky_run_duration_seconds_bucket", "rocky_table_duration_seconds_bucket"):
        title = panel_with("histogram_quantile(0.99", metric)
        assert panels[title]["fieldConfig"]["defaults"]["unit"] == "s"
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard()["panels"]:
        assert panel.get("datasource", {}).get("uid", "${datasource}") == "${datasource}"


def test_durations_become_seconds_where_rules_need_numbers(render: Render, helm: Path) -> None:
    """runStuck.after is compared with time() and the quota window divides the increase: the
    chart turns durations into seconds, and refuses what is not a duration."""
    manifests = render(
        set_values=[
            "prometheusRule.enabled=true",
            "prometheusRule.alerts.runStuck.after=1h30m",
            "prometheusRule.alerts.quotaExceeded.window=2m",
        ],
        show_only="templates/prometheusrule.yaml",
    )
    rules = only(manifests, "PrometheusRule")["spec"]["groups"][0]["rules"]
    alerts = {rule["alert"]: rule["expr"] for rule in rules if "alert" in rule}
    assert alerts["RockyRunStuck"].rstrip().endswith("> 5400")
    assert ") / 120 > 0" in alerts["RockyTableQuotaExceeded"]
    proc = subprocess.run(
        [str(helm), "template", "rocky", str(CHART), "--set", "prometheusRule.enabled=true",
         "--set", "prometheusRule.alerts.runStuck.after=90"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "runStuck" in proc.stderr  # refused by the values schema
