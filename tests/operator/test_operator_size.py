"""Size bounds and the run records: 5,000 tables with 20 % failing with 2 KiB errors.

Checks that the RockyRun object stays far below etcd's limit with every failure
accounted for in the status counts, that the complete RunOutput (every error in full)
survives the ConfigMap encoding (gzip, parts under the ConfigMap limit), and that the
journal and plan encodings round-trip.
"""

from __future__ import annotations

import base64
import json
import random
import string
from datetime import UTC, datetime, timedelta

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.api.status import MAX_STATUS_ERROR_CHARS, RockyRunStatus
from rocky_operator.logic import records
from rocky_operator.logic.decide import Attempt, AttemptState, decide
from rocky_operator.logic.policy import RunPolicy
from rocky_operator.logic.run_output import build_run_output
from rocky_operator.logic.status import build_status, status_document
from rocky_operator.logic.tables import plan_tables
from rocky_runner.contract import FailureKind, TableResult
from rocky_runner.discovery import DiscoveredTable

START = datetime(2026, 1, 1, tzinfo=UTC)
MIB = 1024 * 1024
KINDS = [k for k in FailureKind if k is not FailureKind.COMPILE_ERROR]


def _spec() -> RockyRunSpec:
    return RockyRunSpec.model_validate(
        {
            "adapter": {"type": "duckdb", "duckdb": {"path": "/data/w.duckdb"}},
            "source": {"schemaPattern": {"components": ["tenant", "source"]}},
            "target": {"catalogTemplate": "{tenant}_wh", "schemaTemplate": "staging__{source}"},
            "retry": {k.value: {"maxRetries": 0} for k in KINDS},
            "concurrency": 100,
        }
    )


def _run(tables: int, failing: float, error_bytes: int):  # type: ignore[no-untyped-def]
    spec = _spec()
    found = [
        DiscoveredTable(
            None,
            f"src__t{i % 50}__shop",
            f"table_{i:05d}",
            {"tenant": f"t{i % 50}", "source": "shop"},
        )
        for i in range(tables)
    ]
    planned = plan_tables(spec, found)
    rng = random.Random(7)
    attempts = []
    for n, table in enumerate(planned):
        finished = START + timedelta(seconds=n)
        if n % int(1 / failing) == 0:
            kind = KINDS[n % len(KINDS)]
            error = "".join(rng.choices(string.ascii_letters + " ", k=error_bytes))
            result = TableResult(
                asset_key=list(table.asset_key), outcome="failed", failure_kind=kind, error=error
            )
            attempts.append(
                Attempt(table.key, 1, AttemptState.FAILED, START, finished, kind, error, result)
            )
        else:
            result = TableResult(
                asset_key=list(table.asset_key),
                outcome="copied",
                rows_copied=n,
                duration_ms=40,
                metadata={
                    "strategy": "incremental",
                    "target_table_full_name": table.task.target.full_name(),
                },
            )
            attempts.append(
                Attempt(table.key, 1, AttemptState.COPIED, START, finished, result=result)
            )
    now = START + timedelta(hours=2)
    decision = decide([t.key for t in planned], attempts, RunPolicy.from_spec(spec), now)
    full = build_run_output(
        planned, decision.outcomes, started_at=START, finished_at=now, filter=""
    )
    status = build_status(
        decision=decision,
        attempts=attempts,
        resumed=0,
        previous=RockyRunStatus(),
        generation=1,
        start_time=START,
        now=now,
        run_output=full,
    )
    return spec, planned, attempts, full, status


def test_5000_tables_keep_the_object_small_and_account_for_every_failure() -> None:
    spec, _planned, _attempts, full, status = _run(5000, 0.2, 2048)
    obj = {
        "apiVersion": "rocky.dev/v1alpha1",
        "kind": "RockyRun",
        "metadata": {"name": "big", "namespace": "data", "annotations": {"x": "y" * 1000}},
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        "status": status_document(status),
    }
    size = len(json.dumps(obj).encode())
    assert size < MIB // 4, f"RockyRun object is {size} bytes"
    assert status.tables.failed == 1000
    assert status.tables.copied == 4000
    assert sum(status.failures.values()) == 1000
    assert status.run_output is not None
    assert status.run_output["tables_failed"] == 1000
    assert status.run_output_truncated is True
    assert all(len(e["error"]) <= MAX_STATUS_ERROR_CHARS + 40 for e in status.run_output["errors"])
    # The complete output keeps every error in full.
    assert len(full["errors"]) == 1000
    assert all(len(e["error"]) >= 2048 for e in full["errors"])


def test_complete_output_fits_config_maps_and_round_trips() -> None:
    *_, full, _status = _run(5000, 0.2, 2048)
    data = records.compress(full)
    parts = records.split(data)
    for part in parts:
        assert len(base64.b64encode(part)) + 4096 < MIB  # a ConfigMap with metadata
    assert records.decompress(b"".join(parts)) == full


def test_journal_and_plan_round_trip() -> None:
    _, planned, attempts, _full, _status = _run(300, 0.2, 2048)
    batch = records.encode_batch(attempts)
    assert records.decode_batch(batch) == attempts
    tables, resumed = records.decode_plan(
        records.decompress(records.compress(records.encode_plan(planned, ["duckdb/x/y"])))
    )
    assert [t.key for t in tables] == [t.key for t in planned]
    assert tables[0].task == planned[0].task
    assert resumed == ["duckdb/x/y"]


def test_latest_attempt_wins() -> None:
    running = Attempt("k", 1, AttemptState.RUNNING, START)
    done = Attempt("k", 1, AttemptState.COPIED, START, START)
    assert records.latest_attempts([done, running])[("k", 1)] == done
    assert records.latest_attempts([running, done])[("k", 1)] == done
