"""full_refresh of N rows through the runner versus a bare DuckDB ``CREATE TABLE AS``.

Prints figures (not a timed test). Both write into the same DuckDB file:

- runner: ``rocky-runner`` as a subprocess (as a pod runs it), full_refresh of the
  source into ``staging.t_runner`` with one metadata column; wall time from spawn to
  exit, so Python start-up, the lock, planning and the result message are included;
- bare: in this process, connect + ``CREATE OR REPLACE TABLE … AS SELECT * …`` + close
  (the close checkpoints, as the runner's does).

    python benchmarks/full_refresh.py [--rows 10000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

RUNNER = shutil.which("rocky-runner", path=str(Path(sys.executable).parent))


def make_source(path: Path, rows: int) -> None:
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            f"""
            CREATE SCHEMA src__bench;
            CREATE TABLE src__bench.t AS
              SELECT range AS id,
                     'customer ' || (range % 100000) AS name,
                     (range % 10000) / 100.0 AS amount,
                     TIMESTAMP '2024-01-01' + to_seconds(range) AS _fivetran_synced
              FROM range({rows});
            CREATE SCHEMA staging;
            """
        )


def time_runner(path: Path, result: Path) -> tuple[float, int]:
    task = {
        "asset_key": ["duckdb", "bench", "t"],
        "source": {"schema": "src__bench", "table": "t"},
        "target": {"schema": "staging", "table": "t_runner"},
        "strategy": "full_refresh",
        "metadata_columns": [
            {"name": "_loaded_at", "type": "TIMESTAMP", "value": "CURRENT_TIMESTAMP"}
        ],
        "adapter": {"type": "duckdb", "duckdb": {"path": str(path)}},
        "timeout_seconds": 3600,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROCKY_")}
    env.update(ROCKY_TASK=json.dumps(task), ROCKY_RESULT_PATH=str(result))
    command = [RUNNER] if RUNNER else [sys.executable, "-m", "rocky_runner"]
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"runner failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed, int(json.loads(result.read_text())["rows_copied"])


def time_bare(path: Path) -> float:
    started = time.perf_counter()
    conn = duckdb.connect(str(path))
    conn.execute("CREATE OR REPLACE TABLE staging.t_bare AS SELECT * FROM src__bench.t")
    conn.close()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="source rows")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (median reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        started = time.perf_counter()
        make_source(path, args.rows)
        print(f"source: {args.rows:,} rows built in {time.perf_counter() - started:.1f} s")
        runner, bare = [], []
        for i in range(args.repeat):
            # Alternate which goes first, so neither always gets the warmer cache.
            if i % 2:
                bare.append(time_bare(path))
            seconds, copied = time_runner(path, Path(tmp) / f"result-{i}.json")
            if copied != args.rows:
                raise SystemExit(f"runner copied {copied} rows, expected {args.rows}")
            runner.append(seconds)
            if not i % 2:
                bare.append(time_bare(path))
    r, b = statistics.median(runner), statistics.median(bare)
    print(f"runner full_refresh (subprocess)   : {r:8.3f} s  median (runs: {_fmt(runner)})")
    print(f"bare DuckDB CREATE TABLE AS        : {b:8.3f} s  median (runs: {_fmt(bare)})")
    print(f"ratio runner / bare, median        : {r / b:8.2f}x")
    print(f"ratio runner / bare, best of each  : {min(runner) / min(bare):8.2f}x")
    print(f"runner overhead, median            : {r - b:8.3f} s")
    print(
        f"load average (1 min) at the end    : {os.getloadavg()[0]:8.2f} on {os.cpu_count()} CPUs"
    )
    return 0


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


if __name__ == "__main__":
    raise SystemExit(main())
