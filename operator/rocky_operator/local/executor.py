"""Run a RockyRun on this machine: discover, plan, then let ``decide`` drive subprocesses.

The loop is the operator's reconcile loop with processes instead of pods: observe the
attempts (poll the processes, read their result files), call
:func:`~rocky_operator.logic.decide.decide` with the current time, carry out its
``abort`` (SIGTERM, then SIGKILL after a grace period) and ``start`` (a new runner
process), and repeat until the decision says the run is finished. The RunOutput JSON
goes to stdout, progress and the summary to stderr; the return value is the exit code.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from rocky_operator.local.fork import ForkServer
from rocky_operator.local.journal import Journal, default_journal_path
from rocky_operator.local.manifest import Manifest, ManifestError, load_manifest, localize
from rocky_operator.local.process import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_RUNNER_COMMAND,
    RunnerProcess,
)
from rocky_operator.local.progress import Reporter
from rocky_operator.local.resume import PreviousRun, load_previous, parse_kinds, select_tables
from rocky_operator.logic.decide import (
    TERMINAL_STATES,
    Attempt,
    AttemptState,
    Decision,
    TableOutcome,
    decide,
)
from rocky_operator.logic.policy import RunPolicy
from rocky_operator.logic.run_output import build_failed_run_output, build_run_output, exit_code
from rocky_operator.logic.tables import PlannedTable, adapter_settings, attempt_name, plan_tables
from rocky_operator.logic.write_groups import write_groups
from rocky_runner.contract import FailureKind

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LocalOptions:
    """How a local run is carried out (none of it changes what the manifest means)."""

    resume_from: str | None = None
    """A previous RunOutput JSON file: run only the tables it did not copy."""
    resume_kinds: frozenset[FailureKind] | None = None
    """With resume_from: only the tables that failed with these kinds."""
    mounts: Mapping[str, str] = field(default_factory=dict)
    """Pod path -> local directory, like the pod's volume mounts (``--mount /data=DIR``)."""
    runner_command: Sequence[str] = DEFAULT_RUNNER_COMMAND
    """The runner program; the default is the one a pod runs, via this interpreter."""
    logs_dir: Path | None = None
    """Keep each attempt's runner log and result file here; default: a temp dir, removed."""
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    """SIGTERM -> SIGKILL delay for aborted runners, in seconds."""
    poll_seconds: float = 0.25
    """Longest wait between two looks at the runners, in seconds. The loop wakes at
    once when a runner ends (fork server report or pidfd), so this bounds only how
    late a Ctrl-C or a process without a pidfd is noticed."""
    journal: Path | None = None
    """Where each table's final result is appended as soon as it is known (``--journal``);
    default :func:`~rocky_operator.local.journal.default_journal_path` of the run name.
    ``--resume-from`` accepts it, so a killed run can be resumed."""
    fork_server: bool = False
    """Fork each runner from one warm runner process per run (its interpreter start and
    imports paid once; each table still in a process of its own). Only with the default
    ``runner_command``. Off by default: from the CLI the server hangs (under investigation);
    False: a new interpreter per table."""


def _runner_env(manifest: Manifest) -> dict[str, str]:
    """Literal ``spec.runner.env`` values (``valueFrom`` needs a cluster and is skipped)."""
    env: dict[str, str] = {}
    for item in manifest.spec.runner.env or []:
        name, value = item.get("name"), item.get("value")
        if isinstance(name, str) and isinstance(value, str):
            env[name] = value
    return env


def _redactor(manifest: Manifest) -> Callable[[str], str]:
    """The runner's redactor (every form and fragment of a secret) over the runners'
    credentials: our environment's and the manifest's literal ``spec.runner.env``."""
    from rocky_runner.redact import Redactor

    return Redactor.from_env({**os.environ, **_runner_env(manifest)})


def discovery_failure_kind(exc: BaseException) -> FailureKind:
    """The kind of a discovery failure, as far as the operator side may tell.

    The runner's own errors say their kind (``ClassifiedError.failure_kind``, e.g. a
    missing DuckDB file is connection-failed); connector exceptions would need the
    runner's classifier, which the operator does not import (``.importlinter``), so
    they are ``unknown``. Either way the run fails with exit code 1.
    """
    for link in (exc, exc.__cause__, exc.__context__):
        kind = getattr(link, "failure_kind", None)
        if isinstance(kind, FailureKind):
            return kind
    return FailureKind.UNKNOWN


def discover(manifest: Manifest) -> list[PlannedTable]:
    """The run's tables: discovery through the runner's adapter, then planning.

    Raises whatever the adapter raises; the caller classifies it.
    """
    from rocky_runner.discovery import discover_tables

    spec = manifest.spec
    pattern = spec.source.schema_pattern
    found = discover_tables(
        adapter_settings(spec),
        prefix=pattern.prefix,
        separator=pattern.separator,
        components=pattern.components,
        catalog=spec.source.catalog,
        tables=spec.source.tables,
    )
    return plan_tables(spec, found)


@contextlib.contextmanager
def _on_sigint(handler: Callable[[], None]) -> Iterator[None]:
    """Route SIGINT to ``handler`` while the loop runs (main thread only), so a Ctrl-C
    never lands in the middle of starting a process or reading a result."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda _sig, _frame: handler())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Loop:
    """The observe -> decide -> act loop over runner processes."""

    def __init__(
        self,
        manifest: Manifest,
        tables: Sequence[PlannedTable],
        options: LocalOptions,
        reporter: Reporter,
        work_dir: Path,
        clock: Clock,
        journal: Journal | None = None,
    ) -> None:
        self.manifest = manifest
        self.tables = {t.key: t for t in tables}
        self.order = [t.key for t in tables]
        self.policy = RunPolicy.from_spec(manifest.spec)
        self.files = write_groups(tables)
        self.options = options
        self.reporter = reporter
        self.work_dir = work_dir
        self.clock = clock
        self.env = _runner_env(manifest)
        self.attempts: dict[tuple[str, int], Attempt] = {}
        self.processes: dict[tuple[str, int], RunnerProcess] = {}
        self.cancelled = False
        self._settled: set[str] = set()
        self._ended: list[Attempt] = []
        self._reason: str | None = None
        self.journal = journal
        self._journaled: set[str] = set()
        self.server: ForkServer | None = None
        self._use_server = options.fork_server and (
            tuple(options.runner_command) == DEFAULT_RUNNER_COMMAND
        )

    def _fork_server(self) -> ForkServer | None:
        """The run's fork server, started on first use (again if it died); None: spawn
        a new interpreter per attempt (another runner command, or no server could start)."""
        if not self._use_server:
            return None
        if self.server is not None and not self.server.alive:
            self.server.close()
            self.server = None
        if self.server is None:
            adapter = str(self.manifest.spec.adapter.type)
            try:
                self.server = ForkServer.start(
                    adapters=[adapter],
                    log_path=self.work_dir / "forkserver.log",
                    env={**os.environ, **self.env},
                )
            except OSError as exc:
                self._use_server = False
                self.reporter.line(f"fork server unavailable ({exc}); one process per table")
                return None
        return self.server

    def label(self, key: str) -> str:
        return "/".join(self.tables[key].asset_key)

    def _observe(self) -> list[Attempt]:
        ended, self._ended = self._ended, []
        for key, proc in list(self.processes.items()):
            proc.kill_if_overdue()
            attempt = proc.poll(self.clock())
            if attempt is not None:
                del self.processes[key]
                self.attempts[key] = attempt
                ended.append(attempt)
        return ended

    def _report(self, ended: Sequence[Attempt], decision: Decision) -> None:
        for attempt in ended:
            outcome = decision.outcomes[attempt.table]
            final = outcome.state in TERMINAL_STATES
            self.reporter.attempt_finished(self.label(attempt.table), attempt, final)
            if final:
                self._settled.add(attempt.table)
        for key, outcome in decision.outcomes.items():
            if outcome.state in TERMINAL_STATES and key not in self._settled:
                self._settled.add(key)
                self.reporter.table_settled()
        if self.journal is not None:
            for key, outcome in decision.outcomes.items():
                if outcome.state in TERMINAL_STATES and key not in self._journaled:
                    self._journaled.add(key)
                    self._journal(key, outcome)
        if decision.reason and decision.reason != self._reason:
            self._reason = decision.reason
            self.reporter.halted(decision.reason)

    def _journal(self, key: str, outcome: TableOutcome) -> None:
        assert self.journal is not None
        last = self.attempts.get((key, outcome.attempts))
        result = last.result if last is not None else None
        self.journal.table(
            self.tables[key].asset_key,
            str(outcome.state),
            attempts=outcome.attempts,
            failure_kind=str(outcome.failure_kind) if outcome.failure_kind else None,
            error=outcome.error,
            rows_copied=result.rows_copied if result is not None else None,
        )

    def _act(self, decision: Decision) -> None:
        for key in decision.abort:
            proc = self.processes.get(key)
            if proc is not None:
                proc.terminate(self.options.grace_seconds)
        for table, number in decision.start:
            now = self.clock()
            try:
                proc = RunnerProcess.start(
                    self.tables[table],
                    number,
                    work_dir=self.work_dir,
                    name=attempt_name(self.manifest.name, table, number),
                    now=now,
                    command=self.options.runner_command,
                    extra_env=self.env,
                    server=self._fork_server(),
                )
            except OSError as exc:
                # Like a pod whose image cannot be pulled: the attempt fails as unknown.
                failed = Attempt(
                    table=table,
                    number=number,
                    state=AttemptState.FAILED,
                    started_at=now,
                    finished_at=now,
                    failure_kind=FailureKind.UNKNOWN,
                    error=f"could not start the runner {self.options.runner_command[0]!r}: {exc}",
                )
                self.attempts[(table, number)] = failed
                self._ended.append(failed)
                continue
            self.processes[proc.key] = proc
            self.attempts[proc.key] = proc.running_attempt()
            self.reporter.attempt_started(self.label(table), number)

    def interrupt(self) -> None:
        """Ctrl-C: the first stops the run like a cancellation (runners get SIGTERM and
        report), a second kills what is left at once."""
        if self.cancelled:
            for proc in self.processes.values():
                proc.stopped = True
                proc.kill_at = 0.0
        self.cancelled = True

    def run(self) -> Decision:
        decision: Decision | None = None
        decided_cancelled = False
        with _on_sigint(self.interrupt):
            while True:
                ended = self._observe()
                now = self.clock()
                # Decide again only when something it looks at changed: an attempt
                # ended, the run was cancelled, or a retry came due.
                if (
                    decision is None
                    or ended
                    or self.cancelled != decided_cancelled
                    or (decision.requeue_at is not None and now >= decision.requeue_at)
                ):
                    decided_cancelled = self.cancelled
                    decision = decide(
                        self.order,
                        self.attempts.values(),
                        self.policy,
                        now,
                        cancelled=decided_cancelled,
                        files=self.files,
                    )
                    self._report(ended, decision)
                    if decision.finished:
                        return decision
                    self._act(decision)
                    if self._ended:
                        continue  # a runner could not start: decide again at once
                self._wait(decision.requeue_at)

    def _wait(self, requeue_at: datetime | None) -> None:
        """Sleep until a runner may have ended, a retry or a SIGKILL is due, or at most
        ``poll_seconds``."""
        timeout = self.options.poll_seconds
        if requeue_at is not None:
            timeout = min(timeout, (requeue_at - self.clock()).total_seconds())
        kill_times = [p.kill_at for p in self.processes.values() if p.kill_at is not None]
        if kill_times:
            timeout = min(timeout, min(kill_times) - time.monotonic())
        timeout = max(timeout, 0.0)
        fds = {p.wait_fd() for p in self.processes.values()}
        if not self.processes or None in fds:
            # Nothing to wait on (or a process without a pidfd): look again shortly.
            time.sleep(min(timeout, 0.05) if self.processes else timeout)
            return
        with contextlib.suppress(InterruptedError):
            select.select([fd for fd in fds if fd is not None], [], [], timeout)

    def close(self) -> None:
        for proc in self.processes.values():
            proc.close()
        if self.server is not None:
            self.server.close()
            self.server = None


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
    try:
        planned = discover(manifest)
    except Exception as exc:  # the run's boundary: any discovery failure ends it as a failure
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
        _print_output(doc, stdout)
        reporter.line(f"rocky-operator: {message} [{kind}]", "bold red")
        reporter.summary(doc)
        return exit_code(doc["status"])

    note = None
    if previous is not None:
        chosen = select_tables(planned, previous, options.resume_kinds)
        kinds = ",".join(sorted(options.resume_kinds)) if options.resume_kinds else None
        note = (
            f"resuming from {previous.source}: {len(chosen)} of {len(planned)} table(s) to run"
            + (f" (failed with {kinds})" if kinds else "")
        )
        planned = chosen

    work_dir = options.logs_dir or Path(tempfile.mkdtemp(prefix=f"rocky-local-{manifest.name}-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    journal = _open_journal(manifest, options, started, previous, reporter)
    loop = _Loop(manifest, planned, options, reporter, work_dir, clock, journal)
    reporter.start(manifest.name, len(planned), spec.concurrency, note)
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
    )
    _print_output(doc, stdout)
    if journal is not None:
        journal.finish(str(doc["status"]))
        journal.close()
    reporter.summary(doc)
    if options.logs_dir is not None:
        reporter.line(f"runner logs and result files: {options.logs_dir}")
    return exit_code(doc["status"])


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
            carried_copied=previous.copied if previous else (),
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
