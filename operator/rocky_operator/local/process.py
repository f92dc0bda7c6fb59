"""One attempt as a local runner subprocess, observed like a pod.

The process gets exactly what a pod gets: ``ROCKY_TASK`` (the task JSON) and
``ROCKY_RESULT_PATH`` (here a per-attempt file instead of /dev/termination-log).
When it ends, its result is read the way the operator reads a terminated pod: a
valid result message wins; without one, the exit code 10..16 names the kind; any
other end is ``unknown`` with the exit code or signal in the error.

A process is started in one of two ways, with the same environment either way: forked
by the run's :class:`~rocky_operator.local.fork.ForkServer` (the default runner: its
imports are paid once per run), or as a new program (any other ``runner_command``).
Either way it dies with the executor (``PR_SET_PDEATHSIG``), so a SIGKILLed
``rocky-operator local`` leaves no runner behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from rocky_operator.local.fork import ForkedRunner, ForkServer
from rocky_operator.logic.decide import Attempt, AttemptState
from rocky_operator.logic.results import result_attempt, stopped_by_run
from rocky_operator.logic.tables import PlannedTable
from rocky_runner.contract import (
    ENV_RESULT_PATH,
    ENV_TASK,
    KIND_BY_EXIT_CODE,
    FailureKind,
    MessageError,
    decode_result,
)

#: The runner entry point, the same program a pod runs (``rocky-runner``).
DEFAULT_RUNNER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "rocky_runner")
#: How long an aborted runner gets between SIGTERM and SIGKILL, in seconds (a pod's
#: terminationGracePeriodSeconds plays this part in a cluster).
DEFAULT_GRACE_SECONDS = 10.0


#: prctl(2) option: the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1


def _die_with(parent_pid: int) -> None:
    """In the child before exec: SIGKILL it when the executor dies (Linux; else a no-op).

    The attribute survives exec, so the runner (or a wrapper script ``exec``-ing it)
    keeps it. Exits at once if the executor died before the call.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        os._exit(1)


def classify_exit(returncode: int) -> tuple[FailureKind, str]:
    """The failure kind and error of a runner that ended without a result message."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return FailureKind.UNKNOWN, f"runner was killed by {name} and left no result message"
    kind = KIND_BY_EXIT_CODE.get(returncode)
    if kind is not None:
        return kind, f"runner exited with code {returncode} ({kind}) and no readable result message"
    return (
        FailureKind.UNKNOWN,
        f"runner exited with code {returncode} and left no result message",
    )


@dataclass
class RunnerProcess:
    """A running attempt: the process, its result file and its log."""

    table: PlannedTable
    number: int
    started_at: datetime
    result_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | ForkedRunner
    kill_at: float | None = field(default=None)
    """Monotonic time at which an aborted process gets SIGKILL."""
    stopped: bool = False
    """Whether we told it to stop (fail-fast, cancellation)."""
    _log: IO[bytes] | None = field(default=None, repr=False)
    _pidfd: int | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        table: PlannedTable,
        number: int,
        *,
        work_dir: Path,
        name: str,
        now: datetime,
        command: Sequence[str] = DEFAULT_RUNNER_COMMAND,
        extra_env: Mapping[str, str] | None = None,
        server: ForkServer | None = None,
    ) -> RunnerProcess:
        """Start the runner for one attempt, with the environment a pod would have:
        forked by ``server`` when given (``command`` is then the server's), else
        ``command`` as a new process."""
        result_path = work_dir / f"{name}.result.json"
        log_path = work_dir / f"{name}.log"
        result_path.unlink(missing_ok=True)
        env = dict(os.environ)
        env.update(extra_env or {})
        env[ENV_TASK] = table.task.model_dump_json(by_alias=True)
        env[ENV_RESULT_PATH] = str(result_path)
        if server is not None:
            log_path.write_bytes(b"")
            forked = server.spawn(name, env, log_path)
            return cls(
                table=table,
                number=number,
                started_at=now,
                result_path=result_path,
                log_path=log_path,
                process=forked,
            )
        log = log_path.open("wb")
        parent = os.getpid()
        try:
            process = subprocess.Popen(
                list(command),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches us, not it
                preexec_fn=lambda: _die_with(parent),
            )
        except OSError:
            log.close()
            raise
        return cls(
            table=table,
            number=number,
            started_at=now,
            result_path=result_path,
            log_path=log_path,
            process=process,
            _log=log,
            _pidfd=_open_pidfd(process.pid),
        )

    @property
    def key(self) -> tuple[str, int]:
        return (self.table.key, self.number)

    def running_attempt(self) -> Attempt:
        return Attempt(
            table=self.table.key,
            number=self.number,
            state=AttemptState.RUNNING,
            started_at=self.started_at,
        )

    def wait_fd(self) -> int | None:
        """A descriptor that becomes readable when this process may have ended (the
        fork server's report pipe, or a pidfd); None: poll it."""
        if isinstance(self.process, ForkedRunner):
            return self.process.server.fileno() if self.process.server.alive else None
        return self._pidfd

    def _release(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def poll(self, now: datetime) -> Attempt | None:
        """The finished attempt once the process has ended; None while it runs."""
        code = self.process.poll()
        if code is None:
            return None
        self._release()
        start_error = getattr(self.process, "start_error", None)
        if start_error is not None:
            # Like a pod whose image cannot be pulled: the attempt never ran.
            return Attempt(
                table=self.table.key,
                number=self.number,
                state=AttemptState.FAILED,
                started_at=self.started_at,
                finished_at=now,
                failure_kind=FailureKind.UNKNOWN,
                error=f"could not start the runner: {start_error}",
            )
        try:
            result = decode_result(self.result_path.read_bytes())
        except (OSError, MessageError):
            kind, error = classify_exit(code)
            attempt = Attempt(
                table=self.table.key,
                number=self.number,
                state=AttemptState.FAILED,
                started_at=self.started_at,
                finished_at=now,
                failure_kind=kind,
                error=error,
            )
        else:
            attempt = result_attempt(
                table=self.table.key,
                number=self.number,
                started_at=self.started_at,
                finished_at=now,
                result=result,
                exit_code=code,
                asset_key=self.table.asset_key,
            )
        # Stopped by us (fail-fast, Ctrl-C) before it committed: not the table's failure.
        return stopped_by_run(attempt, "the run was stopping") if self.stopped else attempt

    def terminate(self, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> None:
        """SIGTERM now (the runner then writes a transient result), SIGKILL after grace."""
        if self.process.poll() is None and self.kill_at is None:
            self.stopped = True
            self.process.send_signal(signal.SIGTERM)
            self.kill_at = time.monotonic() + grace_seconds

    def kill_if_overdue(self) -> None:
        if self.kill_at is not None and time.monotonic() >= self.kill_at:
            if self.process.poll() is None:
                self.process.kill()
            self.kill_at = None

    def close(self) -> None:
        """Make sure the process is gone (used when the executor itself stops)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._release()


def _open_pidfd(pid: int) -> int | None:
    """A pidfd of ``pid`` (Linux >= 5.3), to wait on without polling; None elsewhere."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
