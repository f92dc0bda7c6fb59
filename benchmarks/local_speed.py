"""Local mode's fixed cost per table, side by side in one run (issue 15 goal 2).

    python benchmarks/local_speed.py                     # 200 tables, 3 repetitions
    python benchmarks/local_speed.py --tables 50 --repeat 5

Sides, each copying the same N small DuckDB tables (``--rows`` rows each) with
``full_refresh`` into ``--files`` target files (one per tenant, so tables of different
files may run side by side):

- ``loop``: one Python process, one DuckDB connection, the target files ATTACHed, a
  ``CREATE OR REPLACE TABLE ... AS SELECT * FROM ...`` per table (in-process speed);
- ``reopen``: the same loop, but every table opens its own connection, ATTACHes its
  source and target, CHECKPOINTs and closes (what each runner does; the floor for any
  mode that keeps one process, and so one DuckDB open, per table);
- ``spawn-c1``: ``rocky-operator local --no-fork-server`` at concurrency 1 (a new
  interpreter per table);
- ``fork-c1``: ``rocky-operator local`` at concurrency 1 (each table's runner forked
  from the run's fork server);
- ``fork-c4``: the same at concurrency 4.

Fairness: every side starts from no target files; the order of the sides rotates each
repetition (``--repeat``, at least 3); every local run is checked to have copied every
table (exit 0). Wall time is from starting the process (or the loop) to its end, so
discovery, planning and the interpreter start are in. Printed: each run, then the
median per side and the ratios fork-c1 / loop (target <= 3), fork-c1 / reopen,
spawn-c1 / fork-c1 and fork-c1 / fork-c4 (> 1: concurrency helps).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import yaml

SIDES = ("loop", "reopen", "spawn-c1", "fork-c1", "fork-c4")
CLI = (sys.executable, "-m", "rocky_operator.cli", "local")


def make_warehouse(path: Path, tables: int, files: int, rows: int) -> list[tuple[str, str]]:
    """N tables spread over ``files`` tenants' schemas; their (schema, table) names."""
    names = [(f"src__t{i % files}__shop", f"tbl{i}") for i in range(tables)]
    with contextlib.closing(duckdb.connect(str(path))) as conn:
        for schema in sorted({s for s, _ in names}):
            conn.execute(f"CREATE SCHEMA {schema}")
        for schema, table in names:
            conn.execute(
                f"CREATE TABLE {schema}.{table} AS SELECT i AS id, 'row ' || i AS name, "
                f"TIMESTAMP '2026-01-01' + to_minutes(i) AS _fivetran_synced "
                f"FROM range({rows}) r(i)"
            )
    return names


def manifest(path: Path, warehouse: Path, concurrency: int) -> Path:
    doc = {
        "apiVersion": "rocky.dev/v1alpha1",
        "kind": "RockyRun",
        "metadata": {"name": f"bench-c{concurrency}"},
        "spec": {
            "adapter": {"type": "duckdb", "duckdb": {"path": str(warehouse)}},
            "source": {"schemaPattern": {"components": ["tenant", "source"]}},
            "target": {"catalogTemplate": "{tenant}_wh", "schemaTemplate": "staging__{source}"},
            "strategy": "full_refresh",
            "concurrency": concurrency,
        },
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def drop_targets(directory: Path) -> None:
    for target in directory.glob("t*_wh.duckdb*"):
        target.unlink()


def run_loop(warehouse: Path, names: list[tuple[str, str]]) -> None:
    """The in-process bar: the same CTAS statements in one connection."""
    with contextlib.closing(duckdb.connect()) as conn:
        conn.execute(f"ATTACH '{warehouse}' AS src (READ_ONLY)")
        for tenant in sorted({s.split("__")[1] for s, _ in names}):
            conn.execute(f"ATTACH '{warehouse.parent / f'{tenant}_wh.duckdb'}' AS {tenant}_wh")
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {tenant}_wh.staging__shop")
        for schema, table in names:
            tenant = schema.split("__")[1]
            conn.execute(
                f"CREATE OR REPLACE TABLE {tenant}_wh.staging__shop.{table} AS "
                f"SELECT * FROM src.{schema}.{table}"
            )


def run_reopen(warehouse: Path, names: list[tuple[str, str]]) -> None:
    """Per table: connect, ATTACH source and target, CTAS, CHECKPOINT, close."""
    for schema, table in names:
        tenant = schema.split("__")[1]
        with contextlib.closing(duckdb.connect()) as conn:
            conn.execute(f"ATTACH '{warehouse}' AS src (READ_ONLY)")
            conn.execute(f"ATTACH '{warehouse.parent / f'{tenant}_wh.duckdb'}' AS tgt")
            conn.execute("CREATE SCHEMA IF NOT EXISTS tgt.staging__shop")
            conn.execute(
                f"CREATE OR REPLACE TABLE tgt.staging__shop.{table} AS "
                f"SELECT * FROM src.{schema}.{table}"
            )
            conn.execute("CHECKPOINT tgt")


def run_local(path: Path, fork: bool, tables: int, env: dict[str, str]) -> None:
    args = [*CLI, str(path)] + ([] if fork else ["--no-fork-server"])
    done = subprocess.run(args, capture_output=True, env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)}: exit {done.returncode}\n{done.stderr.decode()[-2000:]}")
    copied = len(json.loads(done.stdout)["materializations"])
    if copied != tables:
        sys.exit(f"{' '.join(args)}: copied {copied} of {tables} tables")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", type=int, default=200)
    parser.add_argument("--files", type=int, default=8, help="target files (tenants)")
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if args.repeat < 3:
        parser.error("--repeat must be at least 3")
    work = Path(tempfile.mkdtemp(prefix="rocky-local-speed-"))
    warehouse = work / "warehouse.duckdb"
    names = make_warehouse(warehouse, args.tables, args.files, args.rows)
    env = {**os.environ, "XDG_STATE_HOME": str(work / "state")}
    c1, c4 = manifest(work / "c1.yaml", warehouse, 1), manifest(work / "c4.yaml", warehouse, 4)
    sides: dict[str, Callable[[], None]] = {
        "loop": lambda: run_loop(warehouse, names),
        "reopen": lambda: run_reopen(warehouse, names),
        "spawn-c1": lambda: run_local(c1, False, args.tables, env),
        "fork-c1": lambda: run_local(c1, True, args.tables, env),
        "fork-c4": lambda: run_local(c4, True, args.tables, env),
    }
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    print(f"{args.tables} tables x {args.rows} rows, {args.files} target files, work dir {work}")
    for rep in range(args.repeat):
        order = list(SIDES[rep % len(SIDES) :] + SIDES[: rep % len(SIDES)])
        if rep % 2:
            order.reverse()
        for side in order:
            drop_targets(work)
            began = time.perf_counter()
            sides[side]()
            took = time.perf_counter() - began
            times[side].append(took)
            print(f"  rep {rep} {side:9s} {took:8.2f} s", flush=True)
    median = {side: statistics.median(values) for side, values in times.items()}
    print("median: " + ", ".join(f"{side} {median[side]:.2f} s" for side in SIDES))
    ratios = {
        "fork-c1 / loop (target <= 3)": median["fork-c1"] / median["loop"],
        "spawn-c1 / loop": median["spawn-c1"] / median["loop"],
        "reopen / loop (a DuckDB open per table)": median["reopen"] / median["loop"],
        "fork-c1 / reopen": median["fork-c1"] / median["reopen"],
        "spawn-c1 / fork-c1": median["spawn-c1"] / median["fork-c1"],
        "fork-c1 / fork-c4 (> 1: c4 faster)": median["fork-c1"] / median["fork-c4"],
    }
    for label, ratio in ratios.items():
        print(f"  {label}: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
