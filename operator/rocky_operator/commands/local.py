"""``rocky-operator local FILE.yaml``: run a RockyRun manifest on this machine.

Each table runs in its own runner subprocess, through the same entry point and
result-file protocol as a pod, driven by the same decision core as the operator.
RunOutput JSON on stdout, progress and a summary on stderr, exit code 0 / 2 / 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "run a RockyRun manifest on this machine, one runner subprocess per table"


def parse_mount(text: str) -> tuple[str, str]:
    """``/data=./warehouse`` -> (pod path, local directory)."""
    pod, sep, local = text.partition("=")
    if not sep or not pod.startswith("/") or not local:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not POD_PATH=LOCAL_DIR (e.g. /data=./warehouse)"
        )
    return pod.rstrip("/") or "/", str(Path(local).resolve())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", metavar="FILE.yaml", help="the RockyRun manifest")
    parser.add_argument(
        "--resume-from",
        metavar="PREVIOUS.json",
        help="RunOutput of an earlier run: run only the tables it did not copy",
    )
    parser.add_argument(
        "--resume-kinds",
        metavar="KINDS",
        help="with --resume-from: only tables that failed with these failure kinds "
        "(comma-separated, e.g. transient,connection-failed)",
    )
    parser.add_argument(
        "--mount",
        metavar="POD_PATH=LOCAL_DIR",
        action="append",
        type=parse_mount,
        default=[],
        help="read a path the manifest gives as a pod sees it (e.g. adapter.duckdb.path "
        "under a volume mounted at /data) from a local directory; repeatable",
    )
    parser.add_argument(
        "--logs-dir",
        metavar="DIR",
        type=Path,
        help="keep each attempt's runner log and result file in DIR",
    )
    parser.add_argument(
        "--journal",
        metavar="PATH",
        type=Path,
        help="append each table's result here as it finishes (default "
        "$XDG_STATE_HOME/rocky-operator/local/NAME.journal.jsonl); --resume-from accepts it",
    )
    parser.add_argument(
        "--fork-server",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fork each table's runner process from one warm runner process per run "
        "(default; the interpreter start and imports are paid once); --no-fork-server "
        "starts a new interpreter per table",
    )


def run(args: argparse.Namespace) -> int:
    from rocky_operator.local.executor import LocalOptions, run_local

    options = LocalOptions(
        resume_from=args.resume_from,
        mounts=dict(args.mount),
        logs_dir=args.logs_dir,
        journal=args.journal,
        fork_server=args.fork_server,
    )
    return run_local(
        args.manifest,
        options,
        stdout=sys.stdout,
        stderr=sys.stderr,
        resume_kinds_text=args.resume_kinds,
    )
