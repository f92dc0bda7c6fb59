"""Run a RockyRun on this machine: discover, plan, then let ``decide`` drive subprocesses.

The loop is the operator's reconcile loop with processes instead of pods: observe the
attempts (poll the processes, read their result files), call
:func:`~rocky_operator.logic.decide.decide` with the current time, carry out its
``abort`` (SIGTERM, then SIGKILL after a grace period) and ``start`` (a new runner
process), and repeat until the decision says the run is finished. The RunOutput JSON
goes to stdout, progress and the summary to stderr; the return value is the exit code.
"""

from __future__ import annotations

__all__ = ["LocalOptions", "discover", "discovery_failure_kind", "execute", "run_local"]

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from rocky_operator.local.fork import ForkServer
from rocky_operator.local.journal import Journal, default_journal_path
from rocky_operator.local.manifest import Manifest, ManifestError, load_manifest, localize
from rocky_operator.local.options import Clock, LocalOptions, runner_env, utc_now
from rocky_operator.local.progress import Reporter
from rocky_operator.local.resume import PreviousRun, load_previous, parse_kinds, select_tables
from rocky_operator.local.run_loop import RunLoop, launch_fork_server
from rocky_operator.logic.run_output import build_failed_run_output, build_run_output, exit_code
from rocky_operator.logic.tables import (
    Exclusion,
    PlannedTable,
    adapter_settings,
    no_tables_message,
    plan_exclusions,
    plan_tables,
)
from rocky_runner.contract import FailureKind
from rocky_runner.redact_stream import redacted_std_streams


def _redactor(manifest: Manifest) -> Callable[[str], str]:
    """The runner's redactor (every form and fragment of a secret) over the runners'
    credentials: our environment's and the manifest's literal ``spec.runner.env``."""
    from rocky_runner.redact import Redactor

    return Redactor.from_env({**os.environ, **runner_env(manifest)})


def discovery_failure_kind(exc: BaseException) -> FailureKind:
    """The kind of a discovery failure, the same as a discovery pod reports it: the
    runner's classifier (through its public discovery API) over the exception chain, e.g.
    a missing DuckDB file is connection-failed and a refused login auth-failed. Either
    way the run fails with exit code 1."""
    from rocky_runner.discovery import classify_discovery_failure

    return classify_discovery_failure(exc)


def discover(manifest: Manifest) -> tuple[list[PlannedTable], list[Exclusion]]:
    """The run's tables and the requested tables left out (missing, views): discovery
    through the runner's adapter, then planning.

    Raises whatever the adapter raises; the caller classifies it.
    """
    from rocky_runner.discovery import discover as discover_source

    spec = manifest.spec
    pattern = spec.source.schema_pattern
    found = discover_source(
        adapter_settings(spec),
        prefix=pattern.prefix,
        separator=pattern.separator,
        components=pattern.components,
        catalog=spec.source.catalog,
        tables=spec.source.tables,
        include_views=spec.source.include_views,
    )
    planned = plan_tables(spec, found.tables)
    return planned, plan_exclusions(spec, found.excluded, planned)


def execute(
    manifest: Manifest,
    options: LocalOptions,
    *,
    stdout: TextIO,
    stderr: TextIO,
    previous: PreviousRun | None = None,
    clock: Clock = utc_now,
) -> int:
    """Run a validated manifest; print the RunOutput; return the exit code."""
    reporter = Reporter(stderr)
    started = clock()
    spec = manifest.spec
    work_dir = options.logs_dir or Path(tempfile.mkdtemp(prefix=f"rocky-local-{manifest.name}-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    # The fork server imports the runner and the adapter while discovery and planning run.
    server = _launch_server(manifest, options, work_dir)
    try:
        # Discovery runs the connector in this process: what it prints is redacted too.
        with redacted_std_streams(_redactor(manifest), stdout=False):
            planned, excluded = discover(manifest)
    except Exception as exc:  # the run's boundary: any discovery failure ends it as a failure
        if server is not None:
            server.close()
        if options.logs_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
        kind = discovery_failure_kind(exc)
        message = _redactor(manifest)(f"discovery failed: {type(exc).__name__}: {exc}")
        doc = build_failed_run_output(
            message,
            started_at=started,
            finished_at=clock(),
            filter=spec.filter,
            failure_kind=kind,
            resumed_from=previous.source if previous else None,
        )
        if previous is not None:  # nothing ran: the chain is carried on whole
            doc.update(previous.carried())
        _print_output(doc, stdout)
        reporter.line(f"rocky-operator: {message} [{kind}]", "bold red")
        reporter.summary(doc)
        return exit_code(doc["status"])

    note = None
    discovered = len(planned)
    if previous is not None:
        chosen = select_tables(planned, previous, options.resume_kinds)
        kinds = ",".join(sorted(options.resume_kinds)) if options.resume_kinds else None
        note = (
            f"resuming from {previous.source}: {len(chosen)} of {len(planned)} table(s) to run"
            + (f" (failed with {kinds})" if kinds else "")
        )
        planned = chosen
        previous = replace(previous, run_now=frozenset(t.asset_key for t in chosen))

    journal = _open_journal(manifest, options, started, previous, reporter)
    loop = RunLoop(manifest, planned, options, reporter, work_dir, clock, journal, server)
    reporter.start(manifest.name, len(planned), spec.concurrency, note)
    empty = no_tables_message(
        spec, planned=len(planned), resumed=discovered - len(planned), excluded=excluded
    )
    if empty:
        reporter.no_tables(empty)
    if journal is not None:
        reporter.line(f"journal (--resume-from it after a crash): {journal.path}")
    try:
        decision = loop.run()
    finally:
        loop.close()
        reporter.stop()
        if options.logs_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    doc = build_run_output(
        planned,
        decision.outcomes,
        started_at=started,
        finished_at=clock(),
        filter=spec.filter,
        resumed_from=previous.source if previous else None,
        concurrency=spec.concurrency,
        interrupted=loop.cancelled,
        excluded=excluded,
    )
    if previous is not None:  # what the runs before this one copied and still fail
        doc.update(previous.carried())
    _print_output(doc, stdout)
    if journal is not None:
        journal.finish(str(doc["status"]))
        journal.close()
    reporter.summary(doc)
    if empty:
        reporter.no_tables(empty)
    if options.logs_dir is not None:
        reporter.line(f"runner logs and result files: {options.logs_dir}")
    return exit_code(doc["status"])


def _launch_server(manifest: Manifest, options: LocalOptions, work_dir: Path) -> ForkServer | None:
    try:
        return launch_fork_server(manifest, options, work_dir)
    except OSError:
        return None  # the run loop tries again on first use, and says why it cannot


def _open_journal(
    manifest: Manifest,
    options: LocalOptions,
    started: datetime,
    previous: PreviousRun | None,
    reporter: Reporter,
) -> Journal | None:
    """The run's journal; at the default location a failure to create it is a warning
    (the run goes on without one); an explicit ``--journal`` was checked up front."""
    path = options.journal or default_journal_path(manifest.name)
    try:
        return Journal.create(
            path,
            run_name=manifest.name,
            started_at=started,
            resumed_from=previous.source if previous else None,
            carried=previous.carried() if previous else None,
        )
    except OSError as exc:
        reporter.line(f"rocky-operator: no journal (cannot write {path}: {exc.strerror or exc})")
        return None


def _check_writable(path: Path) -> None:
    """``--journal PATH`` must be writable before anything runs (exit 1 otherwise)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise ManifestError(f"--journal {path}: cannot write: {exc.strerror or exc}") from None


def _print_output(doc: Mapping[str, Any], stdout: TextIO) -> None:
    stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    stdout.flush()


def run_local(
    manifest_path: str | Path,
    options: LocalOptions,
    *,
    stdout: TextIO,
    stderr: TextIO,
    resume_kinds_text: str | None = None,
    clock: Clock = utc_now,
) -> int:
    """``rocky-operator local``: load, check, then run. A wrong manifest or resume file
    gets one message on stderr and exit code 1, and nothing runs."""
    try:
        manifest = localize(load_manifest(manifest_path), options.mounts)
        previous = load_previous(options.resume_from) if options.resume_from else None
        kinds = options.resume_kinds
        if resume_kinds_text is not None:
            try:
                kinds = parse_kinds(resume_kinds_text)
            except ValueError as exc:
                raise ManifestError(f"--resume-kinds: {exc}") from None
        if kinds is None and manifest.spec.resume_kinds:
            kinds = parse_kinds(manifest.spec.resume_kinds)
        if kinds and previous is None:
            raise ManifestError("--resume-kinds needs --resume-from PREVIOUS.json")
        if manifest.spec.resume_from and previous is None:
            raise ManifestError(
                f"{manifest.path}: spec.resumeFrom: names the RockyRun "
                f"{manifest.spec.resume_from!r}, which a local run cannot read; "
                "pass its RunOutput with --resume-from PREVIOUS.json"
            )
        if options.journal is not None:
            _check_writable(options.journal)
    except ManifestError as exc:
        stderr.write(f"rocky-operator: {exc}\n")
        stderr.flush()
        return 1
    options = replace(options, resume_kinds=kinds)
    return execute(manifest, options, stdout=stdout, stderr=stderr, previous=previous, clock=clock)
