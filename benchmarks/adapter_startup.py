"""Start-up cost per adapter: process start to adapter ready, and the import cost.

Prints figures (not a timed test). For each adapter type a fresh interpreter imports
``rocky_runner.adapters.base``, calls ``open_adapter`` against a local endpoint (a
DuckDB file; fakesnow's server; the fake Databricks SQL warehouse; the fake BigQuery
REST API with a service-account token from its ``/token``), lists the schemas, and
reports. The parent measures spawn -> "ready" wall time; the child reports how long
importing the adapter module (its client library included) took and which heavy
libraries ended up loaded. ``python -c pass`` is the baseline.

Needs the test extra (the fakes live in ``tests/fakes``).

    python benchmarks/adapter_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

HEAVY = ("snowflake", "databricks", "google", "pyarrow", "sqlglot", "thrift", "pandas", "numpy")

CHILD = r"""
import importlib, json, sys, time
t0 = time.perf_counter()
from rocky_runner.adapters.base import ADAPTER_MODULES, Credentials, open_adapter
settings, creds, overrides = (json.loads(a) for a in sys.argv[1:4])
t1 = time.perf_counter()
module = importlib.import_module(ADAPTER_MODULES[settings["type"]])
t2 = time.perf_counter()
if overrides:  # the local endpoint's CA: passed to the adapter module directly
    block = settings[settings["type"]]
    adapter = module.open_adapter(
        block, Credentials(creds), timeout_seconds=30, connect_overrides=overrides
    )
else:
    adapter = open_adapter(settings, Credentials(creds), timeout_seconds=30)
adapter.discover_schemas()
t3 = time.perf_counter()
sys.stdout.write("READY " + json.dumps({
    "base_import_s": t1 - t0, "adapter_import_s": t2 - t1, "open_and_list_s": t3 - t2,
    "heavy": sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[4]))),
}) + "\n")
sys.stdout.flush()
adapter.close()
"""


@contextmanager
def _endpoints(
    tmp: Path,
) -> Iterator[dict[str, tuple[dict[str, Any], dict[str, str], dict[str, Any]]]]:
    """Adapter settings, credentials and connect overrides per type, endpoints running."""
    import duckdb

    from rocky_runner import contract as c

    db = tmp / "bench.duckdb"
    with duckdb.connect(str(db)) as conn:
        conn.execute("CREATE SCHEMA src__bench; CREATE TABLE src__bench.t (id INT)")
    with ExitStack() as stack:
        from fakes.bigquery import bigquery_server, service_account_json
        from fakes.databricks import CA_FILE, databricks_warehouse
        from fakes.snowflake import fakesnow_server

        # fakesnow logs every login at INFO; keep the figures readable.
        logging.getLogger("fakesnow.server").setLevel(logging.WARNING)
        sf = stack.enter_context(fakesnow_server())
        import snowflake.connector

        conn = snowflake.connector.connect(**sf)
        conn.cursor().execute("CREATE DATABASE BENCH")
        conn.close()
        dbx_server, _service = stack.enter_context(databricks_warehouse())
        bq_server, bq_service = stack.enter_context(bigquery_server("bench"))
        bq_service.sql('CREATE SCHEMA "bench".src__bench')
        yield {
            "duckdb": ({"type": "duckdb", "duckdb": {"path": str(db)}}, {}, {}),
            "snowflake": (
                {
                    "type": "snowflake",
                    "snowflake": {
                        "account": "fakesnow",
                        "user": "fake",
                        "database": "BENCH",
                        "host": "127.0.0.1",
                        "port": sf["port"],
                        "protocol": "http",
                        "passwordSecretRef": {"name": "s", "key": "k"},
                    },
                },
                {c.ENV_SNOWFLAKE_PASSWORD: sf["password"]},
                {},
            ),
            "databricks": (
                {
                    "type": "databricks",
                    "databricks": {
                        "host": "127.0.0.1",
                        "httpPath": "/sql/1.0/warehouses/bench",
                        "port": dbx_server.port,
                        "catalog": "memory",
                        "tokenSecretRef": {"name": "s", "key": "k"},
                    },
                },
                {c.ENV_DATABRICKS_TOKEN: "bench-token"},
                {"_tls_trusted_ca_file": CA_FILE},
            ),
            "bigquery": (
                {
                    "type": "bigquery",
                    "bigquery": {
                        "project": "bench",
                        "apiEndpoint": bq_server.url,
                        "credentialsSecretRef": {"name": "s", "key": "k"},
                    },
                },
                {c.ENV_BIGQUERY_CREDENTIALS: service_account_json(f"{bq_server.url}/token")},
                {},
            ),
        }


def _run_child(args: list[str], env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY "):
            ready = time.perf_counter() - start
            report: dict[str, Any] = json.loads(line[len("READY ") :])
            proc.wait(timeout=60)
            return ready, report
    _out, err = proc.communicate(timeout=60)
    raise RuntimeError(f"child failed: {err[-2000:]}")


def _baseline(repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    warnings.simplefilter("ignore")
    env = dict(os.environ, SNOWFLAKE_DISABLE_PLATFORM_DETECTION="true")
    baseline = _baseline(options.repeat)
    print(f"python -c pass: {baseline * 1000:.0f} ms (median of {options.repeat})")
    print(
        f"{'adapter':<11} {'start->ready':>13} {'adapter import':>15} {'open+list':>10}  "
        "heavy libraries loaded"
    )
    with tempfile.TemporaryDirectory() as tmp, _endpoints(Path(tmp)) as endpoints:
        for name, (settings, creds, overrides) in endpoints.items():
            ready_times, imports, opens = [], [], []
            heavy: list[str] = []
            for _ in range(options.repeat):
                ready, report = _run_child(
                    [json.dumps(a) for a in (settings, creds, overrides, HEAVY)], env
                )
                ready_times.append(ready)
                imports.append(report["adapter_import_s"])
                opens.append(report["open_and_list_s"])
                heavy = report["heavy"]
            print(
                f"{name:<11} {statistics.median(ready_times) * 1000:>10.0f} ms "
                f"{statistics.median(imports) * 1000:>12.0f} ms "
                f"{statistics.median(opens) * 1000:>7.0f} ms  {', '.join(heavy) or '-'}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
