"""Nothing requested vanishes, on the real kube-apiserver (issue 10, cases 7 and 9).

`rocky-operator run` as a process, discovery in its pod (a real `rocky-runner` under the
node agent reading a real DuckDB file, its answer through the pod log), copies in runner
pods. Checked:

- case 7: names of `source.tables` that the source lacks, or that are views, come back
  through the discovery pod into `status.runOutput.excluded_tables` with their reason and
  `status.tables.excluded`; a Warning `TablesExcluded` Event names the missing ones; the
  run's totals add up to what was requested;
- case 9: a typo'd prefix plans zero tables: Succeeded with exit code 0 (as `rocky run`),
  but `Complete`, `Accepted` and `Failed` carry the reason `NoTablesMatched` and the run
  posts a Warning `NoTablesMatched` Event instead of `RunSucceeded`.

Every RunOutput validates against Rocky's schema and parses with rocky-sdk.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from tests.support.control_plane import ControlPlane
from tests.support.e2e import kubectl, kubectl_json, wait_for
from tests.support.rocky_schema import check_run_output

pytestmark = pytest.mark.e2e

NO_RETRIES = {k: {"maxRetries": 0} for k in ("transient", "connection-failed", "quota-exceeded")}


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "wh" / "warehouse.duckdb"
    path.parent.mkdir(parents=True)
    with contextlib.closing(duckdb.connect(str(path))) as con:
        con.execute("CREATE SCHEMA src__acme")
        for table in ("orders", "items"):
            con.execute(
                f"CREATE TABLE src__acme.{table} AS SELECT range AS id, "
                "TIMESTAMP '2026-01-01' AS _fivetran_synced FROM range(5)"
            )
        con.execute("CREATE VIEW src__acme.v_orders AS SELECT * FROM src__acme.orders")
    return path


def run_doc(name: str, warehouse: Path, **source: Any) -> dict[str, Any]:
    return {
        "apiVersion": "rocky.dev/v1alpha1",
        "kind": "RockyRun",
        "metadata": {"name": name},
        "spec": {
            "adapter": {"type": "duckdb", "duckdb": {"path": str(warehouse)}},
            "source": {
                "schemaPattern": {"prefix": "src__", "separator": "__", "components": ["tenant"]},
                **source,
            },
            "target": {"catalogTemplate": "{tenant}_out", "schemaTemplate": "copy"},
            "strategy": "full_refresh",
            "concurrency": 4,
            "retry": NO_RETRIES,
        },
    }


def apply_and_wait(
    cp: ControlPlane, namespace: str, doc: dict[str, Any], tmp_path: Path
) -> dict[str, Any]:
    name = doc["metadata"]["name"]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    kubectl(cp, "-n", namespace, "apply", "-f", str(path))
    kubectl(
        cp, "-n", namespace, "wait", "--for=condition=Complete", f"rockyrun/{name}",
        "--timeout=240s", timeout=270,
    )  # fmt: skip
    run: dict[str, Any] = kubectl_json(cp, "-n", namespace, "get", "rockyrun", name)
    return run


def checked_output(run: dict[str, Any]) -> dict[str, Any]:

    output: dict[str, Any] = run["status"]["runOutput"]
    assert check_run_output(output) is not None
    return output


def events_with(cp: ControlPlane, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    """The run's Events once one with ``reason`` is there (posted after the final status)."""

    def probe() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = kubectl_json(
            cp, "-n", namespace, "get", "events", "--field-selector",
            f"involvedObject.name={name}",
        )["items"]  # fmt: skip
        return items if any(e["reason"] == reason for e in items) else None

    return wait_for(probe, timeout=60, what=f"the run's {reason} Event")


def test_listed_names_missing_or_views_are_excluded_on_the_cluster(
    control_plane: ControlPlane,
    namespace: str,
    start_operator: Any,
    warehouse: Path,
    tmp_path: Path,
) -> None:
    start_operator()
    listed = ["orders", "items", "v_orders", "refunds"]
    run = apply_and_wait(
        control_plane, namespace, run_doc("listed", warehouse, tables=listed), tmp_path
    )
    status = run["status"]
    assert (status["phase"], status["exitCode"]) == ("Succeeded", 0)
    assert status["tables"]["copied"] == 2
    assert status["tables"]["excluded"] == 2
    output = checked_output(run)
    excluded = {e["table_name"]: e for e in output["excluded_tables"]}
    assert {n: e["reason"] for n, e in excluded.items()} == {
        "refunds": "missing_from_source",
        "v_orders": "view",
    }
    assert excluded["refunds"]["asset_key"] == ["duckdb", "acme", "refunds"]
    assert excluded["refunds"]["source_schema"] == "src__acme"
    # Requested = copied + failed + not attempted + excluded; each name exactly once.
    named = [m["asset_key"][-1] for m in output["materializations"]]
    named += [e["asset_key"][-1] for e in output["errors"]]
    named += [c["model"].rsplit("/", 1)[-1] for c in output.get("contained") or []]
    named += list(excluded)
    assert sorted(named) == sorted(listed)
    accepted = next(c for c in status["conditions"] if c["type"] == "Accepted")
    assert "2 excluded" in accepted["message"]

    events = events_with(control_plane, namespace, "listed", "TablesExcluded")
    warning = next(e for e in events if e["reason"] == "TablesExcluded")
    assert warning["type"] == "Warning"
    assert "duckdb/acme/refunds" in warning["message"]
    assert "v_orders" not in warning["message"]  # a view is expected, not alarming


def test_a_plan_of_zero_tables_is_flagged_on_the_cluster(
    control_plane: ControlPlane,
    namespace: str,
    start_operator: Any,
    warehouse: Path,
    tmp_path: Path,
) -> None:
    start_operator()
    doc = run_doc("typo", warehouse)
    doc["spec"]["source"]["schemaPattern"]["prefix"] = "raw__"
    run = apply_and_wait(control_plane, namespace, doc, tmp_path)
    status = run["status"]
    assert (status["phase"], status["exitCode"]) == ("Succeeded", 0)
    reasons = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert reasons["Complete"] == ("True", "NoTablesMatched")
    assert reasons["Accepted"] == ("True", "NoTablesMatched")
    assert reasons["Failed"] == ("False", "NoTablesMatched")
    complete = next(c for c in status["conditions"] if c["type"] == "Complete")
    assert "prefix 'raw__'" in complete["message"]
    output = checked_output(run)
    assert (output["status"], output["tables_copied"]) == ("Success", 0)

    events = events_with(control_plane, namespace, "typo", "NoTablesMatched")
    flagged = [e for e in events if e["reason"] == "NoTablesMatched"]
    assert [e["type"] for e in flagged] == ["Warning"]
    assert not any(e["reason"] == "RunSucceeded" for e in events)


def test_views_listed_by_default_and_copied_with_include_views_on_the_cluster(
    control_plane: ControlPlane,
    namespace: str,
    start_operator: Any,
    warehouse: Path,
    tmp_path: Path,
) -> None:
    """Case 8 through the discovery pod: by default the view is excluded (reason view);
    with ``includeViews: true`` the discovery task carries it and a runner pod copies it."""
    start_operator()
    default = apply_and_wait(control_plane, namespace, run_doc("views-off", warehouse), tmp_path)
    off = checked_output(default)
    assert sorted(m["asset_key"][-1] for m in off["materializations"]) == ["items", "orders"]
    assert [(e["table_name"], e["reason"]) for e in off["excluded_tables"]] == [
        ("v_orders", "view")
    ]
    doc = run_doc("views-on", warehouse, includeViews=True)
    doc["spec"]["target"]["catalogTemplate"] = "{tenant}_views"
    included = apply_and_wait(control_plane, namespace, doc, tmp_path)
    on = checked_output(included)
    assert sorted(m["asset_key"][-1] for m in on["materializations"]) == [
        "items",
        "orders",
        "v_orders",
    ]
    assert "excluded_tables" not in on
    assert included["status"]["tables"].get("excluded", 0) == 0
