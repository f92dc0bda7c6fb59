"""Run records in ConfigMaps against the test API server: the journal across several
ConfigMaps, blobs in several parts, a half-written blob never read."""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime

import pytest
from tests.operator.harness import Cluster, configuration_for

from rocky_operator.kube.client import KubeClient
from rocky_operator.kube.store import RunStore, record_name
from rocky_operator.logic import records
from rocky_operator.logic.decide import Attempt, AttemptState
from rocky_runner.contract import FailureKind

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _attempt(i: int, rng: random.Random) -> Attempt:
    error = "".join(rng.choices(string.ascii_letters, k=2048))
    return Attempt(f"{i:010x}", 1, AttemptState.FAILED, NOW, NOW, FailureKind.TRANSIENT, error)


async def test_journal_spans_config_maps_and_reloads_in_order(
    api_server: str, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "JOURNAL_CHUNK_BYTES", 40_000)
    client = KubeClient(configuration_for(api_server))
    rng = random.Random(1)
    written = [_attempt(i, rng) for i in range(120)]
    try:
        store = RunStore(client, cluster.namespace, "jr", "uid-jr")
        for start in range(0, len(written), 10):
            await store.append_journal(written[start : start + 10])
        maps = [c for c in await cluster.config_maps() if c["metadata"]["name"].startswith("jr-")]
        assert len(maps) > 2  # it rolled over to new ConfigMaps
        again = await RunStore(client, cluster.namespace, "jr", "uid-jr").load_journal()
        assert again == written
        # A new life appends after what it loaded, never over it.
        later = RunStore(client, cluster.namespace, "jr", "uid-jr")
        await later.load_journal()
        extra = [_attempt(1000, rng)]
        await later.append_journal(extra)
        assert await RunStore(client, cluster.namespace, "jr", "").load_journal() == [
            *written,
            *extra,
        ]
    finally:
        await client.close()


async def test_blob_in_parts_and_half_written_blob(
    api_server: str, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "PART_BYTES", 10_000)
    client = KubeClient(configuration_for(api_server))
    rng = random.Random(2)
    doc = {"errors": ["".join(rng.choices(string.ascii_letters, k=30_000))]}
    try:
        store = RunStore(client, cluster.namespace, "blob", "uid-blob")
        names, _size, _digest = await store.save_output(doc)
        assert len(names) > 2
        assert await store.load_output() == doc
        # Part 0 is written last: without it (operator killed mid-write) nothing is read.
        await cluster.api.delete(
            f"/api/v1/namespaces/{cluster.namespace}/configmaps/{record_name('blob', 'output', 0)}"
        )
        assert await store.load_output() is None
    finally:
        await client.close()


async def test_plan_keeps_its_exclusions_for_a_later_operator_life(
    api_server: str, cluster: Cluster
) -> None:
    """Issue 10 case 7: the tables a plan left out are stored with it, so an operator
    restarted mid-run still reports them; a plan written before exclusions has none."""
    from rocky_operator.logic.tables import Exclusion

    client = KubeClient(configuration_for(api_server))
    excluded = [
        Exclusion(("duckdb", "acme", "refunds"), "src__acme", "refunds", "missing_from_source"),
        Exclusion(("duckdb", "acme", "v_orders"), "src__acme", "v_orders", "view"),
    ]
    try:
        store = RunStore(client, cluster.namespace, "plan", "uid-plan")
        await store.save_plan([], [], spec={"filter": ""}, generation=3, excluded=excluded)
        plan = await RunStore(client, cluster.namespace, "plan", "uid-plan").load_plan()
        assert plan is not None
        assert (plan.excluded, plan.generation) == (excluded, 3)
        old = records.encode_plan([], [])  # no "excluded" key: an older operator's plan
        older = RunStore(client, cluster.namespace, "old-plan", "uid-old")
        await older.write_blob("plan", records.compress(old))
        plan = await older.load_plan()
        assert plan is not None
        assert plan.excluded == []
    finally:
        await client.close()
