"""Where ``rocky-operator-rocky`` keeps its run records: Rocky's ``--state-path`` directory.

``STATE/runs/<run>.json`` is each run's RunOutput; ``STATE/latest/<pipeline>.json`` names the
latest run of a pipeline, its backend and namespace, so ``--resume-latest`` knows what to resume
(``spec.resumeFrom`` on a cluster, ``--resume-from`` of the RunOutput locally). Without
``--state-path`` the directory is ``.rocky-operator-state`` beside rocky.toml, with
``--state-namespace N`` its subdirectory ``N``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_DIR = ".rocky-operator-state"


class StateError(ValueError):
    """A state directory or record that cannot be used (one line)."""


@dataclass(frozen=True)
class RunRecord:
    name: str
    """The RockyRun's name (cluster) or the local run's."""
    pipeline: str
    backend: str
    namespace: str | None
    status: str
    filter: str
    finished_at: float = 0.0
    """Seconds since the epoch when the run ended (for ``ROCKY_OPERATOR_AUTO_RESUME_SECONDS``)."""


def state_dir(config: Path, state_path: str | None, state_namespace: str | None) -> Path:
    """The directory of the records, as the global flags say."""
    if state_path:
        return Path(state_path)
    base = config.resolve().parent / DEFAULT_DIR
    if state_namespace:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", state_namespace):
            raise StateError(f"--state-namespace {state_namespace!r}: letters, digits, . _ -")
        return base / state_namespace
    return base


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _write(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(path)


def output_path(directory: Path, run: str) -> Path:
    return directory / "runs" / f"{_safe(run)}.json"


def save(directory: Path, record: RunRecord, output: dict[str, Any]) -> None:
    """Keep a finished run's RunOutput and make it the pipeline's latest run."""
    try:
        _write(output_path(directory, record.name), output)
        _write(directory / "latest" / f"{_safe(record.pipeline)}.json", asdict(record))
    except OSError as exc:
        raise StateError(f"--state-path {directory}: cannot write: {exc.strerror or exc}") from None


def latest(directory: Path, pipeline: str) -> RunRecord:
    """The pipeline's latest run; :class:`StateError` when there is none."""
    path = directory / "latest" / f"{_safe(pipeline)}.json"
    try:
        doc = json.loads(path.read_text())
        return RunRecord(**doc)
    except FileNotFoundError:
        raise StateError(
            f"--resume-latest: no earlier run of pipeline {pipeline!r} in {directory}"
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise StateError(f"{path}: not a run record: {exc}") from None


def recent_failure(
    directory: Path, pipeline: str, filter: str, now: float, within: float
) -> RunRecord | None:
    """The pipeline's latest run when it failed (partly), with this filter, ``within`` seconds
    before ``now``: what a retry of the same call resumes under auto-resume."""
    try:
        record = latest(directory, pipeline)
    except StateError:
        return None
    if record.status == "Success" or record.filter != filter:
        return None
    return record if 0 <= now - record.finished_at <= within else None


def find(directory: Path, pipeline: str, run: str) -> RunRecord:
    """``--resume RUN_ID``: the pipeline's latest run if it is that one, else the output kept
    for it (a local run)."""
    with_latest = None
    with contextlib.suppress(StateError):
        with_latest = latest(directory, pipeline)
    if with_latest is not None and with_latest.name == run:
        return with_latest
    path = output_path(directory, run)
    if not path.is_file():
        raise StateError(f"--resume {run}: no such run in {directory}")
    backend = with_latest.backend if with_latest else "local"
    namespace = with_latest.namespace if with_latest else None
    return RunRecord(run, pipeline, backend, namespace, "unknown", "")
