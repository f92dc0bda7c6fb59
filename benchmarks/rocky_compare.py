"""Rocky's own ``rocky run`` against this project's local mode, one rocky.toml (issue 15).

    ROCKY_BIN=/path/to/rocky python benchmarks/rocky_compare.py          # both parts
    python benchmarks/rocky_compare.py --rocky-bin rocky --parts many --repeat 5

Parts (each a replication pipeline, ``full_refresh``, DuckDB):

- ``many``: ``--tables`` tables (default 200) of ``--rows`` rows (default 50,000) in
  ``--sources`` source schemas ``raw__s<j>``, at ``execution.concurrency`` = ``--concurrency``
  (default 4);
- ``big``: one table of ``--big-rows`` rows (default 10,000,000).

Sides, each given the SAME rocky.toml (byte for byte, written once per part) in a directory of
its own holding a fresh copy of the same source file, ``wh.duckdb``:

- ``rocky``: the Rocky binary (``--rocky-bin``, else ``$ROCKY_BIN``, else ``rocky`` on PATH),
  ``rocky -c rocky.toml -o json --state-path DIR/state.redb run``;
- ``ours``: ``rocky-operator-rocky`` with the same arguments, ``ROCKY_OPERATOR_BACKEND=local``
  (the local executor: one process per table, forked from the run's fork server).

Rocky's DuckDB adapter writes the target schemas into the file it opens, so both sides write
into the source's own file (the same-file layout); the source is written with
``--storage-version`` (default v1.5.0) so Rocky's bundled DuckDB can open it.

Fairness: the order of the sides alternates every repetition (``--repeat``, at least 3); wall
time is from spawning the command to its exit (discovery, planning, start-up included); CPU is
the command's user + system time with its reaped descendants (``os.wait4``). Every run is
verified against the warehouse itself: exit 0, the JSON output's ``tables_copied`` equal to the
tables requested, and every source table's row count equal to its target table's, no target
table missing and none extra. Printed: each run, the median per side and part, and the ratio
ours / rocky (targets: ``many`` <= 1.0, ``big`` <= 1.1).

Without a Rocky binary the benchmark prints one line saying so and exits 0 (skipped).
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
from dataclasses import dataclass
from pathlib import Path

import duckdb

OURS = shutil.which("rocky-operator-rocky", path=str(Path(sys.executable).parent))
TARGETS = {"many": 1.0, "big": 1.1}

ROCKY_TOML = """\
[adapter]
type = "duckdb"
path = "wh.duckdb"

[pipeline.bench]
strategy = "full_refresh"

[pipeline.bench.source.schema_pattern]
prefix = "raw__"
separator = "__"
components = ["source"]

[pipeline.bench.target]
catalog_template = "wh"
schema_template = "staging__{{source}}"

[pipeline.bench.target.governance]
auto_create_schemas = true

[pipeline.bench.execution]
concurrency = {concurrency}
"""


@dataclass(frozen=True)
class Part:
    name: str
    tables: int
    rows: int
    sources: int
    concurrency: int


@dataclass(frozen=True)
class Measured:
    part: str
    side: str
    wall_s: float
    cpu_s: float
    copied_rows: int


def find_rocky(explicit: str | None) -> str | None:
    candidate = explicit or os.environ.get("ROCKY_BIN") or "rocky"
    return shutil.which(candidate)


def make_source(path: Path, part: Part, storage_version: str) -> dict[tuple[str, str], int]:
    """The source warehouse of ``part``; returns (source, table) -> rows."""
    expected: dict[tuple[str, str], int] = {}
    config: dict[str, str | bool | int | float | list[str]] = {
        "storage_compatibility_version": storage_version
    }
    with duckdb.connect(str(path), config=config) as conn:
        for j in range(part.sources):
            conn.execute(f"CREATE SCHEMA raw__s{j}")
        for i in range(part.tables):
            source = f"s{i % part.sources}"
            conn.execute(
                f"""CREATE TABLE raw__{source}.t{i} AS
                    SELECT range AS id,
                           'customer ' || (range % 100000) AS name,
                           (range % 10000) / 100.0 AS amount,
                           TIMESTAMP '2024-01-01' + to_seconds(range) AS _fivetran_synced
                    FROM range({part.rows})"""
            )
            expected[(source, f"t{i}")] = part.rows
        conn.execute("CHECKPOINT")
    return expected


def target_counts(path: Path) -> dict[tuple[str, str], int]:
    with duckdb.connect(str(path), read_only=True) as conn:
        names = conn.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            "WHERE schema_name LIKE 'staging\\_\\_%' ESCAPE '\\'"
        ).fetchall()
        counts = {}
        for schema, table in names:
            (n,) = conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone() or (0,)
            counts[(schema.removeprefix("staging__"), table)] = int(n)
    return counts


def run_side(
    side: str, command: list[str], workdir: Path, env: dict[str, str]
) -> tuple[float, float, str]:
    log = workdir / "stderr.log"
    with (workdir / "output.json").open("wb") as out, log.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-600:]
        raise SystemExit(f"{side}: exit {proc.returncode} in {workdir}: {tail}")
    return wall, usage.ru_utime + usage.ru_stime, (workdir / "output.json").read_text()


def verify(side: str, workdir: Path, output: str, expected: dict[tuple[str, str], int]) -> int:
    copied = json.loads(output).get("tables_copied")
    if copied != len(expected):
        raise SystemExit(f"{side}: tables_copied {copied}, requested {len(expected)} ({workdir})")
    found = target_counts(workdir / "wh.duckdb")
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in expected if k in found and found[k] != expected[k])
    if missing or extra or wrong:
        raise SystemExit(
            f"{side}: target disagrees with source: missing {missing[:5]} ({len(missing)}), "
            f"extra {extra[:5]} ({len(extra)}), wrong row counts {wrong[:5]} ({len(wrong)})"
        )
    return sum(found.values())


def measure(
    part: Part,
    side: str,
    root: Path,
    template: Path,
    rocky: str,
    expected: dict[tuple[str, str], int],
) -> Measured:
    workdir = Path(tempfile.mkdtemp(prefix=f"{part.name}-{side}-", dir=root))
    shutil.copyfile(template, workdir / "wh.duckdb")
    toml = ROCKY_TOML.format(concurrency=part.concurrency)
    (workdir / "rocky.toml").write_text(toml)
    env = dict(os.environ)
    binary = rocky if side == "rocky" else str(OURS)
    if side == "ours":
        env["ROCKY_OPERATOR_BACKEND"] = "local"
    command = [
        binary,
        "-c",
        "rocky.toml",
        "-o",
        "json",
        "--state-path",
        str(workdir / "state.redb"),
        "run",
    ]
    wall, cpu, output = run_side(side, command, workdir, env)
    rows = verify(side, workdir, output, expected)
    shutil.rmtree(workdir)
    return Measured(part.name, side, wall, cpu, rows)


def run_part(
    part: Part, root: Path, rocky: str, repeat: int, storage_version: str
) -> list[Measured]:
    template = root / f"{part.name}-source.duckdb"
    expected = make_source(template, part, storage_version)
    print(
        f"part {part.name}: {part.tables} table(s) x {part.rows:,} rows in {part.sources} "
        f"source schema(s), concurrency {part.concurrency}",
        flush=True,
    )
    results = []
    for rep in range(repeat):
        order = ("rocky", "ours") if rep % 2 == 0 else ("ours", "rocky")
        for side in order:
            m = measure(part, side, root, template, rocky, expected)
            results.append(m)
            print(
                f"  rep {rep + 1} {side:5s} wall {m.wall_s:8.2f} s  cpu {m.cpu_s:8.2f} s  "
                f"rows verified {m.copied_rows:,}  load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    template.unlink()
    return results


def summarize(results: list[Measured], parts: list[Part]) -> None:
    print("\nmedians (ours / rocky; target in brackets):")
    for part in parts:
        walls = {
            s: [m.wall_s for m in results if m.part == part.name and m.side == s]
            for s in ("rocky", "ours")
        }
        cpus = {
            s: [m.cpu_s for m in results if m.part == part.name and m.side == s]
            for s in ("rocky", "ours")
        }
        rocky_wall, ours_wall = statistics.median(walls["rocky"]), statistics.median(walls["ours"])
        rocky_cpu, ours_cpu = statistics.median(cpus["rocky"]), statistics.median(cpus["ours"])
        per_rep = [o / r for o, r in zip(walls["ours"], walls["rocky"], strict=True)]
        print(
            f"  {part.name}: rocky {rocky_wall:.2f} s, ours {ours_wall:.2f} s -> wall "
            f"{ours_wall / rocky_wall:.2f}x (target <= {TARGETS[part.name]}x; per repetition "
            f"{', '.join(f'{r:.2f}' for r in per_rep)}); cpu rocky {rocky_cpu:.2f} s, ours "
            f"{ours_cpu:.2f} s -> {ours_cpu / rocky_cpu:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rocky-bin", help="the Rocky binary (default $ROCKY_BIN, else rocky on PATH)"
    )
    parser.add_argument("--parts", default="many,big", help="comma-separated: many, big")
    parser.add_argument("--tables", type=int, default=200)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--sources", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--big-rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--storage-version", default="v1.5.0", help="the source file's DuckDB storage"
    )
    parser.add_argument(
        "--work-dir", type=Path, help="where the warehouses go (default: a temp dir)"
    )
    args = parser.parse_args()
    rocky = find_rocky(args.rocky_bin)
    if rocky is None:
        print("rocky_compare: skipped: no Rocky binary (set ROCKY_BIN or pass --rocky-bin)")
        return
    if OURS is None:
        raise SystemExit("rocky_compare: rocky-operator-rocky is not installed beside this python")
    if args.repeat < 3:
        raise SystemExit("rocky_compare: --repeat must be at least 3")
    known = {
        "many": Part("many", args.tables, args.rows, args.sources, args.concurrency),
        "big": Part("big", 1, args.big_rows, 1, 1),
    }
    names = [n.strip() for n in args.parts.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise SystemExit(
            f"rocky_compare: --parts takes many and/or big, not {','.join(unknown) or '(empty)'}"
        )
    version = subprocess.run([rocky, "--version"], capture_output=True, text=True).stdout.strip()
    print(
        f"rocky: {rocky} ({version}); ours: {OURS} (local backend); "
        f"duckdb (python) {duckdb.__version__}"
    )
    parts = [known[n] for n in names]
    results: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="rocky-compare-", dir=args.work_dir) as tmp:
        for part in parts:
            results += run_part(part, Path(tmp), rocky, args.repeat, args.storage_version)
    summarize(results, parts)


if __name__ == "__main__":
    main()
