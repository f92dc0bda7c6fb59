"""The runner process, as a pod starts it, on Snowflake and BigQuery tasks.

``python -m rocky_runner`` gets ``ROCKY_TASK`` and the credential variable, copies
the table through the real client against the local fake, writes the result
message and exits 0; a refused login ends with exit code 11 and an auth-failed
message; the secret never appears in the result or on stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.bigquery import bigquery_adapter, bigquery_server, service_account_json
from fakes.snowflake import fakesnow_adapter, fakesnow_server, gs_error, snowflake_stub
from rocky_runner.contract import (
    ENV_BIGQUERY_CREDENTIALS,
    ENV_RESULT_PATH,
    ENV_SNOWFLAKE_PASSWORD,
    ENV_TASK,
    EXIT_CODE_BY_KIND,
    FailureKind,
    decode_result,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning"),
    # Each runner process imports a client SDK (and pandas / pyarrow): seconds apiece.
    pytest.mark.slow,
]

PASSWORD = "s3cr3t-Pa55word-for-the-redaction-check"


def _run(task: dict[str, Any], secrets: dict[str, str], tmp: Path) -> tuple[int, Any, str]:
    result = tmp / "termination-log"
    env = {
        **os.environ,
        ENV_TASK: json.dumps(task),
        ENV_RESULT_PATH: str(result),
        "SNOWFLAKE_DISABLE_PLATFORM_DETECTION": "true",
        **secrets,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "rocky_runner"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, decode_result(result.read_bytes()), proc.stderr


def _snowflake_task(port: int, database: str) -> dict[str, Any]:
    return {
        "asset_key": ["snowflake", "acme", "orders"],
        "source": {"schema": "SRC__ACME", "table": "ORDERS"},
        "target": {"catalog": database, "schema": "STAGING", "table": "ORDERS"},
        "strategy": "incremental",
        "timestamp_column": "_FIVETRAN_SYNCED",
        "timeout_seconds": 60,
        "adapter": fakesnow_adapter(port, database),
    }


@pytest.fixture(scope="module")
def snowflake() -> Iterator[dict[str, Any]]:
    with fakesnow_server() as kwargs:
        import snowflake.connector

        conn = snowflake.connector.connect(**kwargs)
        cur = conn.cursor()
        cur.execute("CREATE DATABASE RUNNERDB")
        cur.execute("CREATE SCHEMA RUNNERDB.SRC__ACME")
        cur.execute("CREATE TABLE RUNNERDB.SRC__ACME.ORDERS (ID INT, _FIVETRAN_SYNCED TIMESTAMP)")
        cur.execute(
            "INSERT INTO RUNNERDB.SRC__ACME.ORDERS VALUES (1, '2024-01-01'), (2, '2024-01-02')"
        )
        conn.close()
        yield kwargs


def test_snowflake_copy_through_the_runner_process(
    snowflake: dict[str, Any], tmp_path: Path
) -> None:
    code, result, stderr = _run(
        _snowflake_task(snowflake["port"], "RUNNERDB"),
        {ENV_SNOWFLAKE_PASSWORD: snowflake["password"]},
        tmp_path,
    )
    assert code == 0, stderr
    assert result.outcome == "copied"
    assert result.rows_copied == 2
    assert result.metadata["target_table_full_name"] == "RUNNERDB.STAGING.ORDERS"
    assert result.metadata["watermark"] == "2024-01-02T00:00:00"


def test_snowflake_refused_login_exits_auth_failed(tmp_path: Path) -> None:
    refused = gs_error("390100", f"Incorrect username or password ({PASSWORD}).")
    with snowflake_stub(login=refused) as stub:
        code, result, stderr = _run(
            _snowflake_task(stub.port, "ANY"), {ENV_SNOWFLAKE_PASSWORD: PASSWORD}, tmp_path
        )
    assert code == EXIT_CODE_BY_KIND[FailureKind.AUTH_FAILED]
    assert result.failure_kind is FailureKind.AUTH_FAILED
    assert "390100" in (result.error or "")
    assert PASSWORD not in (result.error or "")
    assert PASSWORD not in stderr


def test_bigquery_copy_and_missing_table_through_the_runner_process(tmp_path: Path) -> None:
    with bigquery_server("rocky-test") as (server, service):
        service.sql(
            'CREATE SCHEMA "rocky-test".src; '
            'CREATE TABLE "rocky-test".src.orders (id BIGINT, _fivetran_synced TIMESTAMP); '
            "INSERT INTO \"rocky-test\".src.orders VALUES (1, '2024-01-01')"
        )
        task: dict[str, Any] = {
            "asset_key": ["bigquery", "orders"],
            "source": {"schema": "src", "table": "orders"},
            "target": {"schema": "staging", "table": "orders"},
            "strategy": "full_refresh",
            "timeout_seconds": 30,
            "adapter": bigquery_adapter(server.url, "rocky-test"),
        }
        secrets = {ENV_BIGQUERY_CREDENTIALS: service_account_json(f"{server.url}/token")}
        code, result, stderr = _run(task, secrets, tmp_path)
        assert code == 0, stderr
        assert (result.outcome, result.rows_copied) == ("copied", 1)
        task["source"]["table"] = "nope"
        code, result, _stderr = _run(task, secrets, tmp_path)
    assert code == EXIT_CODE_BY_KIND[FailureKind.NOT_FOUND]
    assert result.failure_kind is FailureKind.NOT_FOUND
