"""Runner start-up: process start to first SQL, versus ``python -c pass``.

Prints figures (not a timed test). The runner is started exactly as a pod starts it
(``python -m rocky_runner`` with ``ROCKY_TASK`` and a result path) on a DuckDB task.
A tiny wrapper records the wall-clock moment of the first ``execute`` on the DuckDB
connection and prints it; the parent compares it with the moment it spawned the
process. It also checks, with ``python -X importtime``, that a DuckDB task imports
none of the heavy connector libraries (they are loaded lazily, per adapter type), and
fails (exit 1) if one is.

    python benchmarks/runner_startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

HEAVY = (
    "snowflake", "databricks", "google", "pyarrow", "kopf", "kubernetes", "pandas", "numpy",
    "sqlglot", "requests", "urllib3",
)  # fmt: skip

#: Runs the runner's main() with duckdb.connect wrapped so the first SQL is time-stamped.
WRAPPER = r"""
import sys, time
import duckdb
_connect = duckdb.connect
class _Timed:
    def __init__(self, conn): self._conn, self._first = conn, True
    def execute(self, *a, **k):
        if self._first:
            self._first = False
            sys.stdout.write(f"FIRST_SQL {time.time():.6f}\n"); sys.stdout.flush()
        return self._conn.execute(*a, **k)
    def __getattr__(self, name): return getattr(self._conn, name)
duckdb.connect = lambda *a, **k: _Timed(_connect(*a, **k))
from rocky_runner.main import main
raise SystemExit(main())
"""


def _make_warehouse(directory: Path) -> Path:
    path = directory / "startup.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            "CREATE SCHEMA src__bench; CREATE TABLE src__bench.t AS "
            "SELECT range AS id, TIMESTAMP '2024-01-01' AS _fivetran_synced FROM range(10)"
        )
    return path


def _env(warehouse: Path, result: Path) -> dict[str, str]:
    task = {
        "asset_key": ["duckdb", "bench", "t"],
        "source": {"schema": "src__bench", "table": "t"},
        "target": {"schema": "staging", "table": "t"},
        "strategy": "full_refresh",
        "adapter": {"type": "duckdb", "duckdb": {"path": str(warehouse)}},
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROCKY_")}
    env.update(ROCKY_TASK=json.dumps(task), ROCKY_RESULT_PATH=str(result))
    return env


def time_python_pass() -> float:
    started = time.time()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.time() - started


def time_first_sql(env: dict[str, str]) -> tuple[float, float]:
    """(seconds from spawn to first SQL, seconds from spawn to exit)."""
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER], env=env, capture_output=True, text=True, check=False
    )
    ended = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"runner failed ({proc.returncode}):\n{proc.stderr}")
    stamp = next(line for line in proc.stdout.splitlines() if line.startswith("FIRST_SQL"))
    return float(stamp.split()[1]) - started, ended - started


def imported_top_level_modules(env: dict[str, str]) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rocky_runner"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"runner failed ({proc.returncode}):\n{proc.stderr}")
    modules = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                modules.add(name.split(".")[0])
    return modules


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs of each (median reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        env = _env(_make_warehouse(directory), directory / "result.json")
        time_first_sql(env)  # warm the OS page cache and .pyc files
        baseline = [time_python_pass() for _ in range(args.repeat)]
        runs = [time_first_sql(env) for _ in range(args.repeat)]
        modules = imported_top_level_modules(env)
    first_sql = statistics.median(r[0] for r in runs)
    total = statistics.median(r[1] for r in runs)
    base = statistics.median(baseline)
    print(f"python -c pass                      : {base * 1000:7.1f} ms (median of {args.repeat})")
    print(f"rocky-runner start -> first SQL     : {first_sql * 1000:7.1f} ms")
    print(f"rocky-runner start -> exit (10 rows): {total * 1000:7.1f} ms")
    print(f"start-up overhead over python       : {(first_sql - base) * 1000:7.1f} ms")
    print(f"ratio first SQL / python -c pass    : {first_sql / base:7.2f}x")
    print(
        f"load average (1 min) at the end     : {os.getloadavg()[0]:7.2f} on {os.cpu_count()} CPUs"
    )
    heavy = sorted(m for m in modules if m in HEAVY)
    print(f"top-level modules imported          : {len(modules)}")
    if heavy:
        print(f"FAIL: a DuckDB task imported heavy libraries: {', '.join(heavy)}")
        return 1
    print(f"heavy libraries imported            : none of {', '.join(HEAVY)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
