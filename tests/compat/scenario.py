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

    def outputs(self) -> list[dict[str, Any]]:
        """The RunOutput of every run, oldest first."""
        runs = sorted((self.state / "runs").glob("*.json"), key=lambda p: p.stat().st_mtime)
        return [json.loads(p.read_text()) for p in runs if not p.name.endswith(".manifest.json")]


def prepare(tmp_path: Path) -> Scenario:
    built = build_warehouse(tmp_path / "warehouse")
    (built.directory / "rocky.toml").write_text(ROCKY_TOML)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump(OVERLAY))
    return Scenario(built.directory, built.directory / ".rocky-operator-state", overlay)


def _repair(directory: Path) -> None:
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
            if latest.exists():
                stack.close()
                _repair(scenario.directory)
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


def run_seed_job() -> tuple[Any, list[str]]:
    """Run the seed's asset job in-process; return the result and its log messages."""
    import dagster as dg
    from tests.compat import seed_dagster

    with dg.instance_for_test() as instance:
        result = seed_dagster.defs.resolve_job_def("replicate").execute_in_process(
            instance=instance, raise_on_error=False
        )
        messages = [e.user_message for e in instance.all_logs(result.run_id) if e.user_message]
    return result, messages


def check_outcome(scenario: Scenario, result: Any, messages: list[str]) -> None:
    """What the seed promises: the planted kinds in errors[*], a retry on the retryable ones
    that re-runs only the failed tables, an alert for query-rejected, the asset done."""
    first, second = scenario.outputs()[:2]
    assert len(scenario.outputs()) == 2, "one Dagster retry"
    kinds = {"/".join(e["asset_key"]): e["failure_kind"] for e in first["errors"]}
    assert kinds == PLANTED_KINDS
    assert first["tables_copied"] == 1  # payouts
    # The retry resumed the first run: only its four failed tables ran again.
    assert second["tables_copied"] + second["tables_failed"] == 4
    assert {"/".join(e["asset_key"]): e["failure_kind"] for e in second["errors"]} == {
        k: v for k, v in PLANTED_KINDS.items() if v == "query-rejected"
    }
    assert second["tables_copied"] == 3
    retry_failure = [m for m in messages if "failed transiently; retrying" in m]
    assert retry_failure, messages
    alerts = [m for m in messages if m.startswith("alert: ")]
    assert alerts, messages
    assert all("query-rejected" in a and "refunds" in a for a in alerts)
    assert result.success
    [mat] = result.asset_materializations_for_node("replicated_tables")
    assert mat.metadata["tables_copied"].value == 3
