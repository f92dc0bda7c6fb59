"""The seed's Dagster asset against the demo warehouse, driven through rocky-operator-rocky.

A rocky.toml in Rocky's own format describes the demo (``tenant/region/source`` schemas,
``{tenant}_{source}`` target files); an overlay adds what rocky.toml has no key for (the DuckDB
memory cap and lock wait that plant quota-exceeded and transient, five tables, no in-run retries
so that Dagster's RetryPolicy does the retrying). After the first run, a watcher repairs the
three retryable causes, as an operator on call would: the lock is released, the broken file
removed, the oversized value trimmed. The query-rejected table (a view in the way) stays.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import yaml

from rocky_operator.demo.warehouse import PLANTED, build_warehouse, hold_lock

ROCKY_TOML = """\
# The demo warehouse as a Rocky user would describe it.
[adapter.warehouse]
type = "duckdb"
path = "warehouse.duckdb"

[pipeline.acme]
type = "replication"
strategy = "incremental"
timestamp_column = "_fivetran_synced"
metadata_columns = [{ name = "_loaded_by", type = "VARCHAR", value = "'rocky-operator'" }]

[pipeline.acme.source]
adapter = "warehouse"

[pipeline.acme.source.schema_pattern]
prefix = "src__"
separator = "__"
components = ["tenant", "region", "source"]

[pipeline.acme.target]
adapter = "warehouse"
catalog_template = "{tenant}_{source}"
schema_template = "staging__{region}"

[pipeline.acme.execution]
concurrency = 1
fail_fast = false

[state]
backend = "local"
"""

OVERLAY: dict[str, Any] = {
    "adapter": {"duckdb": {"memoryLimit": "32MB", "lockTimeoutSeconds": 1}},
    "source": {"tables": ["refunds", "tickets", "contacts", "disputes", "payouts"]},
    "retry": {k: {"maxRetries": 0} for k in ("transient", "connection-failed", "quota-exceeded")},
    "runner": {"activeDeadlineSeconds": 300},
}
PLANTED_KINDS = {"/".join(p.asset_key): p.failure_kind for p in PLANTED}
RETRYABLE = {"transient", "connection-failed", "quota-exceeded"}


@dataclass
class Scenario:
    directory: Path
    state: Path
    overlay: Path

    def runs(self) -> list[tuple[str, dict[str, Any]]]:
        """Each run's name and RunOutput, oldest first."""
        files = sorted((self.state / "runs").glob("*.json"), key=lambda p: p.stat().st_mtime)
        return [
            (p.stem, json.loads(p.read_text()))
            for p in files
            if not p.name.endswith(".manifest.json")
        ]

    def outputs(self) -> list[dict[str, Any]]:
        """The RunOutput of every run, oldest first."""
        return [output for _, output in self.runs()]


def prepare(tmp_path: Path) -> Scenario:
    built = build_warehouse(tmp_path / "warehouse")
    (built.directory / "rocky.toml").write_text(ROCKY_TOML)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump(OVERLAY))
    return Scenario(built.directory, built.directory / ".rocky-operator-state", overlay)


def _finished(latest: Path) -> bool:
    """The first run has ended (the record is written at the start, then at the end)."""
    try:
        return bool(json.loads(latest.read_text())["status"] != "Running")
    except (OSError, ValueError, KeyError):
        return False


def repair(directory: Path) -> None:
    (directory / "acme_zendesk.duckdb").unlink()
    with contextlib.closing(duckdb.connect(str(directory / "warehouse.duckdb"))) as conn:
        conn.execute("UPDATE src__acme__eu__stripe.disputes SET evidence = '' WHERE id = 1")


@contextlib.contextmanager
def planted_then_repaired(scenario: Scenario, deadline: float = 900.0) -> Iterator[None]:
    """Hold the transient lock during the first run; repair the retryable causes after it."""
    stop = threading.Event()
    stack = contextlib.ExitStack()
    stack.enter_context(hold_lock(scenario.directory / "acme_hubspot.duckdb"))
    latest = scenario.state / "latest" / "acme.json"

    def watch() -> None:
        end = time.monotonic() + deadline
        while not stop.is_set() and time.monotonic() < end:
            if _finished(latest):
                stack.close()
                repair(scenario.directory)
                return
            stop.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(timeout=30)
        stack.close()


@dataclass
class JobRun:
    result: Any
    messages: list[str]
    """Every log message of the Dagster run."""
    retries: list[str]
    """The ``dg.Failure`` description behind each retry the RetryPolicy granted."""


def _failure_messages(error: Any) -> list[str]:
    found = []
    while error is not None:
        if error.cls_name == "Failure":
            found.append(error.message.removeprefix("dagster._core.definitions.events.Failure: "))
        error = error.cause
    return [m.strip() for m in found]


def run_seed_job(defs: Any = None) -> JobRun:
    """Run the seed's asset job in-process; return the result and its log."""
    import dagster as dg
    from tests.compat import seed_dagster

    with dg.instance_for_test() as instance:
        job = (defs or seed_dagster.defs).resolve_job_def("replicate")
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        records = instance.all_logs(result.run_id)
        messages = [e.user_message for e in records if e.user_message]
        retries = [
            m
            for e in records
            if e.dagster_event is not None
            and e.dagster_event.event_type_value == "STEP_UP_FOR_RETRY"
            for m in _failure_messages(e.dagster_event.event_specific_data.error)
        ]
    return JobRun(result, messages, retries)


def check_outcome(scenario: Scenario, job: JobRun) -> None:
    """What the seed promises: the planted kinds in errors[*], one retry (dg.Failure +
    RetryPolicy) for the retryable ones that re-runs only the failed tables, an alert for
    query-rejected on both attempts, the asset materialized in the end."""
    runs = scenario.runs()
    assert len(runs) == 2, "one Dagster retry"
    (first_name, first), (_, second) = runs
    assert second["resumed_from"] == first_name
    kinds = {"/".join(e["asset_key"]): e["failure_kind"] for e in first["errors"]}
    assert kinds == PLANTED_KINDS
    assert first["tables_copied"] == 1  # payouts
    # The retry resumed the first run: only its four failed tables ran again.
    assert second["tables_copied"] + second["tables_failed"] == 4
    assert {"/".join(e["asset_key"]): e["failure_kind"] for e in second["errors"]} == {
        k: v for k, v in PLANTED_KINDS.items() if v == "query-rejected"
    }
    assert second["tables_copied"] == 3
    retryable = sum(1 for k in PLANTED_KINDS.values() if k in RETRYABLE)
    assert job.retries == [f"{retryable} table(s) failed transiently; retrying."], job.messages
    alerts = [m for m in job.messages if m.startswith("alert: ")]
    assert len(alerts) == 2, job.messages  # one per attempt
    assert all(" -- query-rejected -- " in a and "refunds" in a for a in alerts)
    assert job.result.success
    [mat] = job.result.asset_materializations_for_node("replicated_tables")
    assert mat.metadata["tables_copied"].value == 3
