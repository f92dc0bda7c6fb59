"""The local run's journal: each table's result, written the moment it is known.

``rocky-operator local`` prints its RunOutput only at the end; a run that is killed
(SIGKILL, a closed laptop, an OOM kill of the executor) would leave nothing to resume
from. So every table that reaches its final state within the run gets one JSON line,
appended and flushed at once, in the journal (``--journal PATH``; default
:func:`default_journal_path`). ``--resume-from`` accepts the journal as well as a
RunOutput: a table it records as copied is not run again, a failed one is (or only
those of ``--resume-kinds``), and a table it does not mention had not finished and runs
again. Rocky records per-table progress the same way, for every success and every
classified failure.

Format (JSON Lines): the first line is the header
``{"rocky_operator_journal": 1, "run": NAME, "started_at": ..., "resumed_from": ...,
"carried_copied": [[asset key], ...], "carried_failed": [{asset_key, error,
failure_kind}, ...]}`` (what the chain of runs it resumed from had already copied, and
the failures it does not retry: :mod:`rocky_operator.logic.resume_chain`, so a resume
of a resumed run skips those too and keeps the failures); then one line
per table, ``{"asset_key": [...], "outcome": "copied" | "failed" | "not-attempted",
"failure_kind": ..., "error": ..., "attempts": N, "rows_copied": N}``; the last line of
a run that ended is ``{"finished": true, "status": ...}``. A table copied after the
executor's last look (killed between the runner's COMMIT and our read of its result)
is not in the journal and runs again on resume, which a full refresh repeats exactly
and an incremental copy turns into an append of nothing new.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from rocky_operator.logic.resume_chain import (
    CARRIED_COPIED,
    CARRIED_FAILED,
    Chain,
    Failure,
    read_chain,
)
from rocky_runner.contract import FailureKind

AssetKey = tuple[str, ...]
#: The header key (and format version) that tells a journal from a RunOutput.
MARKER = "rocky_operator_journal"
VERSION = 1


def default_journal_path(run_name: str) -> Path:
    """``$XDG_STATE_HOME/rocky-operator/local/<run name>.journal.jsonl`` (XDG_STATE_HOME
    defaults to ``~/.local/state``); each run of that manifest starts it afresh."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rocky-operator" / "local" / f"{run_name}.journal.jsonl"


class Journal:
    """An open journal, appended to and flushed line by line."""

    def __init__(self, path: Path, stream: IO[str]) -> None:
        self.path = path
        self._stream = stream

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        run_name: str,
        started_at: datetime,
        resumed_from: str | None,
        carried: Mapping[str, Any] | None = None,
    ) -> Journal:
        """Start a journal at ``path`` (replacing an older one), header written."""
        path.parent.mkdir(parents=True, exist_ok=True)
        journal = cls(path, path.open("w", encoding="utf-8"))
        journal._write(
            {
                MARKER: VERSION,
                "run": run_name,
                "started_at": started_at.isoformat(),
                "resumed_from": resumed_from,
                CARRIED_COPIED: list((carried or {}).get(CARRIED_COPIED) or []),
                CARRIED_FAILED: list((carried or {}).get(CARRIED_FAILED) or []),
            }
        )
        return journal

    def _write(self, record: Mapping[str, Any]) -> None:
        self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._stream.flush()

    def table(
        self,
        asset_key: Iterable[str],
        outcome: str,
        *,
        attempts: int,
        failure_kind: str | None = None,
        error: str | None = None,
        rows_copied: int | None = None,
    ) -> None:
        """Record one table's final result in this run."""
        record: dict[str, Any] = {"asset_key": list(asset_key), "outcome": outcome}
        record["attempts"] = attempts
        if failure_kind is not None:
            record["failure_kind"] = failure_kind
        if error is not None:
            record["error"] = error
        if rows_copied is not None:
            record["rows_copied"] = rows_copied
        self._write(record)

    def finish(self, status: str) -> None:
        self._write({"finished": True, "status": status})

    def close(self) -> None:
        self._stream.close()


def is_journal(text: str) -> bool:
    """Whether ``text`` is a journal (its first line is a journal header)."""
    first = text.lstrip().split("\n", 1)[0]
    try:
        header = json.loads(first)
    except ValueError:
        return False
    return isinstance(header, dict) and MARKER in header


def read_journal(text: str) -> Chain:
    """What a journal says about each table: copied or failed in its run, or carried
    over from the runs before it. A torn last line (the executor killed while writing
    it) is ignored; any other bad line is a ValueError naming it."""
    lines = text.splitlines()
    header = json.loads(lines[0])
    if header.get(MARKER) != VERSION:
        raise ValueError(f"journal format {header.get(MARKER)!r} is not {VERSION}")
    carried = read_chain({k: header.get(k) for k in (CARRIED_COPIED, CARRIED_FAILED)})
    copied = set(carried.copied)
    failed: dict[AssetKey, Failure] = dict(carried.failed)
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                break  # torn final line
            raise ValueError(f"line {number} is not JSON") from None
        if not isinstance(record, dict) or "asset_key" not in record:
            continue  # the closing line, or a record of a later version
        key = _key(record["asset_key"], f"line {number}")
        if record.get("outcome") == "copied":
            copied.add(key)
            failed.pop(key, None)
        elif record.get("outcome") == "failed":
            try:
                kind = FailureKind(record.get("failure_kind", "unknown"))
            except ValueError:
                kind = FailureKind.UNKNOWN
            failed[key] = Failure(kind, str(record.get("error") or f"failed ({kind})"))
    return Chain(frozenset(copied), failed)


def _key(value: Any, where: str) -> AssetKey:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ValueError(f"{where}: asset_key is not a list of strings")
    return tuple(value)
