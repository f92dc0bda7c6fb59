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
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import as_file
from pathlib import Path
from typing import Any

import pytest
import yaml

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.client import RunOutcome, outcome_from_output
from rocky_operator.logic.decide import TableOutcome, TableState
from rocky_operator.logic.run_output import build_failed_run_output, build_run_output
from rocky_operator.logic.tables import plan_exclusions, plan_tables
from rocky_runner.contract import FailureKind, TableResult

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

START = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)

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


@pytest.mark.slow  # real runner subprocesses: about 10 s per RockyRun
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


@pytest.mark.slow  # real runner subprocesses: about 10 s per RockyRun
def test_transient_failure_is_retried_by_the_retry_policy(demo: dict[str, Any]) -> None:
    manifest = demo["manifest"]
    manifest["spec"]["filter"] = "tenant=acme,region=us_east"  # just the locked table
    # ... and only its name: the other listed names are in no us_east schema, which the
    # run would rightly report as missing_from_source (and the asset alert on).
    manifest["spec"]["source"]["tables"] = ["contacts"]
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


class CapturedRocky(example.RockyRunResource):  # type: ignore[misc,name-defined]
    """Answers with one RunOutput read from a file (crafted or captured). A retry resumes as
    the real backends do: only the tables that failed with ``resume_kinds`` run again (and
    fail again the same way)."""

    output_path: str

    def run(self, **kwargs: Any) -> RunOutcome:
        output = json.loads(Path(self.output_path).read_text())
        if kwargs.get("resume_from"):
            kinds = set(kwargs.get("resume_kinds") or ())
            errors = [e for e in output["errors"] if e["failure_kind"] in kinds]
            output.update(
                errors=errors,
                materializations=[],
                tables_copied=0,
                tables_failed=len(errors),
                status="Failure" if errors else "Success",
            )
        return outcome_from_output(kwargs["name"], output)


def _materialize_output(
    tmp_path: Path, output: dict[str, Any]
) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """Materialize the real asset on one RunOutput: result, last metadata, alerts sent."""
    path = tmp_path / "output.json"
    path.write_text(json.dumps(output))
    alerts = tmp_path / "alerts.jsonl"
    result = dg.materialize(
        [
            example.build_replication_asset(
                retry_policy=dg.RetryPolicy(max_retries=1, delay=0),
                extended_backoff_seconds=0.01,
                max_quota_retries=1,
            )
        ],
        resources={
            "rocky": CapturedRocky(manifest_path="unused", output_path=str(path)),
            "alerter": example.Alerter(log_path=str(alerts)),
        },
        raise_on_error=False,
    )
    observations = result.get_asset_observation_events()
    meta = {
        k: v.value
        for k, v in observations[-1].asset_observation_data.asset_observation.metadata.items()
    }
    sent = [json.loads(line) for line in alerts.read_text().splitlines()] if alerts.exists() else []
    return result, meta, sent


@dataclass(frozen=True)
class _Found:
    schema: str
    table: str
    components: dict[str, str]
    catalog: str | None = None


@dataclass(frozen=True)
class _Excluded:
    schema: str
    table: str
    components: dict[str, str]
    reason: str
    catalog: str | None = None


def crafted_output(kinds: list[str | None], spec_body: dict[str, Any]) -> dict[str, Any]:
    """The operator's own RunOutput (logic.run_output) for one table per entry: ``None`` is a
    copied table, a string the failure_kind of a failed one (kinds the runner never produces,
    such as Rocky's ``compile-error``, are written onto the wire as Rocky would)."""
    spec = RockyRunSpec.model_validate(spec_body)
    found = [
        _Found(
            "src__acme__us_west__shopify",
            f"t{i:02d}",
            {"tenant": "acme", "region": "us_west", "source": "shopify"},
        )
        for i in range(len(kinds))
    ]
    tables = plan_tables(spec, found)
    outcomes = {}
    for table, kind in zip(tables, kinds, strict=True):
        if kind is None:
            result = TableResult(asset_key=list(table.asset_key), outcome="copied", rows_copied=5)
            outcomes[table.key] = TableOutcome(
                table.key, TableState.COPIED, 1, result=result, started_at=START, finished_at=START
            )
        else:
            outcomes[table.key] = TableOutcome(
                table.key,
                TableState.FAILED,
                1,
                failure_kind=FailureKind.UNKNOWN,
                error=f"raw {kind} error text from the warehouse on {table.asset_key[-1]}",
            )
    output = build_run_output(tables, outcomes, started_at=START, finished_at=START, filter="")
    wire = iter(k for k in kinds if k is not None)
    for err in output["errors"]:
        err["failure_kind"] = next(wire)
    return output


def test_seed_mapping_holds_for_every_kind(tmp_path: Path, make_run_spec: Any) -> None:
    """Every kind of the seed's table, Rocky's compile-error and a kind not invented yet: each
    takes its seed action; unknown and unknown kinds alert with the raw error (never silent)."""
    kinds = [*SEED_POLICY, "compile-error", "kind-from-a-newer-rocky"]
    expected = {**SEED_POLICY, "compile-error": "surface", "kind-from-a-newer-rocky": "surface"}
    result, meta, alerts = _materialize_output(
        tmp_path, crafted_output([None, *kinds], make_run_spec())
    )
    first_branches = {b["kind"]: b["action"] for b in meta["branches"].values()}
    # The last attempt resumed only the retryable tables; attempt 0 saw every kind.
    attempt0 = _attempt_branches(result, 0)
    assert attempt0 == expected
    assert set(first_branches) <= set(expected)
    surfaced = [a for a in alerts if a["action"] == "surface-for-triage"]
    assert sorted(a["kind"] for a in surfaced) == ["compile-error", "kind-from-a-newer-rocky",
                                                   "unknown"]  # fmt: skip
    for a in surfaced:
        assert (
            a["error"]
            == f"raw {a['kind']} error text from the warehouse on " + a["target"].rsplit("/", 1)[-1]
        )
    owner = sorted(a["kind"] for a in alerts if a["action"] == "alert-owner")
    assert owner == ["auth-failed", "not-found", "query-rejected"]
    assert not result.success  # retryable kinds still failing after the retries


def _attempt_branches(result: Any, attempt: int) -> dict[str, str]:
    for e in result.get_asset_observation_events():
        meta = e.asset_observation_data.asset_observation.metadata
        if meta["attempt"].value == attempt:
            return {b["kind"]: b["action"] for b in meta["branches"].value.values()}
    raise AssertionError(f"no observation of attempt {attempt}")


def test_every_table_auth_failed_fails_the_asset_with_the_cause(
    tmp_path: Path, make_run_spec: Any
) -> None:
    """Exit code 1, nothing copied: the asset fails (no retry can fix auth-failed)."""
    result, meta, alerts = _materialize_output(
        tmp_path, crafted_output(["auth-failed", "auth-failed", "auth-failed"], make_run_spec())
    )
    assert meta["exit_code"] == 1
    assert not result.success
    failure = _step_failure(result)
    assert "copied nothing: 3 table(s) failed (3 auth-failed)" in failure
    assert "raw auth-failed error text" in failure
    assert [a["action"] for a in alerts].count("alert-owner") == 3
    assert next(a for a in alerts if a["action"] == "run-failed")["cause"] in failure
    assert meta["attempt"] == 0  # failed at once: not retried


def test_unknown_failure_in_a_partial_run_alerts_with_the_raw_error(
    tmp_path: Path, make_run_spec: Any
) -> None:
    """Exit code 2 with an unknown table: what copied is materialized, and the unknown table
    is surfaced (alert, metadata) with its raw error."""
    result, meta, alerts = _materialize_output(
        tmp_path, crafted_output([None, None, "unknown"], make_run_spec())
    )
    assert result.success
    assert meta["exit_code"] == 2
    assert [a["action"] for a in alerts] == ["surface-for-triage"]
    assert alerts[0]["error"].startswith("raw unknown error text")
    assert meta["unclassified"][0]["error"] == alerts[0]["error"]


def test_run_rejected_before_any_table_fails_the_asset_with_the_cause(tmp_path: Path) -> None:
    """A missing Secret: the operator rejects the run (Failed, exit code 1, one error with an
    empty asset key saying why). The asset fails and names it."""
    cause = "Secret data/warehouse-token not found (spec.adapter.databricks.tokenSecretRef)"
    output = build_failed_run_output(cause, started_at=START, finished_at=START)
    result, meta, alerts = _materialize_output(tmp_path, output)
    assert meta["exit_code"] == 1
    assert not result.success
    assert cause in _step_failure(result)
    assert "rejected before any table" in _step_failure(result)
    assert {a["action"] for a in alerts} >= {"run-failed"}
    assert "empty-run" not in {a["action"] for a in alerts}  # the rejection says it all


def test_zero_table_run_alerts(tmp_path: Path, make_run_spec: Any) -> None:
    _, meta, alerts = _materialize_output(tmp_path, crafted_output([], make_run_spec()))
    assert meta["tables_copied"] == meta["tables_failed"] == 0
    assert [a["action"] for a in alerts] == ["empty-run"]


def test_tables_missing_from_the_source_alert(tmp_path: Path, make_run_spec: Any) -> None:
    """Issue 10 case 7: the operator's RunOutput lists a requested name the source lacks
    (and a view) in excluded_tables; the asset materializes what copied, alerts on the
    missing name only and records both in its metadata."""
    from tests.local.helpers import validate_output

    output = crafted_output([None], make_run_spec())
    spec = RockyRunSpec.model_validate(make_run_spec())
    excluded = plan_exclusions(
        spec,
        [
            _Excluded(
                "src__acme__us_west__shopify",
                name,
                {"tenant": "acme", "region": "us_west", "source": "shopify"},
                reason,
            )
            for name, reason in (("refunds", "missing_from_source"), ("v_daily", "view"))
        ],
    )
    output["excluded_tables"] = [e.as_output() for e in excluded]
    validate_output(output)  # Rocky's schema and rocky-sdk
    result, meta, alerts = _materialize_output(tmp_path, output)
    assert result.success
    assert [(a["action"], a["tables"]) for a in alerts] == [
        ("tables-missing", ["duckdb/acme/us_west/shopify/refunds"])
    ]
    assert meta["excluded_tables"] == {
        "duckdb/acme/us_west/shopify/refunds": "missing_from_source",
        "duckdb/acme/us_west/shopify/v_daily": "view",
    }


def test_retries_have_jitter() -> None:
    """The retry policy and the extended quota backoff spread retries (no thundering herd)."""
    assert example.RETRY_POLICY.jitter is not None
    assert example.RETRY_POLICY.backoff == dg.Backoff.EXPONENTIAL
    rng = random.Random(7)
    waits = {example.jittered(300.0, rng) for _ in range(20)}
    assert len(waits) == 20
    assert all(150.0 <= w <= 450.0 for w in waits)


def _step_failure(result: Any) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures, "the step did not fail"
    data = failures[-1].step_failure_data
    return " ".join(
        str(x) for x in (data.error.message if data.error else "", data.user_failure_data)
    )


@pytest.mark.slow  # real runner subprocesses: about 10 s per RockyRun
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
    result, meta, sent = _materialize_output(tmp_path, output)
    assert meta["exit_code"] == 2  # one table copied: partial success
    assert result.success  # nothing retryable: the asset materializes with what copied
    branches = meta["branches"]
    for branch in branches.values():
        assert branch["action"] == SEED_POLICY[branch["kind"]]
    assert sorted(b["kind"] for b in branches.values()) == [
        "auth-failed", "not-found", "query-rejected", "unknown"
    ]  # fmt: skip
    unknown = meta["unclassified"]
    assert len(unknown) == 1
    assert "LockTimeoutError" in unknown[0]["error"]  # the raw error, surfaced whole
    assert sorted(a["kind"] for a in sent if a["action"] == "alert-owner") == [
        "auth-failed", "not-found", "query-rejected"
    ]  # fmt: skip
    surfaced = [a for a in sent if a["action"] == "surface-for-triage"]
    assert [a["kind"] for a in surfaced] == ["unknown"]
    assert surfaced[0]["error"] == unknown[0]["error"]
