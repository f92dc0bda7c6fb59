"""How a local run is carried out: its options, its clock and the runners' literal env."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rocky_operator.local.manifest import Manifest
from rocky_operator.local.process import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_RUNNER_COMMAND,
)
from rocky_runner.contract import FailureKind

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LocalOptions:
    """How a local run is carried out (none of it changes what the manifest means)."""

    resume_from: str | None = None
    """A previous RunOutput JSON file: run only the tables it did not copy."""
    resume_kinds: frozenset[FailureKind] | None = None
    """With resume_from: only the tables that failed with these kinds."""
    mounts: Mapping[str, str] = field(default_factory=dict)
    """Pod path -> local directory, like the pod's volume mounts (``--mount /data=DIR``)."""
    runner_command: Sequence[str] = DEFAULT_RUNNER_COMMAND
    """The runner program; the default is the one a pod runs, via this interpreter."""
    logs_dir: Path | None = None
    """Keep each attempt's runner log and result file here; default: a temp dir, removed."""
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    """SIGTERM -> SIGKILL delay for aborted runners, in seconds."""
    poll_seconds: float = 0.25
    """Longest wait between two looks at the runners, in seconds. The loop wakes at
    once when a runner ends (fork server report or pidfd), so this bounds only how
    late a Ctrl-C or a process without a pidfd is noticed."""
    journal: Path | None = None
    """Where each table's final result is appended as soon as it is known (``--journal``);
    default :func:`~rocky_operator.local.journal.default_journal_path` of the run name.
    ``--resume-from`` accepts it, so a killed run can be resumed."""
    fork_server: bool = True
    """Fork each runner from one warm runner process per run (its interpreter start and
    imports paid once; each table still in a process of its own, with the same
    environment, signals, death with the executor and result protocol). Only with the
    default ``runner_command``; falls back to a new interpreter per table if the server
    cannot start. False (``--no-fork-server``): a new interpreter per table."""


def runner_env(manifest: Manifest) -> dict[str, str]:
    """Literal ``spec.runner.env`` values (``valueFrom`` needs a cluster and is skipped)."""
    env: dict[str, str] = {}
    for item in manifest.spec.runner.env or []:
        name, value = item.get("name"), item.get("value")
        if isinstance(name, str) and isinstance(value, str):
            env[name] = value
    return env
