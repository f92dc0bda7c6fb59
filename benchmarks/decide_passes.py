"""Decision passes over a large run: full recomputation (``decide``) versus the incremental
decider (``IncrementalDecider``), issue 13 goal 3. Prints figures, not a timed test.

    python benchmarks/decide_passes.py --tables 5000 100000 [--concurrency 100]

A simulated run like the operator's: every pass, the attempts in flight finish (2 % fail
with ``query-rejected``, 1 % with ``transient`` and are retried after 0 s), the finished
attempts and the decision's starts are observed, and the next pass decides. Tables write
one DuckDB file per ``--tables-per-file`` tables (write groups, as a DuckDB run with a
catalog per schema has). The incremental decider drives the whole run and its time per
pass (observe + decide) is measured; ``decide()`` is timed on ``--samples`` passes spread
over the run, fed every attempt observed so far (as the operator's worker did), and its
answer is checked against the incremental one on those passes.
"""

from __future__ import annotations

import argparse
import statistics
import time
import zlib
from datetime import UTC, datetime, timedelta

from rocky_operator.logic.decide import Attempt, AttemptState, Decision, decide
from rocky_operator.logic.decide_incremental import IncrementalDecider
from rocky_operator.logic.policy import RetryRule, RunPolicy
from rocky_operator.logic.write_groups import FileAccess
from rocky_runner.contract import FailureKind

T0 = datetime(2026, 12, 2, tzinfo=UTC)


def same(a: Decision, b: Decision) -> bool:
    return (a.start, a.abort, a.finished, a.requeue_at, a.reason) == (
        b.start,
        b.abort,
        b.finished,
        b.requeue_at,
        b.reason,
    )


def run(n_tables: int, concurrency: int, per_file: int, samples: int) -> None:
    tables = [f"k{i:07d}" for i in range(n_tables)]
    files = {
        key: FileAccess(
            writes=frozenset({f"/w/c{i // per_file}.duckdb"}), reads=frozenset({"/w/main.duckdb"})
        )
        for i, key in enumerate(tables)
    }
    policy = RunPolicy(
        concurrency=concurrency,
        retry={FailureKind.TRANSIENT: RetryRule(3, 0.0, 0.0)},
        auth_failed_threshold=0,
    )
    expected_passes = n_tables // concurrency + 10
    sample_at = {round(i * expected_passes / samples) for i in range(samples)}
    decider = IncrementalDecider(tables, policy, files=files)
    seen: list[Attempt] = []
    in_flight: list[Attempt] = []
    incremental_ms: list[float] = []
    full_ms: list[float] = []
    new: list[Attempt] = []
    passes = 0
    mismatches = 0
    while True:
        now = T0 + timedelta(seconds=passes)
        began = time.perf_counter()
        decider.observe(new)
        decision = decider.decide(now)
        incremental_ms.append((time.perf_counter() - began) * 1000)
        seen.extend(new)
        if passes in sample_at:
            began = time.perf_counter()
            full = decide(tables, seen, policy, now, files=files)
            full_ms.append((time.perf_counter() - began) * 1000)
            mismatches += not same(full, decision)
        if decision.finished:
            break
        passes += 1
        new = []
        for attempt in in_flight:
            roll = zlib.crc32(f"{attempt.table}/{attempt.number}".encode()) % 100
            if roll < 2:
                state, kind = AttemptState.FAILED, FailureKind.QUERY_REJECTED
            elif roll < 3 and attempt.number == 1:
                state, kind = AttemptState.FAILED, FailureKind.TRANSIENT
            else:
                state, kind = AttemptState.COPIED, None
            new.append(
                Attempt(attempt.table, attempt.number, state, attempt.started_at, now, kind, None)
            )
        in_flight = [
            Attempt(key, number, AttemptState.RUNNING, started_at=now)
            for key, number in decision.start
        ]
        new.extend(in_flight)
    inc_total = sum(incremental_ms) / 1000
    print(
        f"== {n_tables} tables, concurrency {concurrency}, {per_file} tables per target file: "
        f"{passes} passes"
    )
    print(
        f"   incremental: {inc_total:.2f} s for the whole run, "
        f"{statistics.mean(incremental_ms):.3f} ms/pass mean, "
        f"p99 {statistics.quantiles(incremental_ms, n=100)[98]:.2f} ms, "
        f"max {max(incremental_ms):.1f} ms (the first pass, or a GC pause)"
    )
    full_mean = statistics.mean(full_ms)
    print(
        f"   decide():    {full_mean:.1f} ms/pass mean over {len(full_ms)} sampled passes "
        f"({max(full_ms):.1f} ms max) -> about {full_mean * passes / 1000:.0f} s for the run"
    )
    print(
        f"   ratio full/incremental per pass: {full_mean / statistics.mean(incremental_ms):.0f}x; "
        f"answers differed on {mismatches} of {len(full_ms)} sampled passes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, nargs="+", default=[5000, 100_000])
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--tables-per-file", type=int, default=10)
    parser.add_argument("--samples", type=int, default=12)
    args = parser.parse_args()
    for n in args.tables:
        run(n, args.concurrency, args.tables_per_file, args.samples)


if __name__ == "__main__":
    main()
