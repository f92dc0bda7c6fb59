"""The Python client without a cluster: results, exit codes, manifests, the seed's policy, and
the local backend running a real RockyRun through `rocky-operator local` on a DuckDB file.

Results are built by the operator's own RunOutput assembly and parsed by rocky-sdk; the local
backend runs real runner subprocesses against a real DuckDB warehouse.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.client import (
    Action,
    LocalClient,
    ManifestError,
    RockyClientError,
    action_for,
    build_manifest,
    exit_code_of,
    load_manifest,
    outcome_from_output,
    triage,
    validate_manifest,
)
from rocky_operator.logic.decide import Attempt, AttemptState, decide
from rocky_operator.logic.policy import RunPolicy
from rocky_operator.logic.run_output import build_run_output
from rocky_operator.logic.tables import plan_tables
from rocky_runner.contract import FailureKind, TableResult

START = datetime(2026, 1, 1, tzinfo=UTC)


class _Found:
    def __init__(self, table: str) -> None:
        self.catalog = None
        self.schema = "src__acme__eu__shop"
        self.table = table
        self.components = {"tenant": "acme", "region": "eu", "source": "shop"}


def run_output(make_run_spec: Callable[..., dict[str, Any]], kinds: list[FailureKind | None]):  # type: ignore[no-untyped-def]
    """A RunOutput from the operator's assembly: table i copied (None) or failed with kinds[i]."""
    body = make_run_spec()
    body["retry"] = {
        k: {"maxRetries": 0} for k in ("transient", "connection-failed", "quota-exceeded")
    }
    spec = RockyRunSpec.model_validate(body)
    tables = plan_tables(spec, [_Found(f"t{i}") for i in range(len(kinds))])
    attempts = []
    for t, kind in zip(tables, [kinds[int(t.asset_key[-1][1:])] for t in tables], strict=True):
        result = TableResult(
            asset_key=list(t.asset_key),
            outcome="failed" if kind else "copied",
            rows_copied=None if kind else 1,
            failure_kind=kind,
            error=f"boom ({kind})" if kind else None,
        )
        attempts.append(
            Attempt(
                t.key,
                1,
                AttemptState.FAILED if kind else AttemptState.COPIED,
                START,
                finished_at=START + timedelta(seconds=1),
                failure_kind=kind,
                error=result.error,
                result=result,
            )
        )
    now = START + timedelta(seconds=2)
    d = decide([t.key for t in tables], attempts, RunPolicy.from_spec(spec), now)
    return build_run_output(tables, d.outcomes, started_at=START, finished_at=now, filter="")


@pytest.mark.parametrize(
    ("kinds", "code"),
    [
        ([None, None], 0),
        ([None, FailureKind.TRANSIENT], 2),
        ([FailureKind.AUTH_FAILED, FailureKind.NOT_FOUND], 1),
    ],
    ids=["all copied", "partial", "all failed"],
)
def test_exit_codes_mean_what_rocky_run_means(
    kinds: list[FailureKind | None], code: int, make_run_spec: Callable[..., dict[str, Any]]
) -> None:
    output = run_output(make_run_spec, kinds)
    outcome = outcome_from_output("r", output)
    assert outcome.exit_code == code
    assert exit_code_of(output) == code
    assert type(outcome.result).__name__ == "RunResult"
    assert sorted(e.failure_kind for e in outcome.result.errors) == sorted(
        k.value for k in kinds if k
    )
    # Without the status field (older outputs) the counts decide.
    legacy = {k: v for k, v in output.items() if k != "status"}
    assert exit_code_of(legacy) == code


def test_policy_maps_every_kind_as_the_seed_says(
    make_run_spec: Callable[..., dict[str, Any]],
) -> None:
    expected = {
        "transient": Action.RETRY,
        "connection-failed": Action.RETRY,
        "quota-exceeded": Action.RETRY_EXTENDED_AND_ALERT,
        "auth-failed": Action.ALERT,
        "query-rejected": Action.ALERT,
        "not-found": Action.ALERT,
        "unknown": Action.SURFACE,
    }
    assert {k: action_for(k) for k in expected} == expected
    # Rocky's compile-error is outside the seed's table: surfaced, never retried.
    expected["compile-error"] = Action.SURFACE
    assert {k.value: action_for(k.value) for k in FailureKind} == expected
    assert action_for("some-future-kind") is Action.SURFACE
    assert action_for(None) is Action.SURFACE
    kinds: list[FailureKind | None] = [*FailureKind, None]
    found = triage(outcome_from_output("r", run_output(make_run_spec, kinds)).result.errors)
    assert {f.failure_kind: f.action for f in found.failures} == expected
    assert found.retryable_kinds == ["connection-failed", "quota-exceeded", "transient"]
    assert sorted(f.failure_kind for f in found.of(Action.SURFACE)) == ["compile-error", "unknown"]


def test_manifests_are_checked_before_submission(tmp_path: Path, make_run_spec: Any) -> None:
    spec = RockyRunSpec.model_validate(make_run_spec())
    body = build_manifest(spec, generate_name="nightly-", labels={"team": "data"})
    assert body["metadata"] == {"generateName": "nightly-", "labels": {"team": "data"}}
    assert validate_manifest(body)["spec"] == body["spec"]
    with pytest.raises(ManifestError, match="exactly one of name and generate_name"):
        build_manifest(spec)
    bad = {**body, "spec": {**body["spec"], "filter": "planet=mars"}}
    with pytest.raises(ManifestError, match="planet"):
        validate_manifest(bad)
    with pytest.raises(ManifestError, match="apiVersion"):
        validate_manifest({**body, "apiVersion": "v1"})
    path = tmp_path / "two.yaml"
    path.write_text(
        "kind: ConfigMap\n---\n" + "apiVersion: rocky.dev/v1alpha1\nkind: RockyRun\n"
        "metadata: {name: r}\nspec: {}\n"
    )
    with pytest.raises(ManifestError, match="invalid RockyRun spec"):
        load_manifest(path)


def _warehouse(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA src__acme__eu__shop")
    for table in ("orders", "customers"):
        con.execute(
            f"CREATE TABLE src__acme__eu__shop.{table} AS SELECT i AS id, "
            "TIMESTAMP '2026-01-01' + to_minutes(i) AS _fivetran_synced FROM range(5) r(i)"
        )
    con.close()


def test_local_backend_runs_a_typed_spec_and_resumes_by_name(tmp_path: Path) -> None:
    _warehouse(tmp_path / "warehouse.duckdb")
    spec = RockyRunSpec.model_validate(
        {
            "adapter": {"type": "duckdb", "duckdb": {"path": "/data/warehouse.duckdb"}},
            "source": {"schemaPattern": {"components": ["tenant", "region", "source"]}},
            "target": {"catalogTemplate": "warehouse", "schemaTemplate": "{tenant}__{source}"},
            "concurrency": 1,
        }
    )
    rocky = LocalClient(tmp_path / "runs", mounts={"/data": str(tmp_path)})
    first = rocky.run(spec, name="first", timeout=120)
    assert first.exit_code == 0
    assert first.result.tables_copied == 2
    assert rocky.output_path("first").is_file()
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM acme__shop.orders").fetchone() == (5,)
    con.close()
    again = rocky.run(spec, name="again", timeout=120, resume_from="first")
    assert again.exit_code == 0
    assert again.result.tables_copied == 0  # everything was copied by "first"
    with pytest.raises(RockyClientError, match="no output of an earlier local run"):
        rocky.run(spec, name="x", timeout=10, resume_from="never-ran")
