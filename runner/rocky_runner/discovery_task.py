"""``rocky-runner`` in a discovery pod: list the run's tables, answer through the log.

Started like a copy runner (same image, Secret references, security context), with
``ROCKY_DISCOVERY`` instead of ``ROCKY_TASK``. The table list goes to stdout in the
framed lines of :mod:`rocky_runner.discovery_channel`; the summary (or the classified,
redacted failure) to the result file, which the kubelet turns into the termination
message. Exit code 0 when the list is complete, else the failure kind's code.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Mapping
from typing import TextIO

from pydantic import ValidationError

from rocky_runner.contract import (
    DEFAULT_RESULT_PATH,
    ENV_RESULT_PATH,
    EXIT_BAD_TASK,
    FailureKind,
    exit_code_for,
)
from rocky_runner.discovery_channel import (
    ENV_DISCOVERY,
    DiscoveryTask,
    encode_tables,
    failure_summary,
)
from rocky_runner.redact import Redactor
from rocky_runner.redact_stream import redacted_std_streams
from rocky_runner.result_file import write_result_file


def _write_summary(path: str, doc: Mapping[str, object]) -> None:
    write_result_file(path, json.dumps(doc, ensure_ascii=True).encode("ascii"))


def run_discovery(
    environ: Mapping[str, str], stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Discover the tables of ``environ``'s task; returns the exit code, never raises.

    What the client libraries print on stderr meanwhile is redacted too; stdout is the
    framed answer and is left alone."""
    redactor = [Redactor.from_env(environ)]
    with redacted_std_streams(lambda text: redactor[0](text), stdout=False):
        return _run_discovery(environ, stdout or sys.stdout, stderr or sys.stderr, redactor)


def _run_discovery(
    environ: Mapping[str, str], out: TextIO, err: TextIO, redactor: list[Redactor]
) -> int:
    result_path = environ.get(ENV_RESULT_PATH) or DEFAULT_RESULT_PATH
    redact = redactor[0]
    try:
        task = DiscoveryTask.model_validate_json(environ.get(ENV_DISCOVERY) or "")
    except ValidationError as exc:
        message = f"{ENV_DISCOVERY} is not a valid discovery task: {exc.error_count()} problems"
        err.write(redact(message) + "\n")
        _write_summary(result_path, failure_summary(FailureKind.UNKNOWN.value, message))
        return EXIT_BAD_TASK
    # Imported here: the adapter layer loads only once the task is known.
    from rocky_runner.adapters.base import Credentials
    from rocky_runner.classify import classify_exception
    from rocky_runner.discovery import discover

    try:
        credentials = Credentials.from_env(environ)
        redact = redactor[0] = redact.extended(credentials.secret_values())
        found = discover(
            task.adapter,
            prefix=task.prefix,
            separator=task.separator,
            components=task.components,
            catalog=task.catalog,
            tables=task.tables,
            include_views=task.include_views,
            credentials=credentials,
        )
    except Exception as exc:  # the entry point's one catch: classify, redact, report
        try:
            kind = classify_exception(exc)
        except Exception:
            kind = FailureKind.UNKNOWN
        trace = "".join(traceback.format_exception(exc)).rstrip()
        err.write(redact(f"discovery failed ({kind.value}):\n{trace}") + "\n")
        err.flush()
        _write_summary(
            result_path, failure_summary(kind.value, redact(f"{type(exc).__name__}: {exc}"))
        )
        return exit_code_for(kind)
    lines, summary = encode_tables(found.tables, found.excluded)
    for line in lines:
        out.write(line + "\n")
    out.flush()
    err.write(
        f"discovered {summary['tables']} tables, {summary['excluded']} excluded "
        f"({summary['bytes']} bytes packed)\n"
    )
    err.flush()
    _write_summary(result_path, summary)
    return 0
