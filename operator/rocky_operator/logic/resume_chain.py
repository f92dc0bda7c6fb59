"""What a chain of resumed runs already knows, carried in each resumed RunOutput.

A resumed run copies only what an earlier run left undone, so its own
``materializations`` / ``errors`` list only the tables it ran. Resuming from *that*
output would then re-run everything the chain had copied before ("65 of 67", then
"67 of 67"), and forget the failures the resume did not retry (``resumeKinds``). So a
resumed RunOutput carries the rest of the chain in two extra top-level fields (Rocky's
schema allows additional properties; rocky-sdk ignores them):

- ``carried_copied``: asset keys copied by earlier runs of the chain, not run again;
- ``carried_failed``: ``{asset_key, error, failure_kind}`` of tables that failed
  earlier in the chain and that this run did not retry (their kind was not in
  ``resumeKinds``).

Both are present only when not empty; the counts (``tables_copied`` ...) stay this
run's own. :func:`read_chain` reads any RunOutput (resumed or not) into the chain's
state, which is what ``--resume-from`` and ``spec.resumeFrom`` select from.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rocky_runner.contract import FailureKind

AssetKey = tuple[str, ...]
CARRIED_COPIED = "carried_copied"
CARRIED_FAILED = "carried_failed"
CARRIED_KEYS = (CARRIED_COPIED, CARRIED_FAILED)


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    error: str


@dataclass(frozen=True)
class Chain:
    """The state of every table the chain of runs up to one RunOutput has seen."""

    copied: frozenset[AssetKey] = frozenset()
    failed: Mapping[AssetKey, Failure] = field(default_factory=dict)


def _key(value: Any, where: str) -> AssetKey:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ValueError(f"{where}.asset_key is not a list of strings")
    return tuple(value)


def _kind(value: Any) -> FailureKind:
    try:
        return FailureKind(str(value))
    except ValueError:
        return FailureKind.UNKNOWN


def read_chain(doc: Mapping[str, Any]) -> Chain:
    """The chain's state after the run of ``doc``: copied = its materializations and
    what it carried; failed = its table errors and what it carried, less the copied.
    A ValueError names a malformed entry."""
    copied: set[AssetKey] = set()
    failed: dict[AssetKey, Failure] = {}
    for i, raw in enumerate(doc.get(CARRIED_COPIED) or []):
        copied.add(_key(raw, f"{CARRIED_COPIED}[{i}]"))
    for name in (CARRIED_FAILED, "errors"):  # this run's own errors win
        entries = doc.get(name) or []
        if not isinstance(entries, list):
            raise ValueError(f"{name} must be a list")
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise ValueError(f"{name}[{i}] is not an object")
            key = _key(entry.get("asset_key"), f"{name}[{i}]")
            if key:  # an empty key is a run-level error (nothing could start)
                failed[key] = Failure(_kind(entry.get("failure_kind")), str(entry.get("error")))
    materializations = doc.get("materializations") or []
    if not isinstance(materializations, list):
        raise ValueError("materializations must be a list")
    for i, m in enumerate(materializations):
        entry = m if isinstance(m, Mapping) else {}
        copied.add(_key(entry.get("asset_key"), f"materializations[{i}]"))
    return Chain(frozenset(copied), {k: v for k, v in failed.items() if k not in copied})


def carried_fields(chain: Chain, run_now: Iterable[AssetKey]) -> dict[str, Any]:
    """The fields a resumed RunOutput adds: the chain's copies, and its failures this run
    (which runs the tables ``run_now``) did not retry. Empty lists are left out."""
    retried = set(run_now)
    fields: dict[str, Any] = {}
    if chain.copied:
        fields[CARRIED_COPIED] = [list(k) for k in sorted(chain.copied)]
    failed = [
        {"asset_key": list(k), "error": f.error, "failure_kind": f.kind.value}
        for k, f in sorted(chain.failed.items())
        if k not in retried
    ]
    if failed:
        fields[CARRIED_FAILED] = failed
    return fields
