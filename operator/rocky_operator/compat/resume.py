"""Which earlier run ``rocky-operator-rocky run`` resumes, in Rocky's terms.

* ``--resume-latest``: the pipeline's most recent run (on a cluster the newest RockyRun this
  command created for the pipeline and ``--state-namespace``, found by label, so a retry in
  another pod finds it; locally the state directory's record). As in Rocky, a resume skips the
  tables that run copied and runs the rest; with no earlier run it warns and starts fresh.
* ``--resume RUN_ID``: that run (a RockyRun name, or a local run of the state directory); as
  in Rocky, an unknown id warns and starts fresh.
* ``ROCKY_OPERATOR_AUTO_RESUME_SECONDS=N`` (this command's own): a plain ``run`` acts as
  ``--resume-latest`` when the latest run of the pipeline had the same ``--filter``, did not
  succeed and ended at most N seconds ago: a Dagster retry of ``rocky.run(filter=...)``,
  unchanged, re-runs only the tables that did not copy. A latest run still ``Running`` that
  started at most N seconds ago counts too (rocky-sdk's watchdog killed the command that
  waited for it): on a cluster the retry waits for it and resumes it instead of copying the
  same tables beside it; locally its runners died with the command and its journal is read.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from rocky_operator.compat import state
from rocky_operator.compat.state import RunRecord

PROG = "rocky-operator-rocky"
_SUCCEEDED = ("Success", "success", "Succeeded")


def _latest(client: Any, pipeline: str, directory: Path, state_ns: str | None) -> RunRecord | None:
    from rocky_operator.compat.backends import cluster_latest

    if client is not None:
        return cluster_latest(client, pipeline, state_ns)
    record = state.latest(directory, pipeline)
    return record if record is None or record.backend == "local" else None


def choose_resume(
    args: argparse.Namespace,
    pipeline: str,
    directory: Path,
    client: Any,
    state_ns: str | None,
    auto_seconds: float | None,
    now: float,
    stderr: TextIO,
) -> RunRecord | None:
    """The run to resume, or None (a fresh run); notes on stderr say which and why."""
    from rocky_operator.compat.backends import cluster_find

    if args.resume_latest:
        record = _latest(client, pipeline, directory, state_ns)
        if record is None:
            stderr.write(f"{PROG}: --resume-latest: no earlier run of {pipeline}; starting fresh\n")
            return None
    elif args.resume:
        if client is not None:
            record = cluster_find(client, pipeline, args.resume)
        else:
            record = state.find(directory, pipeline, args.resume)
        if record is None:
            stderr.write(f"{PROG}: --resume {args.resume}: no such run; starting fresh\n")
            return None
    elif auto_seconds:
        record = _latest(client, pipeline, directory, state_ns)
        if (
            record is None
            or record.status in _SUCCEEDED
            or record.filter != args.filter
            or not 0 <= now - record.finished_at <= auto_seconds
        ):
            return None
        stderr.write(
            f"{PROG}: resuming {record.name} ({record.status}, "
            "ROCKY_OPERATOR_AUTO_RESUME_SECONDS): only the tables it did not copy run\n"
        )
        return record
    else:
        return None
    stderr.write(
        f"{PROG}: resuming {record.name} ({record.status}): only the tables it did not copy run\n"
    )
    return record
