"""What a finished RockyRun comes back as: rocky-sdk's RunResult plus ``rocky run``'s exit code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rocky_operator.logic.run_output import EXIT_CODES, STATUS_BY_WIRE


class RockyClientError(Exception):
    """Base of the client's errors."""


class RunTimeoutError(RockyClientError):
    """The run did not finish within the timeout; it keeps running (delete it to stop it)."""

    def __init__(self, name: str, timeout: float, phase: str | None) -> None:
        super().__init__(
            f"RockyRun {name} did not finish within {timeout:g} s (phase: {phase or 'none yet'})"
        )
        self.name = name
        self.timeout = timeout
        self.phase = phase


class RunNotFoundError(RockyClientError):
    """No RockyRun of that name in the namespace."""

    def __init__(self, name: str, namespace: str) -> None:
        super().__init__(f"no RockyRun {name} in namespace {namespace}")
        self.name = name
        self.namespace = namespace


class RunOutputUnavailableError(RockyClientError):
    """The run finished but its complete RunOutput cannot be read."""


class ManifestError(RockyClientError):
    """A manifest that is not a valid RockyRun (names the field)."""


@dataclass(frozen=True)
class RunOutcome:
    """A finished run, read the way ``rocky run --output json`` would be.

    ``exit_code`` means what it means for ``rocky run``: 0 every table copied, 2 partial
    success, 1 nothing could run or every table failed.
    """

    name: str
    exit_code: int
    result: Any
    """``rocky_sdk.RunResult``: ``errors[*].failure_kind`` is the typed discriminator."""
    output: dict[str, Any]
    """The complete RunOutput JSON, as a dict."""
    phase: str | None = None
    """``status.phase`` (Succeeded / PartialFailure / Failed) when run on a cluster."""

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


def exit_code_of(output: dict[str, Any]) -> int:
    """0 / 2 / 1 from the RunOutput's ``status``, or from its counts for older outputs."""
    status = output.get("status")
    if isinstance(status, str) and status in STATUS_BY_WIRE:
        return EXIT_CODES[STATUS_BY_WIRE[status]]
    copied = int(output.get("tables_copied", 0))
    failed = int(output.get("tables_failed", 0))
    if failed == 0:
        return 0
    return 2 if copied else 1


def outcome_from_output(
    name: str, output: dict[str, Any], *, phase: str | None = None
) -> RunOutcome:
    """Parse with rocky-sdk (the consumers' own parser) and attach the exit code."""
    from rocky_sdk.types import RunResult, parse_rocky_output

    try:
        result = parse_rocky_output(json.dumps(output))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise RunOutputUnavailableError(
            f"RockyRun {name}: the RunOutput does not parse with rocky-sdk: {exc}"
        ) from exc
    if not isinstance(result, RunResult):
        raise RunOutputUnavailableError(
            f"RockyRun {name}: expected a run output, got {type(result).__name__}"
        )
    return RunOutcome(
        name=name, exit_code=exit_code_of(output), result=result, output=output, phase=phase
    )
