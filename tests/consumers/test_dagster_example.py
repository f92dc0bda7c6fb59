"""The Dagster example materialized with real Dagster against real runs with planted failures.

The asset (examples/dagster/rocky_replication) runs RockyRuns through the client's local
backend (``rocky-operator local``: real runner subprocesses on the demo's DuckDB warehouse with
its planted failures) and branches on each failed table's failure_kind. Checked, per attempt:
the branch each failure took against the seed's "Recommended consumer policy" table (written
out here, independently of the code), the alerts sent, that retries resume only the retryable
tables, that a transient failure is retried through Dagster's RetryPolicy until it succeeds,
and that quota-exceeded takes the extended-backoff path. Kinds the demo cannot plant through
DuckDB (auth-failed, not-found, unknown) are checked on a captured RunOutput.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
from collections.abc import Iterator
from importlib.resources import as_file
from pathlib import Path
from typing import Any

import pytest
import yaml

from rocky_operator.client import RunOutcome, outcome_from_output

dg = pytest.importorskip("dagster", reason="dagster is in the `examples` extra")

EXAMPLE = Path(__file__).parents[2] / "examples" / "dagster"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))
example = importlib.import_module("rocky_replication.assets")

#: The seed's "Recommended consumer policy", as a table of expectations.
SEED_POLICY = {
    "transient": "retry",
    "connection-failed": "retry",
    "quota-exceeded": "retry-extended-and-alert",
    "auth-failed": "alert",
    "query-rejected": "alert",
    "not-found": "alert",
    "unknown": "surface",
}

pytestmark = pytest.mark.slow  # real runner subprocesses: about 10 s per RockyRun

#: The demo's lock holder, released by the resource after the first attempt (the other
#: writer goes away, as a transient condition does).
_LOCKS: dict[str, contextlib.ExitStack] = {}


class LockReleasingRocky(example.RockyRunResource):  # type: ignore[misc,name-defined]
    lock_key: str = ""

    def run(self, **kwargs: Any) -> RunOutcome:
        try:
            outcome: RunOutcome = super().run(**kwargs)
            return outcome
        finally:
            stack = _LOCKS.pop(self.lock_key, None)
            if stack is not None:
                stack.close()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The demo warehouse (lock held) and a manifest narrowed to the planted tables."""
    from rocky_operator.demo import manifest_resource
    from rocky_operator.demo.warehouse import PLANTED, build_warehouse, hold_lock

    built = build_warehouse(tmp_path / "warehouse")
    with as_file(manifest_resource()) as path:
        manifest = yaml.safe_load(path.read_text())
    spec = manifest["spec"]
    # Retries are Dagster's job here: each RockyRun reports its first failure at once.
    spec["retry"] = {k: {"maxRetries": 0} for k in ("transient", "connection-failed",
                                                    "quota-exceeded")}  # fmt: skip
    # The four planted tables plus one that copies; two runners at a time.
    spec["source"]["tables"] = ["refunds", "tickets", "contacts", "disputes", "payouts"]
    spec["concurrency"] = 2
    stack = contextlib.ExitStack()
    stack.enter_context(hold_lock(built.locked_target))
    key = str(tmp_path)
    _LOCKS[key] = stack
    try:
        yield {
            "built": built,
            "manifest": manifest,
            "planted": {"/".join(p.asset_key): p.failure_kind for p in PLANTED},
            "lock_key": key,
            "tmp": tmp_path,
        }
    finally:
        _LOCKS.pop(key, stack).close()


def _write(manifest: dict[str, Any], path: Path) -> str:
    path.write_text(yaml.safe_dump(manifest))
    return str(path)


def _materialize(
    demo: dict[str, Any], manifest: dict[str, Any], **asset_kw: Any
) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
    tmp: Path = demo["tmp"]
    alerts = tmp / "alerts.jsonl"
    asset = example.build_replication_asset(
        retry_policy=dg.RetryPolicy(max_retries=2, delay=0.1), **asset_kw
    )
    rocky = LockReleasingRocky(
        manifest_path=_write(manifest, tmp / "rockyrun.yaml"),
        backend="local",
        state_dir=str(tmp / "runs"),
        mounts={"/data": str(demo["built"].directory)},
        timeout_seconds=120,
        lock_key=demo["lock_key"],
    )
    result = dg.materialize(
        [asset],
        resources={"rocky": rocky, "alerter": example.Alerter(log_path=str(alerts))},
        raise_on_error=False,
    )
    observations = [
        {k: v.value for k, v in e.asset_observation_data.asset_observation.metadata.items()}
        for e in result.get_asset_observation_events()
    ]
    sent = [json.loads(line) for line in alerts.read_text().splitlines()] if alerts.exists() else []
    return result, observations, sent


def test_branch_per_planted_failure_kind(demo: dict[str, Any]) -> None:
    result, attempts, alerts = _materialize(
        demo, demo["manifest"], extended_backoff_seconds=0.1, max_quota_retries=1
    )
    planted: dict[str, str] = demo["planted"]
    assert len(set(planted.values())) >= 4

    # Attempt 0: every planted failure, each on the branch the seed's table gives its kind.
    first = attempts[0]
    assert first["attempt"] == 0
    assert first["exit_code"] == 2
    assert first["tables_copied"] == 1
    branches = first["branches"]
    assert {t: b["kind"] for t, b in branches.items()} == planted
    for target, branch in branches.items():
        assert branch["action"] == SEED_POLICY[branch["kind"]], target
    print("\nbranch per failure kind (attempt 0):")
    for target, branch in sorted(branches.items(), key=lambda kv: kv[1]["kind"]):
        print(f"  {branch['kind']:<17} -> {branch['action']:<25} {target}")

    # quota-exceeded took the extended path: attempt 1 resumed the retryable tables only.
    second = attempts[1]
    assert second["attempt"] == 1
    assert second["rocky_run"].endswith("-1")
    retried = {t: b["kind"] for t, b in second["branches"].items()}
    still_failing = {t: k for t, k in planted.items() if k in ("connection-failed",
                                                                "quota-exceeded")}  # fmt: skip
    assert retried == still_failing  # the query-rejected table was not run again
    assert second["tables_copied"] == 1  # the transient table, once the lock was gone
    print("attempt 1 (resumed, retryable kinds only):", json.dumps(retried, sort_keys=True))

    # Alerts: owner alert once for the query-rejected table, quota alert per attempt, then
    # retries exhausted; nothing for transient / connection-failed until they are exhausted.
    by_action: dict[str, list[dict[str, Any]]] = {}
    for a in alerts:
        by_action.setdefault(a["action"], []).append(a)
    print("alerts:", json.dumps([(a["action"], a.get("kind") or a.get("kinds"))
                                 for a in alerts]))  # fmt: skip
    owner = [(a["target"], a["kind"]) for a in by_action["alert-owner"]]
    assert owner == [(t, k) for t, k in planted.items() if SEED_POLICY[k] == "alert"]
    assert [a["kind"] for a in by_action["retry-extended"]] == ["quota-exceeded"] * 2
    assert by_action["retries-exhausted"][0]["kinds"] == ["connection-failed", "quota-exceeded"]
    assert set(by_action) == {"alert-owner", "retry-extended", "retries-exhausted"}
    assert not result.success  # still failing after the retries: the step fails, for triage


def test_transient_failure_is_retried_by_the_retry_policy(demo: dict[str, Any]) -> None:
    manifest = demo["manifest"]
    manifest["spec"]["filter"] = "tenant=acme,region=us_east"  # just the locked table
    result, attempts, alerts = _materialize(demo, manifest)
    assert result.success
    assert [a["attempt"] for a in attempts] == [0, 1]
    assert {b["kind"]: b["action"] for b in attempts[0]["branches"].values()} == {
        "transient": "retry"
    }
    assert attempts[1]["branches"] == {}
    materialization = result.get_asset_materialization_events()[0]
    meta = materialization.materialization.metadata
    assert meta["exit_code"].value == 0
    assert meta["attempt"].value == 1
    assert meta["tables_copied"].value == 1
    assert alerts == []  # transient is retried, never paged


def test_kinds_the_demo_cannot_plant(demo: dict[str, Any], tmp_path: Path) -> None:
    """auth-failed, not-found and unknown, on a RunOutput captured from a real local run."""
    from rocky_operator.client import LocalClient

    manifest = demo["manifest"]
    captured = LocalClient(tmp_path / "capture", mounts={"/data": str(demo["built"].directory)})
    output = captured.run(manifest, name="capture", timeout=120).output
    relabel = {"query-rejected": "auth-failed", "connection-failed": "not-found",
               "transient": "unknown", "quota-exceeded": "query-rejected"}  # fmt: skip
    for err in output["errors"]:
        err["failure_kind"] = relabel[err["failure_kind"]]
    path = tmp_path / "captured.json"
    path.write_text(json.dumps(output))

    class CapturedRocky(example.RockyRunResource):  # type: ignore[misc,name-defined]
        output_path: str

        def run(self, **kwargs: Any) -> RunOutcome:
            return outcome_from_output(
                kwargs["name"], json.loads(Path(self.output_path).read_text())
            )

    alerts = tmp_path / "alerts.jsonl"
    result = dg.materialize(
        [example.build_replication_asset(retry_policy=dg.RetryPolicy(max_retries=1, delay=0))],
        resources={
            "rocky": CapturedRocky(manifest_path="unused", output_path=str(path)),
            "alerter": example.Alerter(log_path=str(alerts)),
        },
        raise_on_error=False,
    )
    assert result.success  # nothing retryable: the asset materializes with what copied
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    branches = meta["branches"].value
    for branch in branches.values():
        assert branch["action"] == SEED_POLICY[branch["kind"]]
    assert sorted(b["kind"] for b in branches.values()) == [
        "auth-failed", "not-found", "query-rejected", "unknown"
    ]  # fmt: skip
    unknown = meta["unclassified"].value
    assert len(unknown) == 1
    assert "LockTimeoutError" in unknown[0]["error"]  # the raw error, surfaced whole
    sent = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert sorted(a["kind"] for a in sent if a["action"] == "alert-owner") == [
        "auth-failed", "not-found", "query-rejected"
    ]  # fmt: skip
