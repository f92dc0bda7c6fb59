"""``--resume-from PREVIOUS.json``: run again only the tables that did not copy.

The previous run is known only by its RunOutput JSON (what ``rocky-operator local``
printed, or ``status.runOutput`` of a RockyRun) or its journal. A table it copied is
skipped; a table it failed, left out (``contained``) or never planned is run again.
With ``--resume-kinds`` only the tables that failed with one of those kinds run. A
resumed output carries what the runs before it copied and failed
(:mod:`rocky_operator.logic.resume_chain`), so a resume of a resume runs only what is
still failing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rocky_operator.local.manifest import ManifestError
from rocky_operator.logic.resume_chain import Chain, carried_fields, read_chain
from rocky_operator.logic.tables import PlannedTable
from rocky_runner.contract import FailureKind

AssetKey = tuple[str, ...]


@dataclass(frozen=True)
class PreviousRun:
    """What a previous RunOutput says about each table."""

    source: str
    """Where it came from (the file name), for ``resumed_from``."""
    copied: frozenset[AssetKey]
    failed: dict[AssetKey, FailureKind]
    chain: Chain = field(default_factory=Chain)
    """Everything the chain up to that run knows (errors included)."""
    run_now: frozenset[AssetKey] = frozenset()
    """The tables this run runs again (set once they are chosen)."""

    @classmethod
    def of(cls, source: str, chain: Chain) -> PreviousRun:
        failed = {k: f.kind for k, f in chain.failed.items()}
        return cls(source=source, copied=chain.copied, failed=failed, chain=chain)

    def carried(self) -> dict[str, Any]:
        """The ``carried_copied`` / ``carried_failed`` fields of this run's RunOutput."""
        return carried_fields(self.chain, self.run_now)


def parse_kinds(text: str | Iterable[str]) -> frozenset[FailureKind]:
    """``transient,connection-failed`` -> the kinds; a ValueError names a wrong one."""
    names = text.split(",") if isinstance(text, str) else list(text)
    kinds: set[FailureKind] = set()
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        try:
            kinds.add(FailureKind(name))
        except ValueError:
            known = ", ".join(k.value for k in FailureKind)
            raise ValueError(f"unknown failure kind {name!r} (one of: {known})") from None
    return frozenset(kinds)


def parse_previous(doc: Any, source: str) -> PreviousRun:
    """Read the tables' outcomes out of a RunOutput document (and what it carried)."""
    if not isinstance(doc, dict) or doc.get("command") != "run":
        raise ValueError("not a RunOutput of a run (expected an object with command 'run')")
    if not isinstance(doc.get("materializations"), list):
        raise ValueError("materializations and errors must be lists")
    return PreviousRun.of(source, read_chain(doc))


def load_previous(path: str | Path) -> PreviousRun:
    """Read a RunOutput JSON file, or a local run's journal (:mod:`.journal`);
    :class:`ManifestError` (exit 1) when unusable."""
    from rocky_operator.local.journal import is_journal, read_journal

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
        if is_journal(text):
            try:
                chain = read_journal(text)
            except ValueError as exc:
                raise ManifestError(f"--resume-from {file}: bad journal: {exc}") from None
            return PreviousRun.of(str(file), chain)
        doc = json.loads(text)
    except OSError as exc:
        raise ManifestError(f"--resume-from {file}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"--resume-from {file}: not JSON: {exc}") from None
    try:
        return parse_previous(doc, str(file))
    except ValueError as exc:
        raise ManifestError(f"--resume-from {file}: {exc}") from None


def select_tables(
    planned: Sequence[PlannedTable],
    previous: PreviousRun,
    kinds: frozenset[FailureKind] | None = None,
) -> list[PlannedTable]:
    """The planned tables to run again: not copied before, and with ``kinds`` only
    those that failed with one of them."""
    chosen = []
    for table in planned:
        if table.asset_key in previous.copied:
            continue
        if kinds and previous.failed.get(table.asset_key) not in kinds:
            continue
        chosen.append(table)
    return chosen
