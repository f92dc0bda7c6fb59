"""``rocky-operator demo``: build a DuckDB warehouse with planted problems and run the
demo manifest on it, exactly as ``rocky-operator local`` would.

The run's stdout (RunOutput JSON), stderr (progress and summary) and exit code are
those of ``rocky-operator local rockyrun.yaml --mount /data=WORKDIR``; the demo only
adds ``demo:`` lines before it, saying what was built and what is planted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from importlib.resources import as_file
from pathlib import Path

HELP = "build a demo DuckDB warehouse and run examples/demo/rockyrun.yaml on it locally"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        type=Path,
        help="where to build the warehouse (default: a new temporary directory, kept)",
    )
    parser.add_argument(
        "--logs-dir",
        metavar="DIR",
        type=Path,
        help="keep each attempt's runner log and result file in DIR",
    )


def run(args: argparse.Namespace) -> int:
    from rocky_operator.demo import manifest_resource
    from rocky_operator.demo.warehouse import PLANTED, POD_DATA_DIR, build_warehouse, hold_lock
    from rocky_operator.local.executor import LocalOptions, run_local

    workdir: Path = (args.workdir or Path(tempfile.mkdtemp(prefix="rocky-demo-"))).resolve()
    built = build_warehouse(workdir)
    err = sys.stderr
    err.write(f"demo: built {built.warehouse} ({built.tables} tables in {built.schemas} schemas)\n")
    for problem in PLANTED:
        err.write(
            f"demo: planted {problem.failure_kind}: {'/'.join(problem.asset_key)}: "
            f"{problem.cause}\n"
        )
    err.write(
        "demo: the same run by hand: rocky-operator local examples/demo/rockyrun.yaml "
        f"--mount {POD_DATA_DIR}={workdir}\n"
    )
    err.flush()
    options = LocalOptions(mounts={POD_DATA_DIR: str(workdir)}, logs_dir=args.logs_dir)
    with as_file(manifest_resource()) as manifest, hold_lock(built.locked_target):
        return run_local(manifest, options, stdout=sys.stdout, stderr=err)
