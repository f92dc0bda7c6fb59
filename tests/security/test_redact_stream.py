"""What client libraries print goes through the redactor too (rocky_runner.redact_stream).

A connector that logs through :mod:`logging` with no handler (Python's last-resort
handler writes to ``sys.stderr``), a :mod:`warnings` message or a thread's traceback
bypassed the runner's own redaction and reached the pod log, and from there a
``FallbackToLogsOnError`` termination message. Checked on the stream (whatever the
write sizes and flushes) and on a real runner process whose copy makes a library
logger print the secret.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.leaks import find_leaks

from rocky_runner.redact import Redactor
from rocky_runner.redact_stream import MAX_PENDING, RedactingStream

SECRET = "pa'ss\"wörd\\-☃-SENTINEL-123"


def test_a_secret_written_a_character_at_a_time_is_masked() -> None:
    target = io.StringIO()
    stream = RedactingStream(target, Redactor([SECRET]))
    for char in f"login failed: {SECRET} (retrying)\nnext line\n":
        stream.write(char)
        stream.flush()  # a flush never emits half a line
    assert find_leaks({"s": SECRET}, [target.getvalue()]) == []
    assert target.getvalue() == "login failed: *** (retrying)\nnext line\n"


def test_an_unfinished_line_is_written_when_drained_and_a_huge_one_at_once() -> None:
    target = io.StringIO()
    stream = RedactingStream(target, Redactor([SECRET]))
    stream.write(f"partial {SECRET}")
    assert target.getvalue() == ""
    stream.drain()
    assert target.getvalue() == "partial ***"
    stream.write("x" * (MAX_PENDING + 1))
    assert len(target.getvalue()) == len("partial ***") + MAX_PENDING + 1


_LOGGING_ADAPTER = """
import logging, sys, warnings, threading
import rocky_runner.adapters.base as base
import rocky_runner.main as main

def open_adapter(settings, credentials, *, timeout_seconds):
    secret = credentials.require("ROCKY_SNOWFLAKE_PASSWORD")
    # What connectors do when nobody configured logging: the last-resort handler.
    logging.getLogger("snowflake.connector.network").error("login body: %r", {"p": secret})
    warnings.warn(f"insecure retry with {secret}")
    print("debug print", secret)
    def boom():
        raise RuntimeError("thread failed with " + secret.upper())
    worker = threading.Thread(target=boom)
    worker.start()
    worker.join()
    sys.stderr.write("half a line " + secret[:8])
    sys.stderr.flush()
    sys.stderr.write(secret[8:] + " rest\\n")
    raise PermissionError("refused")

base.open_adapter = open_adapter
sys.exit(main.run(__import__("os").environ))
"""


def test_library_output_of_a_runner_process_is_redacted(tmp_path: Path) -> None:
    result = tmp_path / "termination-log"
    task = {
        "asset_key": ["snowflake", "acme", "orders"],
        "source": {"schema": "SRC", "table": "ORDERS"},
        "target": {"schema": "STG", "table": "ORDERS"},
        "adapter": {"type": "snowflake", "snowflake": {"account": "a", "user": "u"}},
        "timeout_seconds": 30,
    }
    proc = subprocess.run(
        [sys.executable, "-c", _LOGGING_ADAPTER],
        env={
            **os.environ,
            "ROCKY_TASK": json.dumps(task),
            "ROCKY_RESULT_PATH": str(result),
            "ROCKY_SNOWFLAKE_PASSWORD": SECRET,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    # Each kind of library output did arrive, masked.
    for seen in ("login body", "insecure retry", "debug print", "thread failed", "half a line"):
        assert seen in proc.stderr + proc.stdout, (seen, proc.stderr)
    leaks = find_leaks({"s": SECRET}, [proc.stderr, proc.stdout, result.read_text()])
    assert leaks == [], [(leak.shape, leak.context(proc.stderr)) for leak in leaks]
