"""Run records in ConfigMaps owned by the run: plan, journal, output.

See :mod:`rocky_operator.logic.records` for what each record is and why it exists.
Blobs (plan, output) are gzip streams cut into parts; each part is one ConfigMap
``<run>-<role>-<i>`` with the part under ``binaryData.part``. Part 0 is written last
and carries the part count and the SHA-256 of the whole, so a half-written blob (the
operator killed in between) is never read: it is written again. The journal is
append-only: each batch is a new ``binaryData`` key added by a merge patch.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rocky_operator.kube.client import KubeClient
from rocky_operator.logic import records
from rocky_operator.logic.decide import Attempt
from rocky_operator.logic.pod_manifest import owner_reference
from rocky_operator.logic.pods import LABEL_ROLE, LABEL_RUN
from rocky_operator.logic.tables import Exclusion, PlannedTable

ANNOTATION_PARTS = "rocky.dev/parts"
ANNOTATION_SHA256 = "rocky.dev/sha256"
ANNOTATION_BYTES = "rocky.dev/bytes"


#: Journal ``binaryData`` keys ``c<seq>``: the attempts whose pods existed, written with batch
#: ``b<seq>`` (gzip JSON list of [table key, attempt number]).
CREATED_PREFIX = "c"
AttemptId = tuple[str, int]

#: The plan document's key holding the frozen spec: {"generation": int, "spec": {...}}.
FROZEN_SPEC_KEY = "frozenSpec"


@dataclass(frozen=True)
class StoredPlan:
    """The plan record: the tables in start order, the asset keys resume skipped, and
    the spec (raw, as the API server held it) and generation the plan was made from."""

    tables: list[PlannedTable]
    resumed: list[str]
    spec: dict[str, Any] | None = None
    """None in a plan written before specs were frozen (the current spec is used)."""
    generation: int | None = None
    excluded: list[Exclusion] = field(default_factory=list)
    """Requested tables the plan left out (``excluded_tables``)."""


def record_name(run_name: str, role: str, index: int) -> str:
    return f"{run_name}-{role}-{index}"


def _index(cm: dict[str, Any]) -> int:
    name: str = cm["metadata"]["name"]
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


@dataclass
class RunStore:
    """The records of one run. Not thread-safe: one controller task per run uses it."""

    client: KubeClient
    namespace: str
    run_name: str
    run_uid: str
    _journal_index: int = 0
    _journal_bytes: int = 0
    _journal_seq: int = 0
    _journal_exists: bool = False
    _loaded: bool = field(default=False, repr=False)
    created: set[AttemptId] = field(default_factory=set)
    """Attempts whose pods are recorded as created (seen or created by an operator life)."""

    def _config_map(
        self, role: str, index: int, binary: dict[str, bytes], annotations: dict[str, str]
    ) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": record_name(self.run_name, role, index),
                "namespace": self.namespace,
                "labels": {LABEL_RUN: self.run_name, LABEL_ROLE: role},
                "annotations": annotations,
                "ownerReferences": [owner_reference(self.run_name, self.run_uid)],
            },
            "binaryData": {k: base64.b64encode(v).decode("ascii") for k, v in binary.items()},
        }

    # --- blobs ---------------------------------------------------------------------

    async def write_blob(self, role: str, data: bytes) -> list[str]:
        """Store bytes as parts; returns the ConfigMap names in order."""
        parts = records.split(data)
        names = [record_name(self.run_name, role, i) for i in range(len(parts))]
        for i in (*range(1, len(parts)), 0):
            annotations = {}
            if i == 0:
                annotations = {
                    ANNOTATION_PARTS: str(len(parts)),
                    ANNOTATION_SHA256: records.digest(data),
                    ANNOTATION_BYTES: str(len(data)),
                }
            body = self._config_map(role, i, {"part": parts[i]}, annotations)
            if not await self.client.create_config_map(self.namespace, body):
                await self.client.replace_config_map(self.namespace, body)
        return names

    async def read_blob(self, role: str) -> bytes | None:
        """The stored bytes, or None when there is no complete blob."""
        head = await self.client.get_config_map(self.namespace, record_name(self.run_name, role, 0))
        if head is None:
            return None
        annotations = head["metadata"].get("annotations") or {}
        count = int(annotations.get(ANNOTATION_PARTS, "0") or 0)
        if count < 1:
            return None
        chunks = [_part(head)]
        for i in range(1, count):
            cm = await self.client.get_config_map(
                self.namespace, record_name(self.run_name, role, i)
            )
            if cm is None:
                return None
            chunks.append(_part(cm))
        data = b"".join(chunks)
        if records.digest(data) != annotations.get(ANNOTATION_SHA256):
            return None
        return data

    # --- plan ----------------------------------------------------------------------

    async def load_plan(self) -> StoredPlan | None:
        data = await self.read_blob("plan")
        if data is None:
            return None
        doc = records.decompress(data)
        tables, resumed = records.decode_plan(doc)
        excluded = records.decode_exclusions(doc)
        frozen = doc.get(FROZEN_SPEC_KEY) if isinstance(doc, dict) else None
        if not isinstance(frozen, dict) or not isinstance(frozen.get("spec"), dict):
            # a plan of an operator before the freeze
            return StoredPlan(tables, resumed, excluded=excluded)
        generation = frozen.get("generation")
        return StoredPlan(
            tables,
            resumed,
            spec=frozen["spec"],
            generation=generation if isinstance(generation, int) else None,
            excluded=excluded,
        )

    async def save_plan(
        self,
        tables: Sequence[PlannedTable],
        resumed: Sequence[str],
        *,
        spec: Mapping[str, Any],
        generation: int | None,
        excluded: Sequence[Exclusion] = (),
    ) -> None:
        """The plan with the spec it was made from (frozen: used after any restart) and
        the requested tables it left out."""
        doc = records.encode_plan(tables, resumed)
        doc["excluded"] = records.encode_exclusions(excluded)
        doc[FROZEN_SPEC_KEY] = {"generation": generation, "spec": dict(spec)}
        await self.write_blob("plan", records.compress(doc))

    # --- output --------------------------------------------------------------------

    async def save_output(self, doc: dict[str, Any]) -> tuple[list[str], int, str]:
        raw = records.compress(doc)
        names = await self.write_blob("output", raw)
        import gzip

        plain = gzip.decompress(raw)
        return names, len(plain), records.digest(plain)

    async def load_output(self) -> dict[str, Any] | None:
        data = await self.read_blob("output")
        if data is None:
            return None
        doc: dict[str, Any] = records.decompress(data)
        return doc

    # --- journal -------------------------------------------------------------------

    async def load_journal(self) -> list[Attempt]:
        """Every recorded attempt, in the order written (and :attr:`created`, the attempts
        whose pods were known to exist)."""
        maps = await self.client.list_config_maps(
            self.namespace, {LABEL_RUN: self.run_name, LABEL_ROLE: "journal"}
        )
        maps.sort(key=_index)
        attempts: list[Attempt] = []
        self.created = set()
        self._journal_index, self._journal_bytes, self._journal_seq = 0, 0, 0
        self._journal_exists = False
        for cm in maps:
            binary = cm.get("binaryData") or {}
            index = _index(cm)
            size = 0
            for key in sorted(binary):
                data = base64.b64decode(binary[key])
                size += len(data)
                if key.startswith(CREATED_PREFIX):
                    self.created.update(_decode_created(data))
                else:
                    attempts.extend(records.decode_batch(data))
                if key[:1] in ("b", CREATED_PREFIX) and key[1:].isdigit():
                    self._journal_seq = max(self._journal_seq, int(key[1:]) + 1)
            if index >= self._journal_index:
                self._journal_index, self._journal_bytes = index, size
                self._journal_exists = True
        self._loaded = True
        return attempts

    async def append_journal(
        self, attempts: Sequence[Attempt], created: Iterable[AttemptId] = ()
    ) -> None:
        """Record attempts (started or finished) durably before acting on them.

        ``created`` (attempts whose pods were seen or created) rides along in the same
        write, never alone: it only tells a later operator life that a running attempt
        without a pod lost it (transient) rather than never got it (created then)."""
        if not attempts:
            return
        if not self._loaded:
            await self.load_journal()
        seq = self._journal_seq
        binary = {f"b{seq:08d}": records.encode_batch(attempts)}
        marks = sorted(set(created) - self.created)
        if marks:
            binary[f"{CREATED_PREFIX}{seq:08d}"] = records.compress([list(m) for m in marks])
        size = sum(len(v) for v in binary.values())
        self._journal_seq += 1
        if self._journal_exists and self._journal_bytes + size <= records.JOURNAL_CHUNK_BYTES:
            await self.client.patch_config_map(
                self.namespace,
                record_name(self.run_name, "journal", self._journal_index),
                {"binaryData": {k: base64.b64encode(v).decode("ascii") for k, v in binary.items()}},
            )
            self._journal_bytes += size
            self.created.update(marks)
            return
        if self._journal_exists:
            self._journal_index += 1
        body = self._config_map("journal", self._journal_index, binary, {})
        if not await self.client.create_config_map(self.namespace, body):
            # Someone (an earlier life of this operator) made it: add to it instead.
            await self.client.patch_config_map(
                self.namespace, body["metadata"]["name"], {"binaryData": body["binaryData"]}
            )
        self._journal_exists = True
        self._journal_bytes = size
        self.created.update(marks)


def _decode_created(data: bytes) -> set[AttemptId]:
    marks = records.decompress(data)
    return {(str(m[0]), int(m[1])) for m in marks if isinstance(m, list) and len(m) == 2}


def _part(cm: dict[str, Any]) -> bytes:
    return base64.b64decode((cm.get("binaryData") or {}).get("part", ""))
