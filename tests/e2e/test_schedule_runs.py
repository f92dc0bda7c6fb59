"""A RockySchedule whose runs really run: `rocky-operator run` executes them (runner pods under
the node agent against the demo warehouse), the next run resumes from the partially failed one,
and the older failed run is pruned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kubernetes import client
from tests.support import schedules as sk
from tests.support.control_plane import REPO, ControlPlane
from tests.support.e2e import wait_for
from tests.support.schedules import StartOperator


@pytest.mark.slow
def test_schedule_runs_real_runs_through_the_operator(
    control_plane: ControlPlane,
    namespace: str,
    custom: client.CustomObjectsApi,
    start_operator: StartOperator,
    tmp_path: Path,
) -> None:
    """Schedule -> RockyRuns executed by `rocky-operator run` (runner pods under the node agent)
    -> the next run resumes from the partially failed one -> the older failed run is pruned."""

    import yaml

    from rocky_operator.demo.warehouse import build_warehouse

    warehouse = build_warehouse(tmp_path / "warehouse")
    demo = yaml.safe_load((REPO / "examples" / "demo" / "rockyrun.yaml").read_text())
    run_spec = demo["spec"]
    run_spec["adapter"]["duckdb"]["path"] = str(warehouse.warehouse)
    run_spec["runner"].pop("volumes", None)
    run_spec["runner"].pop("volumeMounts", None)
    run_spec["filter"] = "tenant=acme,region=us_west,source=shopify"
    run_spec["source"]["tables"] = ["products", "refunds"]  # refunds: query-rejected
    sk.create_schedule(
        custom,
        namespace,
        "minutely",
        {
            "schedule": "* * * * *",
            "successfulRunsHistoryLimit": 1,
            "failedRunsHistoryLimit": 1,
            "resumeFromLastFailures": True,
            "runTemplate": {"spec": run_spec},
        },
    )
    # The last scheduled time was 5 minutes ago, before the operator's first pass: the latest
    # missed minute runs as soon as it starts.
    custom.patch_namespaced_custom_object_status(
        sk.GROUP,
        sk.VERSION,
        namespace,
        "rockyschedules",
        "minutely",
        {"status": {"lastScheduleTime": sk.ts(datetime.now(UTC) - timedelta(minutes=5))}},
        _content_type="application/merge-patch+json",
    )
    start_operator()

    first_name = wait_for(
        lambda: next(iter(sk.runs(custom, namespace)), None),
        timeout=60,
        what="the first scheduled run",
    )
    first = wait_for(
        lambda: sk.finished(custom, namespace, first_name), timeout=180, what=f"{first_name} done"
    )
    assert first["status"]["phase"] == "PartialFailure"
    assert first["status"]["failures"] == {"query-rejected": 1}

    # The next minute: a second run, resuming from the first's failures only.
    second_name = wait_for(
        lambda: next((n for n in sk.runs(custom, namespace) if n != first_name), None),
        timeout=120,
        what="the second scheduled run",
    )
    sk.suspend(custom, namespace, "minutely")  # no third run while the test looks
    assert int(second_name.rsplit("-", 1)[1]) > int(first_name.rsplit("-", 1)[1])
    second = wait_for(
        lambda: sk.finished(custom, namespace, second_name),
        timeout=180,
        what=f"{second_name} done",
    )
    assert second["spec"]["resumeFrom"] == first_name
    assert second["status"]["tables"]["copied"] == 0  # products was copied by the first
    assert second["status"]["failures"] == {"query-rejected": 1}

    # Kept: the newest failed run; pruned: the older one (failedRunsHistoryLimit 1).
    wait_for(
        lambda: first_name not in sk.runs(custom, namespace),
        timeout=60,
        what=f"{first_name} pruned",
    )
    assert set(sk.runs(custom, namespace)) == {second_name}
    # The condition follows the second run once a pass has seen it finish (until then it
    # still names the first: PartialFailure).
    last = wait_for(
        lambda: sk.last_run_condition(custom, namespace, "minutely", second_name),
        timeout=60,
        what=f"LastRunSucceeded about {second_name}",
    )
    assert (last["status"], last["reason"]) == ("False", "Failed")
    print(
        f"\nschedule: created {first_name} (PartialFailure) and {second_name} "
        f"(resumeFrom {first_name}, Failed); kept {second_name}, pruned {first_name}"
    )
