"""Lean connector imports (issue 15 goal 3): a remote copy loads no unused heavy extra.

For Snowflake, BigQuery and Databricks a fresh interpreter runs the runner's entry
(``rocky_runner.main.run``, what ``python -m rocky_runner`` calls) on a task against the
local fake, copies the table through the real client library, and then reports which
heavy packages it had loaded. The dev venv has all of them installed (pandas, pyarrow,
numpy, boto3, grpc), so only the adapters' own hiding (:mod:`rocky_runner.adapters.
lean_import`) keeps them out. Databricks keeps pandas / numpy: ``databricks.sql.client``
imports pandas unconditionally.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from rocky_runner import contract as c

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

pytestmark = [
    pytest.mark.slow,  # each case starts a runner that imports a client SDK
    # fakesnow's server (in this process) reads DuckDB results as Arrow.
    pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning"),
]

HEAVY = ("pandas", "pyarrow", "numpy", "boto3", "botocore", "grpc", "grpc_status", "db_dtypes")

#: Heavy packages each adapter's copy must not load, and those it does load and why.
FORBIDDEN = {
    "snowflake": set(HEAVY),
    "bigquery": set(HEAVY),
    "databricks": set(HEAVY) - {"pandas", "numpy"},  # databricks.sql.client: `import pandas`
}

RUNNER = r"""
import json, os, sys
from rocky_runner.main import run
code = run(os.environ)
loaded = {m.split(".")[0] for m, module in sys.modules.items() if module is not None}
heavy = set(json.loads(sys.argv[1]))
print("LOADED " + json.dumps({"code": code, "loaded": sorted(loaded & heavy)}))
"""


@contextmanager
def _snowflake() -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    from fakes.snowflake import fakesnow_adapter, fakesnow_server

    with fakesnow_server() as kwargs:
        import snowflake.connector

        conn = snowflake.connector.connect(**kwargs)
        for statement in (
            "CREATE DATABASE LEANDB",
            "CREATE SCHEMA LEANDB.SRC",
            "CREATE TABLE LEANDB.SRC.T (ID INT, _FIVETRAN_SYNCED TIMESTAMP)",
            "INSERT INTO LEANDB.SRC.T VALUES (1, '2024-01-01'), (2, '2024-01-02')",
        ):
            conn.cursor().execute(statement)
        conn.close()
        settings = fakesnow_adapter(kwargs["port"], "LEANDB", ("s", "k"))
        yield settings, {c.ENV_SNOWFLAKE_PASSWORD: kwargs["password"]}


@contextmanager
def _bigquery() -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    from fakes.bigquery import bigquery_adapter, bigquery_server, service_account_json

    with bigquery_server("lean") as (server, service):
        service.sql(
            'CREATE SCHEMA "lean".src; '
            'CREATE TABLE "lean".src.t (id BIGINT, _fivetran_synced TIMESTAMP); '
            "INSERT INTO \"lean\".src.t VALUES (1, '2024-01-01'), (2, '2024-01-02')"
        )
        settings = bigquery_adapter(server.url, "lean", ("s", "k"))
        yield settings, {c.ENV_BIGQUERY_CREDENTIALS: service_account_json(f"{server.url}/token")}


@contextmanager
def _databricks() -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    from fakes.databricks import CA_FILE, databricks_warehouse

    with databricks_warehouse() as (server, service):
        service.sql(
            "ATTACH ':memory:' AS lean; CREATE SCHEMA lean.src; "
            "CREATE TABLE lean.src.t (id INTEGER, _fivetran_synced TIMESTAMP); "
            "INSERT INTO lean.src.t VALUES (1, '2024-01-01'), (2, '2024-01-02')"
        )
        settings = {
            "type": "databricks",
            "databricks": {
                "host": "127.0.0.1",
                "httpPath": "/sql/1.0/warehouses/lean",
                "port": server.port,
                "catalog": "lean",
                "tokenSecretRef": {"name": "s", "key": "k"},
            },
        }
        # The runner takes no connector overrides: the fake's CA through the default paths.
        yield settings, {c.ENV_DATABRICKS_TOKEN: "lean-token", "SSL_CERT_FILE": CA_FILE}


FAKES = {"snowflake": _snowflake, "bigquery": _bigquery, "databricks": _databricks}


@pytest.mark.parametrize("adapter", sorted(FAKES))
def test_runner_copy_loads_no_unused_heavy_extra(adapter: str, tmp_path: Path) -> None:
    with FAKES[adapter]() as (settings, secrets):
        schema, table = ("SRC", "T") if adapter == "snowflake" else ("src", "t")
        task = {
            "asset_key": ["lean", adapter],
            "source": {"schema": schema, "table": table},
            "target": {"schema": "staging", "table": table},
            "strategy": "full_refresh",
            "timeout_seconds": 60,
            "adapter": settings,
        }
        result_path = tmp_path / "result"
        env = {
            **os.environ,
            **secrets,
            c.ENV_TASK: json.dumps(task),
            c.ENV_RESULT_PATH: str(result_path),
            "SNOWFLAKE_DISABLE_PLATFORM_DETECTION": "true",
        }
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, json.dumps(HEAVY)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1].removeprefix("LOADED "))
    result = c.decode_result(result_path.read_bytes())
    assert (report["code"], result.outcome, result.rows_copied) == (0, "copied", 2), proc.stderr
    loaded = set(report["loaded"])
    assert not loaded & FORBIDDEN[adapter], f"{adapter} copy loaded {sorted(loaded)}"
    if adapter == "databricks":
        # Not by choice: the client imports pandas unconditionally. If this fails, a newer
        # connector stopped doing so: tighten FORBIDDEN.
        assert "pandas" in loaded


@pytest.mark.parametrize("adapter", sorted(FAKES))
def test_hidden_extras_stay_importable_afterwards(adapter: str) -> None:
    """The hiding ends with the adapter's import: the process can still import them."""
    code = (
        f"import rocky_runner.adapters.{adapter} as m, importlib, sys\n"
        "import importlib.util\n"
        "for name in m.UNUSED_EXTRAS:\n"
        "    assert sys.modules.get(name, 1) is not None, name\n"
        "    if importlib.util.find_spec(name) is not None:\n"
        "        importlib.import_module(name)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
