"""``rocky-runner``: copy one table, classify any failure, write the result message.

Everything a pod gives the runner is in its environment (``contract.ENV_*``); what it
gives back is the encoded :class:`~rocky_runner.contract.TableResult` at
``$ROCKY_RESULT_PATH`` and an exit code (0 copied, 10..16 per failure kind). This is
the only place that catches bare ``Exception``: whatever goes wrong becomes a
classified, redacted result, and the full traceback goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ValidationError

from rocky_runner.contract import (
    DEFAULT_RESULT_PATH,
    ENV_RESULT_PATH,
    ENV_TASK,
    EXIT_BAD_TASK,
    FailureKind,
    TableResult,
    TableTask,
    encode_result,
    exit_code_for,
)
from rocky_runner.errors import ClassifiedError, CopyTimeoutError, NotDurableError
from rocky_runner.redact import Redactor
from rocky_runner.redact_stream import redacted_std_streams
from rocky_runner.result_file import write_result_file
from rocky_runner.watchdog import Watchdog

#: How long a cancelled copy may take to stop before the runner exits without it.
STOP_GRACE_SECONDS = 10.0

#: ``time.monotonic()`` when this module was imported: the start where /proc cannot say.
_IMPORTED = time.monotonic()


def process_started() -> float:
    """``time.monotonic()`` at this process's start, from the kernel's record of it, so
    ``duration_ms`` includes interpreter start-up and imports (issue 15: the table's real
    cost). Falls back to this module's import time where /proc cannot say."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            stat = handle.read()
        # Field 22 (starttime, clock ticks since boot); fields after "(comm)" start at 3.
        start_ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED
    if not 0 <= age < 86_400:
        return _IMPORTED
    return min(time.monotonic() - age, _IMPORTED)


class BadTaskError(ValueError):
    """``ROCKY_TASK`` is missing or not a valid TableTask."""


class StoppedError(ClassifiedError):
    """The runner was told to stop (SIGTERM: pod deleted or evicted). Transient."""

    failure_kind = FailureKind.TRANSIENT


class _Output:
    """Everything the runner emits, redacted, and the result written exactly once."""

    def __init__(self, result_path: str, redactor: Redactor, started: float) -> None:
        self.result_path = result_path
        self.redact = redactor
        self.started = started
        self._written = threading.Lock()
        self._done = False
        #: The copied result once the copy committed: from then on the table is copied,
        #: whatever stop signal comes (issue 10 case 2).
        self.committed: TableResult | None = None

    def log(self, text: str) -> None:
        line = self.redact(text)
        try:
            sys.stderr.write(f"rocky-runner: {line}\n")
            sys.stderr.flush()
        except (OSError, ValueError, UnicodeError):
            pass  # a closed or broken stderr must not stop the result being written

    def finish(self, result: TableResult, kind: FailureKind | None) -> int:
        """Write the result (first caller wins) and return the exit code."""
        with self._written:
            if self._done:
                return exit_code_for(kind)
            self._done = True
        result.duration_ms = int((time.monotonic() - self.started) * 1000)
        data = encode_result(self._redacted(result))
        try:
            write_result_file(self.result_path, data)
        except OSError as exc:
            self.log(f"could not write the result message to {self.result_path}: {exc}")
        self.log(f"result: {data.decode('ascii')}")
        return exit_code_for(kind)

    def _redacted(self, result: TableResult) -> TableResult:
        """The result with a secret masked in every string it holds (keys included)."""
        return result.model_copy(
            update={
                "asset_key": [self.redact(p) for p in result.asset_key],
                "error": None if result.error is None else self.redact(result.error),
                "metadata": self._redact_value(result.metadata),
            }
        )

    def _redact_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact(str(k)): self._redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._redact_value(v) for v in value]
        return value


def _salvage_asset_key(raw: str | None) -> list[str]:
    """The asset key of a task document we cannot use, if one can be read from it."""
    try:
        doc = json.loads(raw or "")
    except ValueError:
        return []
    key = doc.get("asset_key") if isinstance(doc, dict) else None
    if isinstance(key, list) and all(isinstance(p, str) for p in key):
        return key
    return []


def read_task(raw: str | None) -> TableTask:
    """Parse ``ROCKY_TASK``; :class:`BadTaskError` naming every problem."""
    if not raw:
        raise BadTaskError(f"{ENV_TASK} is not set: the runner needs one table task as JSON")
    try:
        return TableTask.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(document)'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        )
        raise BadTaskError(f"{ENV_TASK} is not a valid table task: {problems}") from None


def _failed(asset_key: list[str], kind: FailureKind, error: str) -> TableResult:
    return TableResult(asset_key=asset_key, outcome="failed", failure_kind=kind, error=error)


def _text(exc: BaseException) -> str:
    """``Type: message``, even for an exception whose ``__str__`` fails."""
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not cost the result message
        message = "<message unavailable>"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _describe(exc: BaseException) -> str:
    """One line for the result message: the outer error, and the root cause when it
    differs (that is where a wrapped connector names the problem)."""
    root, seen = exc, {id(exc)}
    while root.__cause__ is not None and id(root.__cause__) not in seen:
        root = root.__cause__
        seen.add(id(root))
    if root is exc:
        return _text(exc)
    return f"{_text(exc)} (caused by {_text(root)})"


def _classify(exc: BaseException) -> FailureKind:
    """The failure kind; a classifier that trips over an odd exception means unknown."""
    from rocky_runner.classify import classify_exception

    try:
        return classify_exception(exc)
    except Exception:
        return FailureKind.UNKNOWN


def _copy(task: TableTask, out: _Output, watchdog: Watchdog) -> TableResult:
    # Imported here: the adapter layer and its client libraries load only for a real copy.
    from rocky_runner.adapters.base import Credentials, open_adapter

    copy_started = time.monotonic()
    credentials = Credentials.from_env()
    out.redact = out.redact.extended(credentials.secret_values())
    adapter = open_adapter(task.adapter, credentials, timeout_seconds=task.timeout_seconds)
    watchdog.set_cancel(adapter.cancel)
    try:
        stats = adapter.copy_table(task)
    except BaseException:
        watchdog.set_cancel(None)
        _close_after_failure(adapter, out)
        raise
    # Committed. A stop signal from here on changes nothing: the table is copied.
    watchdog.set_cancel(None)
    result = TableResult(
        asset_key=task.asset_key,
        outcome="copied",
        rows_copied=stats.rows_copied,
        metadata=stats.metadata(task.strategy),
    )
    result.metadata["copy_ms"] = _ms_since(copy_started)
    out.committed = result
    try:
        # DuckDB checkpoints here: a copy is reported only once closing succeeded.
        adapter.close()
    except Exception as exc:
        kind = _classify(exc)
        error = NotDurableError(
            f"the copy committed, but closing the connection (checkpoint) failed, so it may "
            f"not be durable: {_describe(exc)}",
            kind=FailureKind.TRANSIENT if kind is FailureKind.UNKNOWN else kind,
        )
        raise error from exc
    result.metadata["copy_ms"] = _ms_since(copy_started)
    for warning in stats.warnings:
        out.log(f"warning: {warning}")
    return result


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _close_after_failure(adapter: Any, out: _Output) -> None:
    """Close after a failed copy: the copy's own error is the one reported."""
    try:
        adapter.close()
    except Exception as exc:
        out.log(f"closing the connection after the failure also failed: {_text(exc)}")


def _stopped_error(reason: str, task: TableTask, cause: BaseException | None) -> ClassifiedError:
    if reason == "timeout":
        error: ClassifiedError = CopyTimeoutError(
            f"copy did not finish within timeout_seconds={task.timeout_seconds:g}"
        )
    else:
        error = StoppedError(f"runner stopped by {reason} before the copy finished")
    error.__cause__ = cause
    return error


def run(environ: Mapping[str, str]) -> int:
    """Run one task from ``environ``; returns the exit code. Never raises ``Exception``.

    What the client libraries print on stdout / stderr meanwhile is redacted too
    (:func:`~rocky_runner.redact_stream.redacted_std_streams`)."""
    out = _Output(
        environ.get(ENV_RESULT_PATH) or DEFAULT_RESULT_PATH,
        Redactor.from_env(environ),
        process_started(),
    )
    # A lambda: the redactor grows once the credentials are read.
    with redacted_std_streams(lambda text: out.redact(text)):
        return _run(environ, out)


def _run(environ: Mapping[str, str], out: _Output) -> int:
    raw_task = environ.get(ENV_TASK)
    try:
        task = read_task(raw_task)
    except BadTaskError as exc:
        out.log(str(exc))
        result = _failed(_salvage_asset_key(raw_task), FailureKind.UNKNOWN, str(exc))
        out.finish(result, FailureKind.UNKNOWN)
        return EXIT_BAD_TASK

    out.log(
        f"copying {task.source.full_name()} -> {task.target.full_name()} "
        f"({task.strategy}, adapter {task.adapter.get('type')!r})"
    )

    def on_stuck(reason: str) -> None:
        committed = out.committed
        if committed is not None:
            # COMMIT wrote (and synced) DuckDB's write-ahead log: the rows are there even
            # though the checkpoint of close() did not finish in time.
            out.log(
                f"stopped by {reason} after the copy committed; closing did not finish "
                f"within {STOP_GRACE_SECONDS:g} s, exiting"
            )
            os._exit(out.finish(committed, None))
        error = _stopped_error(reason, task, None)
        out.log(f"{error}; the copy did not stop within {STOP_GRACE_SECONDS:g} s, exiting")
        failed = _failed(task.asset_key, error.failure_kind, str(error))
        failed.stopped_by = _stop_reason(reason)
        os._exit(out.finish(failed, error.failure_kind))

    watchdog = Watchdog(task.timeout_seconds, grace_seconds=STOP_GRACE_SECONDS, on_stuck=on_stuck)
    try:
        with watchdog:
            result = _copy(task, out, watchdog)
    except Exception as exc:  # the runner's one top-level catch: classify, never crash
        stopped = watchdog.reason is not None and out.committed is None
        if stopped and not isinstance(exc, ClassifiedError):
            exc = _stopped_error(str(watchdog.reason), task, exc)
        kind = _classify(exc)
        out.log(f"copy failed ({kind}):\n" + "".join(traceback.format_exception(exc)).rstrip())
        failed = _failed(task.asset_key, kind, _describe(exc))
        if stopped and kind is FailureKind.TRANSIENT:
            failed.stopped_by = _stop_reason(str(watchdog.reason))
        return out.finish(failed, kind)
    if watchdog.reason is not None:
        out.log(f"{watchdog.reason} arrived after the copy committed: the table is copied")
    out.log(f"copied {result.rows_copied} rows into {result.metadata['target_table_full_name']}")
    return out.finish(result, None)


StopReason = Literal["SIGTERM", "SIGINT", "timeout"]
_STOP_REASONS: dict[str, StopReason] = {
    "SIGTERM": "SIGTERM",
    "SIGINT": "SIGINT",
    "timeout": "timeout",
}


def _stop_reason(reason: str) -> StopReason | None:
    """The result's ``stopped_by`` for a watchdog reason."""
    return _STOP_REASONS.get(reason)


def main(argv: list[str] | None = None) -> int:
    """Console script entry point (``rocky-runner``); arguments are not used. A pod
    with ``ROCKY_DISCOVERY`` set is a discovery pod (:mod:`rocky_runner.discovery_task`)."""
    del argv
    if os.environ.get("ROCKY_DISCOVERY"):
        from rocky_runner.discovery_task import run_discovery

        return run_discovery(os.environ)
    return run(os.environ)
