"""Where ``rocky-operator-rocky`` keeps its run records: Rocky's ``--state-path`` directory.

``STATE/runs/<run>.json`` is each run's RunOutput, ``STATE/runs/<run>.journal.jsonl`` a local
run's per-table journal (written as each table ends, so a run killed half-way can still be
resumed); ``STATE/latest/<pipeline>.json`` names the latest run of a pipeline (written when it
starts, again when it ends), its backend and namespace, so ``--resume-latest`` knows what to
resume (``spec.resumeFrom`` on a cluster, ``--resume-from`` of the RunOutput or journal
locally). Without ``--state-path`` the directory is ``.rocky-operator-state`` beside rocky.toml,
with ``--state-namespace KEY`` its subdirectory ``KEY`` (Rocky's rule: ``^[a-zA-Z0-9_]+$``; an
explicit ``--state-path`` disables namespacing, as in Rocky).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

DEFAULT_DIR = ".rocky-operator-state"
RUNNING = "Running"


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
    """``Running`` while it runs, then the RunOutput's ``status``."""
    filter: str
    finished_at: float = 0.0
    """Seconds since the epoch when the run ended, or while ``Running`` when it started (for
    ``ROCKY_OPERATOR_AUTO_RESUME_SECONDS``)."""
    journal: str | None = None
    """A local run's journal file."""


def check_namespace(key: str) -> str:
    """Rocky's ``--state-namespace`` rule: a SQL identifier (it becomes a path segment)."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", key):
        raise StateError(f"--state-namespace {key!r}: must match ^[a-zA-Z0-9_]+$ (as in Rocky)")
    return key


def state_dir(config: Path, state_path: str | None, state_namespace: str | None) -> Path:
    """The directory of the records, as the global flags say."""
    if state_path:
        return Path(state_path)
    base = config.resolve().parent / DEFAULT_DIR
    if state_namespace:
        return base / check_namespace(state_namespace)
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


def journal_path(directory: Path, run: str) -> Path:
    return directory / "runs" / f"{_safe(run)}.journal.jsonl"


def _latest_path(directory: Path, pipeline: str) -> Path:
    return directory / "latest" / f"{_safe(pipeline)}.json"


def started(directory: Path, record: RunRecord) -> None:
    """Make a run that is starting the pipeline's latest (so a killed run can be resumed)."""
    try:
        doc = asdict(replace(record, status=RUNNING, finished_at=time.time()))
        _write(_latest_path(directory, record.pipeline), doc)
    except OSError as exc:
        raise StateError(f"--state-path {directory}: cannot write: {exc.strerror or exc}") from None


def save(directory: Path, record: RunRecord, output: dict[str, Any]) -> None:
    """Keep a finished run's RunOutput and make it the pipeline's latest run."""
    try:
        _write(output_path(directory, record.name), output)
        _write(_latest_path(directory, record.pipeline), asdict(record))
    except OSError as exc:
        raise StateError(f"--state-path {directory}: cannot write: {exc.strerror or exc}") from None


def latest(directory: Path, pipeline: str) -> RunRecord | None:
    """The pipeline's latest run, None when there is none."""
    path = _latest_path(directory, pipeline)
    try:
        doc = json.loads(path.read_text())
        return RunRecord(**doc)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise StateError(f"{path}: not a run record: {exc}") from None


def find(directory: Path, pipeline: str, run: str) -> RunRecord | None:
    """``--resume RUN_ID`` locally: the pipeline's latest run if it is that one, else the
    output or journal kept for it; None when this state directory has neither."""
    last = latest(directory, pipeline)
    if last is not None and last.name == run:
        return last
    journal = journal_path(directory, run)
    if not output_path(directory, run).is_file() and not journal.is_file():
        return None
    return RunRecord(run, pipeline, "local", None, "unknown", "", journal=str(journal))


def local_resume_source(directory: Path, record: RunRecord) -> Path | None:
    """What a local resume reads: the run's journal (it also carries what the run it resumed
    from had copied, so a resume of a resume skips those too; and a killed run has only it),
    else its RunOutput."""
    journal = Path(record.journal) if record.journal else journal_path(directory, record.name)
    if journal.is_file():
        return journal
    output = output_path(directory, record.name)
    return output if output.is_file() else None
