"""Write groups (issue 10 case 16): decide never runs two writers of one DuckDB file.

Checks: the files a DuckDB table locks follow the adapter's rules (main file unless a
sibling ``<catalog>.duckdb`` is named, case-insensitively); at any concurrency at most
one table per target file is in flight, other files' tables fill the free slots; a
table writing the main file runs alone (every runner reads the main file); remote
warehouses are not grouped; random histories never put two writers of a file in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.logic.decide import Attempt, AttemptState, TableState, decide
from rocky_operator.logic.policy import RunPolicy
from rocky_operator.logic.tables import PlannedTable, plan_tables
from rocky_operator.logic.write_groups import file_access, write_groups

T0 = datetime(2026, 12, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Found:
    schema: str
    table: str
    components: dict[str, str] = field(default_factory=dict)
    catalog: str | None = None


def planned(catalog_template: str, tenants: list[str], per_tenant: int) -> list[PlannedTable]:
    spec = RockyRunSpec.model_validate(
        {
            "adapter": {"type": "duckdb", "duckdb": {"path": "/data/w.duckdb"}},
            "source": {"schemaPattern": {"components": ["tenant"]}},
            "target": {"catalogTemplate": catalog_template, "schemaTemplate": "staging"},
        }
    )
    found = [Found(f"src__{t}", f"t{i}", {"tenant": t}) for t in tenants for i in range(per_tenant)]
    return plan_tables(spec, found)


def test_file_access_follows_the_adapter() -> None:
    (sibling,) = planned("{tenant}_wh", ["acme"], 1)
    access = file_access(sibling)
    assert access is not None
    assert access.writes == {"/data/acme_wh.duckdb"}
    assert access.reads == {"/data/w.duckdb"}
    (main,) = planned("W", ["acme"], 1)  # the main file's stem, other case
    access = file_access(main)
    assert access is not None
    assert access.writes == {"/data/w.duckdb"}
    assert not access.reads


def test_one_target_file_runs_one_table_at_a_time_at_any_concurrency() -> None:
    tables = planned("one_wh", ["acme"], 8)
    policy = RunPolicy(concurrency=6)
    decision = decide([t.key for t in tables], [], policy, T0, files=write_groups(tables))
    assert len(decision.start) == 1
    # While it runs, nothing else of that file starts.
    first = decision.start[0][0]
    running = Attempt(first, 1, AttemptState.RUNNING, T0)
    again = decide([t.key for t in tables], [running], policy, T0, files=write_groups(tables))
    assert again.start == ()
    assert sum(o.state is TableState.PENDING for o in again.outcomes.values()) == 7
    assert not again.finished


def test_other_files_fill_the_free_slots() -> None:
    tables = planned("{tenant}_wh", ["a", "b", "c"], 3)
    decision = decide(
        [t.key for t in tables], [], RunPolicy(concurrency=6), T0, files=write_groups(tables)
    )
    started = {t.key: t for t in tables if t.key in {k for k, _ in decision.start}}
    assert sorted(t.task.target.catalog or "" for t in started.values()) == ["a_wh", "b_wh", "c_wh"]


def test_a_writer_of_the_main_file_excludes_every_reader() -> None:
    tables = [*planned("{tenant}_wh", ["a"], 2), *planned("w", ["b"], 1)]
    files = write_groups(tables)
    keys = [t.key for t in tables]
    main_writer = next(t.key for t in tables if t.task.target.catalog == "w")
    running = Attempt(main_writer, 1, AttemptState.RUNNING, T0)
    assert decide(keys, [running], RunPolicy(concurrency=4), T0, files=files).start == ()


def test_remote_warehouses_are_not_grouped() -> None:
    spec = RockyRunSpec.model_validate(
        {
            "adapter": {
                "type": "bigquery",
                "bigquery": {"project": "p", "credentialsSecretRef": {"name": "s", "key": "k"}},
            },
            "source": {"schemaPattern": {"components": ["tenant"]}},
            "target": {"catalogTemplate": "wh", "schemaTemplate": "staging"},
        }
    )
    tables = plan_tables(spec, [Found("src__a", f"t{i}", {"tenant": "a"}) for i in range(4)])
    assert write_groups(tables) == {}


@settings(max_examples=60, deadline=None)
@given(
    tenants=st.integers(min_value=1, max_value=4),
    per_tenant=st.integers(min_value=1, max_value=4),
    concurrency=st.integers(min_value=1, max_value=8),
    finish_order=st.randoms(use_true_random=False),
)
def test_random_runs_never_have_two_writers_of_a_file(
    tenants: int, per_tenant: int, concurrency: int, finish_order: object
) -> None:
    import random

    assert isinstance(finish_order, random.Random)
    tables = planned("{tenant}_wh", [f"t{i}" for i in range(tenants)], per_tenant)
    by_key = {t.key: t for t in tables}
    files = write_groups(tables)
    keys = [t.key for t in tables]
    attempts: dict[str, Attempt] = {}
    now = T0
    for _ in range(4 * len(tables)):
        decision = decide(
            keys, attempts.values(), RunPolicy(concurrency=concurrency), now, files=files
        )
        if decision.finished:
            break
        for key, number in decision.start:
            attempts[key] = Attempt(key, number, AttemptState.RUNNING, now)
        in_flight = [k for k, a in attempts.items() if a.state is AttemptState.RUNNING]
        targets = [by_key[k].task.target.catalog for k in in_flight]
        assert len(targets) == len(set(targets)), "two writers of one file in flight"
        assert len(in_flight) <= concurrency
        done = finish_order.choice(in_flight)
        now += timedelta(seconds=1)
        attempts[done] = Attempt(done, 1, AttemptState.COPIED, attempts[done].started_at, now)
    assert decision.finished
