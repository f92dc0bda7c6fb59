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
