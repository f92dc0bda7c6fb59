"""The executor's side of the runner fork server (``python -m rocky_runner.forkserver``).

One server per local run pays the interpreter start and the runner's imports once;
every attempt is still a process of its own, forked from it (see the server's module
docstring for why that is safe and what the protocol is). A :class:`ForkedRunner`
looks to :class:`~rocky_operator.local.process.RunnerProcess` like a
:class:`subprocess.Popen`: ``poll``, ``send_signal``, ``kill``, ``wait``, ``returncode``.

The server is started with ``ROCKY_FORKSERVER_PARENT`` (it sets ``PR_SET_PDEATHSIG``
against us) and each runner sets it against the server, so no runner outlives a
SIGKILLed executor. If the server dies, its runners die with it; they are reported
as killed and the next attempt starts a new server.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from rocky_runner.forkserver import EXIT_FORK_FAILED

__all__ = ["EXIT_FORK_FAILED", "ForkServer", "ForkServerError", "ForkedRunner"]

#: The server program: this interpreter, the runner's fork server module.
FORKSERVER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "rocky_runner.forkserver")
#: How long the server may take to import the runner, in seconds.
READY_TIMEOUT_SECONDS = 120.0


class ForkServerError(OSError):
    """The fork server could not be started or is gone."""


class ForkedRunner:
    """One runner forked by the server, with the part of Popen's interface we use."""

    def __init__(self, server: ForkServer, runner_id: str) -> None:
        self.server = server
        self.id = runner_id
        self.pid: int | None = None
        self.returncode: int | None = None
        self.start_error: str | None = None
        """Why the server could not fork it (the attempt then never ran)."""

    def poll(self) -> int | None:
        if self.returncode is None:
            self.server.pump()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            self.server.signal(self.id, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(["rocky-runner", self.id], timeout or 0.0)
            self.server.wait_readable(left)
        return code


class ForkServer:
    """A running fork server and the runners it forked for us."""

    def __init__(self, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        self.process = process
        self._log = log
        self._stdout = process.stdout
        self._stdin = process.stdin
        self._buffer = b""
        self.runners: dict[str, ForkedRunner] = {}
        self.alive = True
        self._ready = False
        self._log_path: Path | None = None
        self._launched = time.monotonic()

    @classmethod
    def start(
        cls,
        *,
        adapters: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        command: Sequence[str] = FORKSERVER_COMMAND,
    ) -> ForkServer:
        """Start the server with ``adapters``' modules preloaded; wait until it is ready."""
        server = cls.launch(adapters=adapters, log_path=log_path, env=env, command=command)
        server.wait_ready()
        return server

    @classmethod
    def launch(
        cls,
        *,
        adapters: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        command: Sequence[str] = FORKSERVER_COMMAND,
    ) -> ForkServer:
        """Start the server without waiting for it: it imports its modules while the
        caller goes on (discovery, planning); ``wait_ready`` before the first ``spawn``."""
        server_env = dict(os.environ if env is None else env)
        server_env["ROCKY_FORKSERVER_PARENT"] = str(os.getpid())
        log = log_path.open("ab")
        try:
            process = subprocess.Popen(
                [*command, "--preload", ",".join(adapters)],
                env=server_env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # a Ctrl-C in the terminal reaches us, not it
            )
        except OSError:
            log.close()
            raise
        server = cls(process, log)
        server._log_path = log_path
        server._launched = time.monotonic()
        assert server._stdout is not None
        os.set_blocking(server._stdout.fileno(), False)
        return server

    @property
    def ready(self) -> bool:
        return self._ready

    def wait_ready(self) -> None:
        """Wait for the server's "ready" line (at most READY_TIMEOUT_SECONDS from its
        launch); raises ForkServerError, the server closed, if it exits or never gets there."""
        deadline = self._launched + READY_TIMEOUT_SECONDS
        while True:
            self.pump()
            # Checked after every read: waiting once more after the "ready" line was
            # read would block until the deadline (nothing else arrives before a start).
            if self._ready:
                return
            if not self.alive:
                self.close()
                raise ForkServerError(f"the runner fork server exited; see {self._log_path}")
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise ForkServerError(f"the runner fork server did not start; see {self._log_path}")
            self.wait_readable(left)

    def fileno(self) -> int:
        """Readable when the server reported something (a runner started or ended)."""
        assert self._stdout is not None
        return self._stdout.fileno()

    def wait_readable(self, timeout: float | None) -> None:
        if self.alive:
            select.select([self.fileno()], [], [], timeout)

    def spawn(self, runner_id: str, env: Mapping[str, str], log_path: Path) -> ForkedRunner:
        """Ask for a runner with exactly ``env``; its output goes to ``log_path``."""
        if not self.alive:
            raise ForkServerError("the runner fork server is gone")
        runner = ForkedRunner(self, runner_id)
        self.runners[runner_id] = runner
        self._send({"op": "start", "id": runner_id, "env": dict(env), "log": str(log_path)})
        return runner

    def signal(self, runner_id: str, sig: int) -> None:
        with contextlib.suppress(ForkServerError):
            self._send({"op": "signal", "id": runner_id, "signal": int(sig)})

    def _send(self, message: Mapping[str, Any]) -> None:
        assert self._stdin is not None
        try:
            self._stdin.write((json.dumps(message) + "\n").encode())
            self._stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            self._gone()
            raise ForkServerError("the runner fork server is gone") from exc

    def pump(self) -> None:
        """Read whatever the server reported so far, without blocking."""
        if not self.alive:
            return
        assert self._stdout is not None
        while True:
            try:
                chunk = os.read(self._stdout.fileno(), 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                self._gone()
                return
            self._buffer += chunk
            *lines, self._buffer = self._buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    self._dispatch(json.loads(line))

    def _dispatch(self, message: Mapping[str, Any]) -> None:
        op = message.get("op")
        if op == "ready":
            self._ready = True
            return
        runner = self.runners.get(str(message.get("id")))
        if runner is None:
            return
        if op == "started":
            runner.pid = int(message["pid"])
        elif op == "exited":
            runner.returncode = int(message["returncode"])
            runner.start_error = message.get("error")
            del self.runners[runner.id]

    def _gone(self) -> None:
        """The server ended: its runners died with it (PR_SET_PDEATHSIG)."""
        self.alive = False
        for runner in self.runners.values():
            runner.returncode = -signal.SIGKILL
        self.runners.clear()

    def close(self) -> None:
        """End the server: closing its input makes it kill what still runs and exit."""
        if self._stdin is not None:
            with contextlib.suppress(OSError):
                self._stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self._stdout is not None:
            self._stdout.close()
        self._log.close()
        self._gone()
