"""The runner policy after an operator restart: checked on the spec the run uses.

A run's spec is frozen with its plan (logic/spec_change.py); a later operator process
loads that copy and checks it against *its own* runner policy before it creates any
pod. So neither an edit of the live spec nor an admin tightening the policy between
two operator lives lets a pod out of policy be created: a run whose frozen spec the
policy now refuses halts (no new pod, running attempts stopped, the rest not
attempted naming the field and the rule, the tables already copied kept).

Pure cases of the decision core and the status first, then the controller on an API
server (kmock here; test_runner_policy_realapi.py runs the same scenarios on the real
kube-apiserver).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.operator.conftest import run_spec
from tests.operator.harness import Cluster, FakeKubelet, Outcome, operator_life
from tests.operator.test_operator_spec_freeze import edit_spec
from tests.security.test_runner_policy import SETTINGS

from rocky_operator.api.spec import RunnerSpec
from rocky_operator.api.status import RockyRunStatus
from rocky_operator.kube.runtime import Runtime
from rocky_operator.kube.settings import ControllerSettings
from rocky_operator.logic.decide import Attempt, AttemptState, TableState, decide
from rocky_operator.logic.decide_incremental import IncrementalDecider
from rocky_operator.logic.policy import RunPolicy
from rocky_operator.logic.runner_policy import (
    REASON_POLICY_VIOLATION,
    RunnerPolicy,
    check_runner_policy,
    note_policy_halt,
    policy_message,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FOREIGN = "evil.io/miner:6"
WIDE = replace(SETTINGS, runner_policy=RunnerPolicy(images=("evil.io/",)))


# --- Pure: the check, the halt in the decision core, the status ---------------------------


def test_a_policy_tightened_since_the_plan_refuses_the_frozen_spec() -> None:
    frozen = RunnerSpec.model_validate({"image": FOREIGN})
    defaults = SETTINGS.runner_defaults
    assert check_runner_policy(frozen, WIDE.runner_policy, defaults) == []
    (violation,) = check_runner_policy(frozen, RunnerPolicy(), defaults)
    assert (violation.field, violation.rule) == ("spec.runner.image", "images")
    assert policy_message([violation]).startswith("spec.runner.image: image 'evil.io/miner:6'")
    assert "runner.policy.images" in policy_message([violation])


def _history() -> list[Attempt]:
    start = NOW - timedelta(minutes=5)
    return [
        Attempt("a", 1, AttemptState.COPIED, start, start + timedelta(seconds=10)),
        Attempt("b", 1, AttemptState.FAILED, start, start, failure_kind=None, error="boom"),
        Attempt("c", 1, AttemptState.RUNNING, start),
    ]


@pytest.mark.parametrize("incremental", [False, True], ids=["decide", "incremental"])
def test_a_halt_starts_nothing_stops_the_running_and_names_the_violation(
    incremental: bool,
) -> None:
    tables = ["a", "b", "c", "d", "e"]
    policy = RunPolicy(concurrency=4)
    halt = "spec.runner.image: image 'evil.io/miner:6' is not allowed"
    if incremental:
        decider = IncrementalDecider(tables, policy)
        decider.observe(_history())
        decision = decider.decide(NOW, halt=halt)
    else:
        decision = decide(tables, _history(), policy, NOW, halt=halt)
    assert decision.start == ()  # four slots free, two pending tables: none starts
    assert decision.abort == (("c", 1),)
    assert decision.reason == halt
    outcomes = decision.outcomes
    assert outcomes["a"].state is TableState.COPIED  # what was copied stays copied
    for key in ("d", "e"):
        assert outcomes[key].state is TableState.NOT_ATTEMPTED
        assert outcomes[key].error == f"not attempted: {halt}"
    # Without the halt the same history starts the pending tables.
    assert {key for key, _ in decide(tables, _history(), policy, NOW).start} == {"d", "e"}


def test_a_halted_run_says_accepted_false_with_the_rule() -> None:
    message = "spec.runner.image: image 'x' is not allowed (runner policy: ...)"
    status = note_policy_halt(RockyRunStatus(), message, now=NOW, generation=3)
    (accepted,) = [c for c in status.conditions if c.type == "Accepted"]
    assert (accepted.status, accepted.reason) == ("False", REASON_POLICY_VIOLATION)
    assert accepted.message == message
    assert accepted.observed_generation == 3


# --- The controller across a restart ------------------------------------------------------

HANG = Outcome("hang")
HUNG = [f"t{n:02d}" for n in range(3, 13)]


def _conditions(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (run.get("status") or {}).get("conditions") or []}


def _record_pods(created: list[dict[str, Any]]) -> Any:
    def prepare(runtime: Runtime) -> None:
        original = runtime.client.create_pod

        async def create_pod(namespace: str, pod: dict[str, Any]) -> bool:
            created.append(pod)
            return await original(namespace, pod)

        runtime.client.create_pod = create_pod  # type: ignore[method-assign]

    return prepare


async def _first_life_until_two_copied(
    api_server: str, cluster: Cluster, spec: dict[str, Any], name: str, settings: Any
) -> None:
    """Start the run, wait for 2 tables copied and the third running (hung: all tables
    write one DuckDB file, so one runs at a time), then kill the operator."""
    first = operator_life(api_server, cluster.namespace, settings=settings)  # kept: not GC'd
    life = await first.__aenter__()
    try:
        await cluster.create_run(name, spec)
        await cluster.wait_run(
            name,
            lambda r: (
                (r.get("status") or {}).get("tables", {}).get("copied") == 2
                and (r.get("status") or {}).get("tables", {}).get("running") == 1
            ),
            deadline_seconds=60,
        )
    finally:
        await life.kill()
        with contextlib.suppress(RuntimeError):  # its loop is gone: nothing left to stop
            await first.__aexit__(None, None, None)


async def test_policy_tightened_between_restarts_halts_the_run_without_new_pods(
    api_server: str,
    cluster: Cluster,
    kubelet: FakeKubelet,
    warehouse: Path,
    default_settings: ControllerSettings,
    wide_settings: ControllerSettings,
) -> None:
    for table in HUNG:
        kubelet.plant(table, [HANG])
    spec = run_spec(warehouse, concurrency=2, runner={"image": FOREIGN})
    await _first_life_until_two_copied(api_server, cluster, spec, "tightened", wide_settings)
    # While the operator is down the author makes the live spec acceptable: it does not
    # count, the run uses its frozen spec (the foreign image).
    await edit_spec(cluster, "tightened", {"runner": {"image": None}})
    created: list[dict[str, Any]] = []
    # The admin tightened the policy: the next operator life has the default one.
    async with operator_life(
        api_server, cluster.namespace, settings=default_settings, prepare=_record_pods(created)
    ):
        run = await cluster.wait_finished("tightened", deadline_seconds=60)
        left = await cluster.wait_pods_gone("tightened")
    assert created == []  # no pod of any kind after the restart
    assert left == []  # the hung pods (out of policy now) were stopped
    status = run["status"]
    # Two tables were copied before the restart: the contract's partial-failure code.
    assert (status["phase"], status["exitCode"]) == ("PartialFailure", 2), json.dumps(status)
    assert (status["tables"]["copied"], status["tables"]["attempts"]) == (2, 3)
    accepted = _conditions(run)["Accepted"]
    assert (accepted["status"], accepted["reason"]) == ("False", REASON_POLICY_VIOLATION)
    assert accepted["message"].startswith("spec.runner.image: image 'evil.io/miner:6'")
    assert "runner.policy.images (--runner-allowed-images)" in accepted["message"]
    assert "stopped early: spec.runner.image:" in status["message"]
    output = status["runOutput"]
    assert len(output["materializations"]) == 2
    assert json.dumps(output).count("not attempted") >= 10  # every other table, naming why
    assert json.dumps(output).count("spec.runner.image") >= 10
    events = [e for e in await cluster.events() if e.get("reason") == REASON_POLICY_VIOLATION]
    assert events
    assert "no new pod" in events[0]["message"]


async def test_spec_edited_out_of_policy_between_restarts_keeps_the_frozen_runner(
    api_server: str,
    cluster: Cluster,
    kubelet: FakeKubelet,
    warehouse: Path,
    default_settings: ControllerSettings,
) -> None:
    default_image = default_settings.runner_defaults.image
    for table in HUNG:
        kubelet.plant(table, [HANG])
    spec = run_spec(warehouse, concurrency=2, runner={"image": default_image})
    await _first_life_until_two_copied(api_server, cluster, spec, "edited", default_settings)
    # The author edits the live spec to a foreign image and command while the operator is
    # down; the policy (default) would refuse it, but the run never uses it.
    await edit_spec(
        cluster, "edited", {"runner": {"image": FOREIGN, "command": ["sh", "-c", "id"]}}
    )
    kubelet.planted.clear()  # the rest copies; the hung pods finish too
    for pod in await cluster.pods("edited"):
        kubelet.handled.discard(pod["metadata"]["name"])
    created: list[dict[str, Any]] = []
    async with operator_life(
        api_server, cluster.namespace, settings=default_settings, prepare=_record_pods(created)
    ):
        run = await cluster.wait_finished("edited", deadline_seconds=60)
    status = run["status"]
    assert (status["phase"], status["tables"]["copied"]) == ("Succeeded", 12), json.dumps(status)
    assert created, "the remaining tables got pods after the restart"
    for pod in created:
        (container,) = pod["spec"]["containers"]
        assert container["image"] == default_image
        assert container["command"] == ["rocky-runner"]
    assert _conditions(run)["Accepted"]["status"] == "True"
    assert _conditions(run)["SpecChangedIgnored"]["status"] == "True"


async def test_policy_tightened_during_discovery_stops_the_discovery_pod(
    api_server: str,
    cluster: Cluster,
    kubelet: FakeKubelet,
    warehouse: Path,
    default_settings: ControllerSettings,
    wide_settings: ControllerSettings,
) -> None:
    """Restarted before the plan exists (its discovery pod made under the wider policy):
    refused as a new run would be, and that pod is stopped, not left running."""
    kubelet.paused = True  # the discovery pod never answers
    first = operator_life(
        api_server, cluster.namespace, settings=replace(wide_settings, discovery_in_pod=True)
    )
    life = await first.__aenter__()
    try:
        await cluster.create_run("discovering", run_spec(warehouse, runner={"image": FOREIGN}))
        for _ in range(600):
            if await cluster.pods("discovering"):
                break
            await asyncio.sleep(0.1)
        (pod,) = await cluster.pods("discovering")
        assert pod["spec"]["containers"][0]["image"] == FOREIGN
    finally:
        await life.kill()
        with contextlib.suppress(RuntimeError):
            await first.__aexit__(None, None, None)
    tightened = replace(default_settings, discovery_in_pod=True)
    async with operator_life(api_server, cluster.namespace, settings=tightened):
        run = await cluster.wait_finished("discovering", deadline_seconds=60)
        left = await cluster.wait_pods_gone("discovering")
    assert left == []
    assert run["status"]["phase"] == "Failed"
    accepted = _conditions(run)["Accepted"]
    assert (accepted["status"], accepted["reason"]) == ("False", REASON_POLICY_VIOLATION)
    assert accepted["message"].startswith("spec.runner.image:")
