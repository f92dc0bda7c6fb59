"""The observe -> decide -> act loop of a local run over runner processes."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

from rocky_operator.local.fork import ForkServer
from rocky_operator.local.journal import Journal
from rocky_operator.local.manifest import Manifest
from rocky_operator.local.options import Clock, LocalOptions, runner_env
from rocky_operator.local.process import (
    DEFAULT_RUNNER_COMMAND,
    RunnerProcess,
)
from rocky_operator.local.progress import Reporter
from rocky_operator.logic.decide import (
    TERMINAL_STATES,
    Attempt,
    AttemptState,
    Decision,
    TableOutcome,
    decide,
)
from rocky_operator.logic.policy import RunPolicy
from rocky_operator.logic.tables import PlannedTable, file_stem, readable
from rocky_operator.logic.write_groups import write_groups
from rocky_runner.contract import FailureKind


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


def uses_fork_server(options: LocalOptions) -> bool:
    """Runners are forked from a server unless turned off or another command runs them."""
    return options.fork_server and tuple(options.runner_command) == DEFAULT_RUNNER_COMMAND


def launch_fork_server(
    manifest: Manifest, options: LocalOptions, work_dir: Path
) -> ForkServer | None:
    """The run's fork server, launched but not waited for (it imports the runner and the
    adapter meanwhile); None when runners are not forked. Raises OSError."""
    if not uses_fork_server(options):
        return None
    return ForkServer.launch(
        adapters=[str(manifest.spec.adapter.type)],
        log_path=work_dir / "forkserver.log",
        env={**os.environ, **runner_env(manifest)},
    )


class RunLoop:
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
        server: ForkServer | None = None,
    ) -> None:
        self.manifest = manifest
        self.tables = {t.key: t for t in tables}
        self.order = [t.key for t in tables]
        self.names = {t.key: t.asset_key for t in tables}
        # Log and result files are named by asset key; two keys that read the same once
        # made file-safe keep them apart with the table key.
        stems = Counter(file_stem(t.asset_key) for t in tables)
        self._file_stem = {
            t.key: stem if stems[stem] == 1 else f"{stem}.{t.key}"
            for t in tables
            for stem in (file_stem(t.asset_key),)
        }
        self.policy = RunPolicy.from_spec(manifest.spec)
        self.files = write_groups(tables)
        self.options = options
        self.reporter = reporter
        self.work_dir = work_dir
        self.clock = clock
        self.env = runner_env(manifest)
        self.attempts: dict[tuple[str, int], Attempt] = {}
        self.processes: dict[tuple[str, int], RunnerProcess] = {}
        self.cancelled = False
        self._settled: set[str] = set()
        self._ended: list[Attempt] = []
        self._reason: str | None = None
        self.journal = journal
        self._journaled: set[str] = set()
        #: A server launched before planning (``launch_fork_server``) or on first use.
        self.server: ForkServer | None = server
        self._use_server = uses_fork_server(options)

    def _fork_server(self) -> ForkServer | None:
        """The run's fork server, started on first use (again if it died); None: spawn
        a new interpreter per attempt (another runner command, or no server could start)."""
        if not self._use_server:
            return None
        if self.server is not None and not self.server.alive:
            self.server.close()
            self.server = None
        try:
            if self.server is None:
                self.server = launch_fork_server(self.manifest, self.options, self.work_dir)
            if self.server is not None and not self.server.ready:
                self.server.wait_ready()
        except OSError as exc:
            self.server = None
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
            self.reporter.halted(readable(decision.reason, self.names))

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
                    name=f"{self._file_stem[table]}-{number}",
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
