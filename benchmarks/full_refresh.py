"""full_refresh of N rows through the runner versus bare DuckDB, same-file and sibling-file
(issue 15 goal 4: the sibling case <= 1.1x bare).

Prints figures (not a timed test). Two layouts, each measured both ways:

- ``same``: source and target tables in one DuckDB file (``bench.duckdb``);
- ``sibling``: the source in ``bench.duckdb``, the target in a sibling file
  (``tgt_runner.duckdb`` / ``tgt_bare.duckdb``), created afresh by every run.

Sides:

- runner: ``rocky-runner`` as a subprocess (as a pod runs it), full_refresh with one
  metadata column; wall time from spawn to exit, so Python start-up, the lock, planning,
  the checkpoint that makes the copy durable and the result message are included
  (``metadata.copy_ms`` is printed too: the copy alone);
- bare: in this process, ``connect`` (the target file; for ``sibling`` ``ATTACH`` the
  source ``READ_ONLY``) + ``CREATE OR REPLACE TABLE ... AS SELECT`` with the same column
  list (the metadata column included, so both write the same rows) + ``CHECKPOINT`` +
  close. The CHECKPOINT makes the bare copy durable in the data file, as the runner's
  must be before it reports ``copied`` (docs/runner.md "When a copy counts as copied"):
  the comparison is durable against durable.

Order alternates every repetition (runner first, then bare first; the layouts too).

    python benchmarks/full_refresh.py [--rows 10000000] [--repeat 3] [--layouts same,sibling]
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
META_SQL = ', CAST((CURRENT_TIMESTAMP) AS TIMESTAMP) AS "_loaded_at"'
LAYOUTS = ("same", "sibling")


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


def _drop_file(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)


def time_runner(path: Path, layout: str, result: Path) -> tuple[float, int, float]:
    """Wall seconds spawn -> exit, rows copied, and the result's copy_ms in seconds."""
    target: dict[str, str] = {"schema": "staging", "table": "t_runner"}
    if layout == "sibling":
        target["catalog"] = "tgt_runner"
        _drop_file(path.with_name("tgt_runner.duckdb"))
    task = {
        "asset_key": ["duckdb", "bench", "t"],
        "source": {"schema": "src__bench", "table": "t"},
        "target": target,
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
    out = json.loads(result.read_text())
    return elapsed, int(out["rows_copied"]), float(out["metadata"]["copy_ms"]) / 1000


def time_bare(path: Path, layout: str) -> float:
    started = time.perf_counter()
    if layout == "same":
        conn = duckdb.connect(str(path))
        source, target = "src__bench.t", "staging.t_bare"
    else:
        tgt = path.with_name("tgt_bare.duckdb")
        _drop_file(tgt)
        started = time.perf_counter()
        conn = duckdb.connect(str(tgt))
        conn.execute(f"ATTACH '{path}' AS src (READ_ONLY)")
        conn.execute("CREATE SCHEMA IF NOT EXISTS staging")
        source, target = "src.src__bench.t", "staging.t_bare"
    conn.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT *{META_SQL} FROM {source}")
    conn.execute("CHECKPOINT")  # durable, as the runner's copy is before it reports
    conn.close()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="source rows")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (median reported)")
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help="same,sibling")
    args = parser.parse_args()
    layouts = [x for x in args.layouts.split(",") if x]
    if any(x not in LAYOUTS for x in layouts) or args.repeat < 1:
        parser.error(f"--layouts takes {', '.join(LAYOUTS)}; --repeat >= 1")
    runs: dict[tuple[str, str], list[float]] = {}
    copy_s: dict[str, list[float]] = {x: [] for x in layouts}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        started = time.perf_counter()
        make_source(path, args.rows)
        print(f"source: {args.rows:,} rows built in {time.perf_counter() - started:.1f} s")
        for i in range(args.repeat):
            # Alternate which goes first, so neither always gets the warmer cache.
            order = layouts if i % 2 == 0 else layouts[::-1]
            sides = ("runner", "bare") if i % 2 == 0 else ("bare", "runner")
            for layout in order:
                for side in sides:
                    if side == "bare":
                        seconds = time_bare(path, layout)
                    else:
                        result = Path(tmp) / f"result-{layout}-{i}.json"
                        seconds, copied, copy = time_runner(path, layout, result)
                        if copied != args.rows:
                            raise SystemExit(f"runner copied {copied} rows, not {args.rows}")
                        copy_s[layout].append(copy)
                    runs.setdefault((layout, side), []).append(seconds)
                    print(f"  run {i + 1} {layout:7s} {side:6s} {seconds:7.3f} s", flush=True)
    for layout in layouts:
        r, b = runs[(layout, "runner")], runs[(layout, "bare")]
        rm, bm = statistics.median(r), statistics.median(b)
        print(f"[{layout}] runner (subprocess) : {rm:8.3f} s median (runs: {_fmt(r)})")
        print(f"[{layout}] runner copy_ms      : {statistics.median(copy_s[layout]):8.3f} s median")
        print(f"[{layout}] bare CTAS+CHECKPOINT: {bm:8.3f} s median (runs: {_fmt(b)})")
        print(
            f"[{layout}] ratio runner / bare : {rm / bm:8.2f}x median, "
            f"{min(r) / min(b):.2f}x best of each (target <= 1.1x)"
        )
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


if __name__ == "__main__":
    raise SystemExit(main())
