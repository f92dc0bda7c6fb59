"""DuckDB's ``LINE 1: ...`` context window, through a real runner process (issue 12).

No Secret value can reach DuckDB SQL through the operator today: DuckDB takes no
credential, and the task document is a runner pod's first environment variable, so no
``$(VAR)`` reference can expand a Secret into it. Should one ever get there (a future
DuckDB credential in an ATTACH path or a CREATE SECRET), the runner must still mask what
DuckDB's error context clips. So this test puts a credential the runner knows (its
Snowflake password variable) into the only user text that reaches DuckDB SQL, a metadata
column's value, at a range of offsets, so that the parser error's window cuts the
literal at different points: the result message and the log keep no fragment, while
the error is still DuckDB's (``LINE 1:`` shown).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
from tests.support.leaks import find_leaks

from rocky_runner.contract import ENV_SNOWFLAKE_PASSWORD, decode_result

SECRET = "quote'back\\slash\"-ünï☃-QZXJV-duck-123"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def test_a_clipped_secret_in_duckdb_sql_leaves_no_fragment(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE SCHEMA src__acme; CREATE TABLE src__acme.orders (id INT)")
        con.execute("INSERT INTO src__acme.orders VALUES (1)")
    procs = []
    # The error is at FROMM; DuckDB shows a window left of it, so the longer the text
    # between the literal and FROMM, the more of the literal's start is clipped away.
    for pad in range(0, 56, 4):
        value = f"{_literal(SECRET)} || '{'p' * pad}' FROMM"
        task = {
            "asset_key": ["duckdb", "acme", "orders"],
            "source": {"schema": "src__acme", "table": "orders"},
            "target": {"catalog": f"t{pad}", "schema": "stg", "table": "orders"},
            "strategy": "full_refresh",
            "metadata_columns": [{"name": "_tag", "type": "VARCHAR", "value": value}],
            "adapter": {"type": "duckdb", "duckdb": {"path": str(warehouse)}},
            "timeout_seconds": 60,
        }
        result = tmp_path / f"result-{pad}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROCKY_")}
        env |= {"ROCKY_TASK": json.dumps(task), "ROCKY_RESULT_PATH": str(result),
                ENV_SNOWFLAKE_PASSWORD: SECRET}  # fmt: skip
        procs.append((pad, result, subprocess.Popen(
            [sys.executable, "-m", "rocky_runner"], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))  # fmt: skip
    for pad, result, proc in procs:
        out, err = proc.communicate(timeout=120)
        message = decode_result(result.read_bytes())
        assert message.failure_kind == "query-rejected", (pad, message)
        assert "LINE 1: ..." in err, (pad, err[-2000:])
        leaks = find_leaks({"s": SECRET}, [out, err, result.read_text(errors="replace")])
        assert leaks == [], (pad, [(leak.shape, leak.context(err)) for leak in leaks])


def test_secret_sourced_runner_env_is_listed_for_redaction() -> None:
    """A run's own env from a Secret (a proxy password, say) is named in
    ROCKY_REDACT_ENV on its pods; plain values are not."""
    from rocky_operator.api.spec import RockyRunSpec
    from rocky_operator.logic.pod_manifest import RunnerDefaults, runner_pod_spec
    from rocky_runner.contract import ENV_REDACT_ENV

    spec = RockyRunSpec.model_validate({
        "adapter": {"type": "duckdb", "duckdb": {"path": "/data/w.duckdb"}},
        "source": {"schemaPattern": {"components": ["tenant"]}},
        "target": {"catalogTemplate": "t", "schemaTemplate": "s"},
        "runner": {"env": [
            {"name": "PROXY_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "p", "key": "k"}}},
            {"name": "AWS_KEY", "valueFrom": {"secretKeyRef": {"name": "a", "key": "k"}}},
            {"name": "HTTPS_PROXY", "value": "http://etl:$(PROXY_PASSWORD)@proxy:3128"},
            {"name": "REGION", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "r"}}},
        ]},
    })  # fmt: skip
    pod = runner_pod_spec(spec, RunnerDefaults(), first_env={"ROCKY_TASK": "{}"}, command=["x"])
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env[ENV_REDACT_ENV]["value"] == "AWS_KEY,PROXY_PASSWORD"
    plain = RockyRunSpec.model_validate({**spec.model_dump(by_alias=True), "runner": {}})
    pod = runner_pod_spec(plain, RunnerDefaults(), first_env={"ROCKY_TASK": "{}"}, command=["x"])
    assert ENV_REDACT_ENV not in {e["name"] for e in pod["containers"][0]["env"]}


_PROXY_ERROR = """
import sys
import rocky_runner.adapters.base as base
import rocky_runner.main as main

def open_adapter(settings, credentials, *, timeout_seconds):
    import os, logging
    proxy = os.environ["HTTPS_PROXY"]
    logging.getLogger("urllib3.connectionpool").warning("Retrying via %s", proxy)
    raise ConnectionError(f"ProxyError: Unable to connect to proxy {proxy}")

base.open_adapter = open_adapter
sys.exit(main.run(__import__("os").environ))
"""


def test_a_secret_sourced_env_value_is_redacted_by_the_runner(tmp_path: Path) -> None:
    """The runner masks the values ROCKY_REDACT_ENV names, also inside another variable
    that embeds them (a proxy URL built with $(PROXY_PASSWORD))."""
    password = "pr'ox\"y\\-pässwörd-☃-QZXJV"
    result = tmp_path / "result"
    task = {
        "asset_key": ["duckdb", "acme", "orders"],
        "source": {"schema": "src__acme", "table": "orders"},
        "target": {"schema": "stg", "table": "orders"},
        "adapter": {"type": "duckdb", "duckdb": {"path": str(tmp_path / "w.duckdb")}},
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROCKY_")}
    env |= {"ROCKY_TASK": json.dumps(task), "ROCKY_RESULT_PATH": str(result),
            "ROCKY_REDACT_ENV": "PROXY_PASSWORD", "PROXY_PASSWORD": password,
            "HTTPS_PROXY": f"http://etl:{password}@127.0.0.1:9"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", _PROXY_ERROR], env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    message = decode_result(result.read_bytes())
    assert message.failure_kind == "connection-failed", message
    assert "Unable to connect to proxy http://etl:***@127.0.0.1:9" in (message.error or "")
    assert "Retrying via" in proc.stderr
    leaks = find_leaks({"p": password}, [proc.stdout, proc.stderr, result.read_text()])
    assert leaks == [], [(leak.shape, leak.context(proc.stderr)) for leak in leaks]
