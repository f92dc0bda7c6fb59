"""The Argo CD health checks (Lua) against real RockyRun and RockySchedule status objects.

The Lua runs in Argo CD's own Lua setup: tools/argocd-lua-health is gopher-lua v1.1.2 (the
version Argo CD v3.5.1 pins) set up exactly as Argo CD v3.5.1's util/lua runs a custom health
check from argocd-cm without useOpenLibs: SkipOpenLibs, then only the package, base and table
libraries and the restricted os library (time, date), a one-second deadline, the object decoded
as unstructured, the result decoded into {status, message}. No string or math library, so a
script calling string.format fails here exactly as it fails in Argo CD.

The status objects are built by the operator's own pure pipeline: tables planned with
``plan_tables``, attempts decided by ``decide``, the RunOutput assembled by ``build_run_output``
and the status by ``logic.status.build_status`` (and ``build_schedule_status`` for schedules),
then dumped to JSON exactly as the operator writes them. Checks: Healthy / Progressing / Degraded
per phase, the Degraded message counting failed tables per failure_kind (also when runOutput is
truncated), a finished run whose spec was edited keeps its verdict, and that argocd-cm.yaml
embeds the current Lua.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.chart.support import build_tool

from rocky_operator.api.schedule import RockyScheduleSpec
from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.api.status import PHASES, RockyRunStatus
from rocky_operator.logic.decide import Attempt, AttemptState, decide
from rocky_operator.logic.policy import RunPolicy
from rocky_operator.logic.run_output import build_run_output
from rocky_operator.logic.schedule import ChildRun, decide_schedule
from rocky_operator.logic.schedule_objects import build_schedule_status
from rocky_operator.logic.status import (
    build_planning_status,
    build_rejected_status,
    build_status,
    status_document,
)
from rocky_operator.logic.tables import PlannedTable, plan_tables
from rocky_runner.contract import FailureKind, TableResult

ARGOCD = Path(__file__).parents[2] / "examples" / "gitops" / "argocd"
START = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def argocd_lua() -> Path:
    """The Argo CD Lua VM (built from its Go module by tools/build-go-tools.sh)."""
    return build_tool("argocd-lua-health")


def health_of(tool: Path, script: Path, objects: list[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Evaluate a health script on each object as Argo CD does; a script error is a failure."""
    proc = subprocess.run(
        [str(tool), str(script)],
        input="".join(json.dumps(o) + "\n" for o in objects),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == len(objects), proc.stderr
    for obj, hs in zip(objects, results, strict=True):
        assert "error" not in hs, f"{script.name} failed in Argo CD's Lua on {obj}: {hs['error']}"
    return results


@pytest.fixture
def run_health(argocd_lua: Path) -> Callable[[Path, Mapping[str, Any]], dict[str, str]]:
    def run(script: Path, obj: Mapping[str, Any]) -> dict[str, str]:
        return health_of(argocd_lua, script, [obj])[0]

    return run


RunHealth = Callable[[Path, Mapping[str, Any]], dict[str, str]]


@dataclass(frozen=True)
class Found:
    schema: str
    table: str
    components: dict[str, str]
    catalog: str | None = None


def planned_tables(
    make_run_spec: Callable[..., dict[str, Any]], n: int, *, retries: bool = False
) -> tuple[RockyRunSpec, list[PlannedTable]]:
    body = make_run_spec()
    if not retries:
        # No retries: every first failure is final, so a status can be finished in one step.
        body["retry"] = {
            k: {"maxRetries": 0} for k in ("transient", "connection-failed", "quota-exceeded")
        }
    spec = RockyRunSpec.model_validate(body)
    tenants = ["acme", "globex", "initech"]
    found = [
        Found(
            f"src__{tenants[i % 3]}__us_west__shopify",
            f"t{i:04d}",
            {"tenant": tenants[i % 3], "region": "us_west", "source": "shopify"},
        )
        for i in range(n)
    ]
    return spec, plan_tables(spec, found)


@dataclass
class RunScenario:
    """Which tables are copied, failed (by kind) or still running."""

    n: int
    failed: dict[int, FailureKind] = field(default_factory=dict)
    running: frozenset[int] = frozenset()
    error_chars: int = 40
    retries: bool = False
    """Keep the default retry policy (a retryable failure then waits to retry)."""


def build_run(
    make_run_spec: Callable[..., dict[str, Any]], sc: RunScenario, *, generation: int = 1
) -> dict[str, Any]:
    """A RockyRun object with the status the operator would write for ``sc``."""
    spec, tables = planned_tables(make_run_spec, sc.n, retries=sc.retries)
    now = START + timedelta(minutes=1)
    attempts = []
    for i, t in enumerate(tables):
        if i in sc.running:
            attempts.append(Attempt(t.key, 1, AttemptState.RUNNING, START))
            continue
        kind = sc.failed.get(i)
        result = TableResult(
            asset_key=list(t.asset_key),
            outcome="failed" if kind else "copied",
            rows_copied=None if kind else 10,
            failure_kind=kind,
            error=("x" * sc.error_chars) if kind else None,
        )
        attempts.append(
            Attempt(
                t.key,
                1,
                AttemptState.FAILED if kind else AttemptState.COPIED,
                START,
                # With retries, the failure is a second old: its retry is still waiting.
                finished_at=(now - timedelta(seconds=1))
                if sc.retries
                else START + timedelta(seconds=5),
                failure_kind=kind,
                error=result.error,
                result=result,
            )
        )
    decision = decide([t.key for t in tables], attempts, RunPolicy.from_spec(spec), now)
    output = None
    if decision.finished:
        output = build_run_output(
            tables, decision.outcomes, started_at=START, finished_at=now, filter=spec.filter
        )
    status = build_status(
        decision=decision,
        attempts=attempts,
        resumed=0,
        previous=RockyRunStatus(),
        generation=generation,
        start_time=START,
        now=now,
        run_output=output,
    )
    return {
        "apiVersion": "rocky.dev/v1alpha1",
        "kind": "RockyRun",
        "metadata": {"name": "nightly", "namespace": "data", "generation": generation},
        "spec": {},
        "status": status_document(status),
    }


def kinds_message(failed: Mapping[int, FailureKind]) -> str:
    counts = Counter(k.value for k in failed.values())
    return ", ".join(f"{counts[k]} {k}" for k in sorted(counts))


def test_no_status_is_progressing(run_health: RunHealth) -> None:
    hs = run_health(ARGOCD / "health.lua", {"metadata": {"name": "r"}, "spec": {}})
    assert hs == {"status": "Progressing", "message": "Waiting for the operator to accept the run"}


def test_running_run_is_progressing(
    make_run_spec: Callable[..., dict[str, Any]], run_health: RunHealth
) -> None:
    obj = build_run(make_run_spec, RunScenario(12, running=frozenset({0, 1, 2})))
    assert obj["status"]["phase"] == "Running"
    hs = run_health(ARGOCD / "health.lua", obj)
    assert hs["status"] == "Progressing"
    assert hs["message"] == "Running: 9 of 12 tables copied, 3 running"


def test_succeeded_run_is_healthy(
    make_run_spec: Callable[..., dict[str, Any]], run_health: RunHealth
) -> None:
    obj = build_run(make_run_spec, RunScenario(12))
    assert obj["status"]["phase"] == "Succeeded"
    hs = run_health(ARGOCD / "health.lua", obj)
    assert hs == {"status": "Healthy", "message": "Succeeded: 12 of 12 tables copied"}


PLANTED = {
    1: FailureKind.AUTH_FAILED,
    4: FailureKind.NOT_FOUND,
    5: FailureKind.NOT_FOUND,
    7: FailureKind.QUERY_REJECTED,
    9: FailureKind.TRANSIENT,
}


def test_partial_failure_is_degraded_with_counts_per_kind(
    make_run_spec: Callable[..., dict[str, Any]],
    run_health: RunHealth,
) -> None:
    obj = build_run(make_run_spec, RunScenario(12, failed=PLANTED))
    assert obj["status"]["phase"] == "PartialFailure"
    hs = run_health(ARGOCD / "health.lua", obj)
    assert hs["status"] == "Degraded"
    assert hs["message"] == (
        f"PartialFailure: 7 of 12 tables copied; failed: {kinds_message(PLANTED)}"
    )
    assert "1 auth-failed" in hs["message"]
    assert "2 not-found" in hs["message"]


def test_every_table_failed_is_degraded(
    make_run_spec: Callable[..., dict[str, Any]], run_health: RunHealth
) -> None:
    failed = {i: FailureKind.CONNECTION_FAILED if i % 2 else FailureKind.UNKNOWN for i in range(4)}
    obj = build_run(make_run_spec, RunScenario(4, failed=failed))
    assert obj["status"]["phase"] == "Failed"
    hs = run_health(ARGOCD / "health.lua", obj)
    assert hs == {
        "status": "Degraded",
        "message": "Failed: 0 of 4 tables copied; failed: 2 connection-failed, 2 unknown",
    }


def test_counts_stay_exact_when_run_output_is_truncated(
    make_run_spec: Callable[..., dict[str, Any]],
    run_health: RunHealth,
) -> None:
    """status.runOutput keeps at most 100 errors; the message counts from status.failures."""
    failed = {
        i: (FailureKind.TRANSIENT if i % 3 else FailureKind.QUOTA_EXCEEDED)
        for i in range(0, 300, 2)
    }
    obj = build_run(make_run_spec, RunScenario(300, failed=failed, error_chars=2000))
    assert obj["status"]["runOutputTruncated"] is True
    assert len(obj["status"]["runOutput"]["errors"]) < len(failed)
    hs = run_health(ARGOCD / "health.lua", obj)
    assert hs["status"] == "Degraded"
    assert hs["message"] == (
        f"PartialFailure: 150 of 300 tables copied; failed: {kinds_message(failed)}"
    )


def test_counts_fall_back_to_run_output_errors(
    make_run_spec: Callable[..., dict[str, Any]],
    run_health: RunHealth,
) -> None:
    """A status without ``failures`` (older operator): the errors listed are counted."""
    obj = build_run(make_run_spec, RunScenario(12, failed=PLANTED))
    del obj["status"]["failures"]
    hs = run_health(ARGOCD / "health.lua", obj)
    assert hs["message"].endswith(f"failed: {kinds_message(PLANTED)}")


def test_rejected_spec_is_degraded_with_the_reason(run_health: RunHealth) -> None:
    status = build_rejected_status(
        reason="InvalidSpec",
        message="target.schemaTemplate uses placeholder {tenantx}",
        previous=RockyRunStatus(),
        generation=1,
        now=START,
        run_output=None,
    )
    obj = {"metadata": {"name": "bad", "generation": 1}, "status": status_document(status)}
    hs = run_health(ARGOCD / "health.lua", obj)
    assert hs["status"] == "Degraded"
    assert hs["message"].startswith("Failed: 0 of 0 tables copied; ")
    assert "placeholder {tenantx}" in hs["message"]


def test_unfinished_run_of_an_older_generation_is_progressing(
    make_run_spec: Callable[..., dict[str, Any]],
    run_health: RunHealth,
) -> None:
    obj = build_run(make_run_spec, RunScenario(3, running=frozenset({0})), generation=1)
    obj["metadata"]["generation"] = 2
    hs = run_health(ARGOCD / "health.lua", obj)
    assert hs == {
        "status": "Progressing",
        "message": "Waiting for the operator to observe generation 2",
    }


@pytest.mark.parametrize(
    ("failed", "health"),
    [
        ({}, "Healthy"),
        ({1: FailureKind.NOT_FOUND}, "Degraded"),
        (dict.fromkeys(range(3), FailureKind.AUTH_FAILED), "Degraded"),
    ],
    ids=["succeeded", "partial-failure", "failed"],
)
def test_finished_run_with_an_edited_spec_keeps_its_verdict(
    make_run_spec: Callable[..., dict[str, Any]],
    run_health: RunHealth,
    failed: dict[int, FailureKind],
    health: str,
) -> None:
    """The spec is frozen with the plan: an edit after the run finished is never applied, so
    waiting for the operator to observe it would leave the run Progressing forever."""
    obj = build_run(make_run_spec, RunScenario(3, failed=failed), generation=1)
    before = run_health(ARGOCD / "health.lua", obj)
    obj["metadata"]["generation"] = 2
    hs = run_health(ARGOCD / "health.lua", obj)
    assert hs["status"] == health == before["status"]
    assert hs["message"].startswith(before["message"])
    assert "generation 2" in hs["message"]
    assert "not applied" in hs["message"]


def test_finished_run_names_an_ignored_spec_edit(
    make_run_spec: Callable[..., dict[str, Any]], run_health: RunHealth
) -> None:
    """When the operator reports the ignored edit (SpecChangedIgnored), the message carries it."""
    obj = build_run(make_run_spec, RunScenario(3), generation=2)
    obj["status"]["conditions"].append(
        {
            "type": "SpecChangedIgnored",
            "status": "True",
            "reason": "SpecFrozen",
            "message": "generation 2 changed spec.concurrency after the run was planned",
            "lastTransitionTime": "2026-01-01T10:02:00Z",
        }
    )
    hs = run_health(ARGOCD / "health.lua", obj)
    assert hs["status"] == "Healthy"
    assert hs["message"].endswith(
        "; spec edit ignored: generation 2 changed spec.concurrency after the run was planned"
    )


def test_every_phase_evaluates_in_argocd_lua(
    make_run_spec: Callable[..., dict[str, Any]], argocd_lua: Path
) -> None:
    """One sample per phase and shape, all through Argo CD's Lua VM: none may fail (a script
    error is an Unknown health in Argo CD) and each maps to the health Argo CD should show."""
    planning = status_document(
        build_planning_status(previous=RockyRunStatus(), generation=1, now=START)
    )
    rejected = status_document(
        build_rejected_status(
            reason="SecretMissing",
            message="Secret data/warehouse-token not found",
            previous=RockyRunStatus(),
            generation=1,
            now=START,
            run_output=None,
        )
    )
    samples: list[tuple[str, dict[str, Any]]] = [
        ("Progressing", {"metadata": {"name": "new", "generation": 1}, "spec": {}}),
        ("Progressing", {"metadata": {"name": "p", "generation": 1}, "status": planning}),
        ("Progressing", build_run(make_run_spec, RunScenario(12, running=frozenset({0, 1})))),
        (
            "Progressing",
            build_run(
                make_run_spec, RunScenario(4, failed={2: FailureKind.TRANSIENT}, retries=True)
            ),
        ),
        ("Healthy", build_run(make_run_spec, RunScenario(12))),
        ("Degraded", build_run(make_run_spec, RunScenario(12, failed=PLANTED))),
        (
            "Degraded",
            build_run(
                make_run_spec,
                RunScenario(2, failed={0: FailureKind.UNKNOWN, 1: FailureKind.QUOTA_EXCEEDED}),
            ),
        ),
        ("Degraded", {"metadata": {"name": "bad", "generation": 1}, "status": rejected}),
    ]
    phases = {obj.get("status", {}).get("phase") for _, obj in samples}
    assert phases >= {None, *PHASES}
    waiting = samples[3][1]["status"]
    assert waiting["phase"] == "Running"
    assert waiting["tables"]["waitingRetry"] == 1
    results = health_of(argocd_lua, ARGOCD / "health.lua", [obj for _, obj in samples])
    assert [hs["status"] for hs in results] == [health for health, _ in samples]
    assert results[3]["message"] == "Running: 3 of 4 tables copied, 1 waiting to retry"
    assert results[7]["message"].endswith("Secret data/warehouse-token not found")


def schedule_obj(
    make_schedule_spec: Callable[..., RockyScheduleSpec],
    children: tuple[ChildRun, ...],
    **spec_fields: Any,
) -> dict[str, Any]:
    spec = make_schedule_spec(**spec_fields)
    now = START + timedelta(minutes=30)
    d = decide_schedule(
        spec,
        name="nightly",
        now=now,
        created_at=START - timedelta(days=1),
        last_schedule_time=START,
        last_successful_time=None,
        children=children,
    )
    status = build_schedule_status(d, suspended=spec.suspend, now=now, generation=1)
    return {
        "metadata": {"name": "nightly", "generation": 1},
        "spec": spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
        "status": status,
    }


def test_schedule_health(
    make_schedule_spec: Callable[..., RockyScheduleSpec], run_health: RunHealth
) -> None:
    script = ARGOCD / "schedule-health.lua"
    ok = ChildRun("nightly-1", START, "Succeeded", scheduled_at=START)
    bad = ChildRun("nightly-2", START, "PartialFailure", scheduled_at=START)
    running = ChildRun("nightly-3", START + timedelta(minutes=1), "Running")
    hs = run_health(script, schedule_obj(make_schedule_spec, (ok, running)))
    assert hs == {
        "status": "Healthy",
        "message": "next run at 2026-01-01T11:00:00Z; running: nightly-3",
    }
    hs = run_health(script, schedule_obj(make_schedule_spec, (bad,)))
    assert hs == {"status": "Degraded", "message": "nightly-2 ended PartialFailure"}
    hs = run_health(script, schedule_obj(make_schedule_spec, (ok,), suspend=True))
    assert hs["status"] == "Suspended"
    hs = run_health(script, {"metadata": {"name": "s"}, "spec": {"schedule": "@daily"}})
    assert hs["status"] == "Progressing"


def test_argocd_cm_embeds_the_current_lua() -> None:
    cm = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    assert cm["kind"] == "ConfigMap"
    assert cm["metadata"]["name"] == "argocd-cm"
    data = cm["data"]
    assert (
        data["resource.customizations.health.rocky.dev_RockyRun"]
        == (ARGOCD / "health.lua").read_text()
    )
    assert (
        data["resource.customizations.health.rocky.dev_RockySchedule"]
        == (ARGOCD / "schedule-health.lua").read_text()
    )


def test_lua_uses_nothing_beyond_lua_5_1() -> None:
    """gopher-lua is Lua 5.1: no goto, no integer division, no bit operators."""
    for script in (ARGOCD / "health.lua", ARGOCD / "schedule-health.lua"):
        code = script.read_text()
        assert not re.search(r"\bgoto\b|//|[^~<>=]~[^=]|<<|>>", code.replace("--", "\n#")), script


def test_a_run_that_planned_zero_tables_is_degraded(
    run_health: RunHealth, make_run_spec: Callable[..., dict[str, Any]]
) -> None:
    """Issue 10 case 9: a typo'd prefix plans nothing; the run exits 0 (as ``rocky run``) but
    its Complete reason is NoTablesMatched, and Argo CD must not show it as plain Healthy."""
    from tests.local.helpers import validate_output

    from rocky_operator.logic.tables import no_tables_message

    spec, tables = planned_tables(make_run_spec, 0)
    now = START + timedelta(minutes=1)
    decision = decide([], [], RunPolicy.from_spec(spec), now)
    assert decision.finished
    message = no_tables_message(spec, planned=0, resumed=0, excluded=[])
    status = build_status(
        decision=decision,
        attempts=[],
        resumed=0,
        previous=RockyRunStatus(),
        generation=1,
        start_time=START,
        now=now,
        run_output=build_run_output(
            tables, decision.outcomes, started_at=START, finished_at=now, filter=spec.filter
        ),
        no_tables=message,
    )
    assert (status.phase, status.exit_code) == ("Succeeded", 0)
    assert status.run_output is not None
    validate_output(status.run_output)  # Rocky's schema and rocky-sdk
    obj = {
        "apiVersion": "rocky.dev/v1alpha1",
        "kind": "RockyRun",
        "metadata": {"name": "nightly", "namespace": "data", "generation": 1},
        "spec": {},
        "status": status_document(status),
    }
    hs = run_health(ARGOCD / "health.lua", obj)
    assert hs["status"] == "Degraded"
    assert hs["message"].startswith("NoTablesMatched: no tables matched: schema pattern prefix")
