"""``python -m rocky_runner.forkserver``: start runners by ``fork`` from a warm interpreter.

The local executor pays an interpreter start and the runner's imports (pydantic, the
adapter, DuckDB) once, here, instead of once per table. Every table still runs in a
process of its own, forked from this server: a crash, SIGKILL or OOM kill of one
runner ends that process only, and the server reports it like any other exit.

What makes forking safe here: the server only imports modules. It never opens a
connection, starts a thread (native threads counted in /proc/self/task before every fork)
or touches a DuckDB database, so a child starts with no connection, no thread pool and
no lock it did not take itself. ``--preload`` names the adapters whose modules (and so
their client libraries' top-level imports) are loaded before the first fork.

Protocol: one JSON object per line. The executor writes to our stdin:

- ``{"op": "start", "id": ID, "env": {...}, "log": PATH}``: fork a runner with exactly
  that environment, stdin ``/dev/null``, stdout and stderr appended to ``PATH``;
- ``{"op": "signal", "id": ID, "signal": N}``: send signal N to that runner if it has
  not been reaped yet (so a reused pid is never signalled).

We write to stdout ``{"op": "started", "id": ID, "pid": PID}`` and, when the runner
ends, ``{"op": "exited", "id": ID, "returncode": RC}`` (negative: killed by that
signal, as :attr:`subprocess.Popen.returncode`); a runner that could not be forked
exits with :data:`EXIT_FORK_FAILED` and an ``error``. End of stdin means the
executor is gone: every runner still running is killed and the server exits.

Each runner gets ``PR_SET_PDEATHSIG`` = SIGKILL, and the server gets it from the
executor, so a SIGKILL of the executor takes the whole tree down.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import importlib
import json
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

#: prctl(2) option: the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1
#: Exit code reported for a runner that could not be forked (not a runner exit code).
EXIT_FORK_FAILED = 127
#: The runner's own modules, imported before the first fork.
RUNNER_MODULES = (
    "rocky_runner.main",
    "rocky_runner.classify",
    "rocky_runner.classify.builtin",
    "rocky_runner.adapters.base",
)


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies; exit now if it already has.

    Linux only (a no-op elsewhere). The check after ``prctl`` closes the race of a
    parent that died before the call.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        os._exit(1)


def native_threads() -> int:
    """This process's threads, native ones included (a client library's thread pool
    that Python's ``threading`` does not know of); 1 where /proc cannot tell."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def preload(adapters: Iterable[str]) -> None:
    """Import the runner and the named adapters' modules (never connect)."""
    for name in RUNNER_MODULES:
        importlib.import_module(name)
    from rocky_runner.adapters.base import ADAPTER_MODULES

    for adapter in adapters:
        module = ADAPTER_MODULES.get(adapter)
        if module is not None:
            importlib.import_module(module)
    # The classifiers the runner looks up on a failure, so a failing table is cheap too.
    from rocky_runner.classify import _classifiers

    _classifiers()


def _run_child(server_pid: int, inherited: list[int], env: dict[str, str], log_path: str) -> None:
    """In the forked child: become a runner with ``env``, run, exit. Never returns.

    ``inherited`` are the server's own descriptors (protocol pipes, other runners'
    pidfds), closed first so a runner holds nothing of the server's.
    """
    code = 1
    try:
        die_with_parent(server_pid)
        for fd in inherited:
            os.close(fd)
        os.setpgid(0, 0)  # its own group: a signal to the runner reaches only it
        for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(devnull)
        os.environ.clear()
        os.environ.update(env)
        atexit._clear()  # the server's exit handlers are not the runner's
        import rocky_runner.main as runner_main

        # The runner falls back to its import time where the kernel cannot say when the
        # process started, and never counts from before it: for us that is now, the fork.
        runner_main._IMPORTED = time.monotonic()
        code = runner_main.run(os.environ)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # the child must never return into the server's loop
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


class Server:
    """The fork loop: requests on ``requests`` (fd), reports on ``reports`` (fd)."""

    def __init__(self, requests: int, reports: int) -> None:
        self.requests = requests
        self.reports = reports
        self.pid = os.getpid()
        self.children: dict[str, tuple[int, int]] = {}
        """Runner id -> (pid, pidfd) of every runner not reaped yet."""
        self._buffer = b""

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(self.reports, data) :]

    def start(self, runner_id: str, env: dict[str, str], log_path: str) -> None:
        if native_threads() != 1:  # forking with threads would copy their locks
            raise RuntimeError("fork server has threads; refusing to fork")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            inherited = [self.requests, self.reports, *(fd for _, fd in self.children.values())]
            _run_child(self.pid, inherited, env, log_path)
        pidfd = os.pidfd_open(pid)
        self.children[runner_id] = (pid, pidfd)
        self.send({"op": "started", "id": runner_id, "pid": pid})

    def handle(self, message: dict[str, Any]) -> None:
        op, runner_id = message.get("op"), str(message.get("id"))
        if op == "start":
            try:
                self.start(runner_id, dict(message["env"]), str(message["log"]))
            except (OSError, RuntimeError, KeyError, TypeError) as exc:
                self.send(
                    {
                        "op": "exited",
                        "id": runner_id,
                        "returncode": EXIT_FORK_FAILED,
                        "error": f"could not fork the runner: {exc}",
                    }
                )
        elif op == "signal" and runner_id in self.children:
            pid, _ = self.children[runner_id]
            with contextlib.suppress(OSError, ValueError, KeyError):
                os.kill(pid, int(message["signal"]))

    def reap(self, pidfd: int) -> None:
        for runner_id, (pid, fd) in list(self.children.items()):
            if fd != pidfd:
                continue
            _, status = os.waitpid(pid, 0)
            os.close(fd)
            del self.children[runner_id]
            self.send(
                {"op": "exited", "id": runner_id, "returncode": os.waitstatus_to_exitcode(status)}
            )

    def read_requests(self) -> bool:
        """Handle every complete request line; False at end of input."""
        chunk = os.read(self.requests, 1 << 20)
        if not chunk:
            return False
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self.handle(json.loads(line))
        return True

    def serve(self) -> None:
        gc.freeze()  # what was imported stays shared with the children (no CoW by the GC)
        self.send({"op": "ready", "pid": self.pid})
        while True:
            fds = [self.requests, *(fd for _, fd in self.children.values())]
            readable, _, _ = select.select(fds, [], [])
            for fd in readable:
                if fd == self.requests:
                    if not self.read_requests():
                        self.shutdown()
                        return
                else:
                    self.reap(fd)

    def shutdown(self) -> None:
        """The executor is gone: no runner outlives it."""
        for pid, fd in self.children.values():
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
            os.close(fd)
        self.children.clear()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    adapters: list[str] = []
    if args[:1] == ["--preload"] and len(args) > 1:
        adapters = [a for a in args[1].split(",") if a]
    parent = os.environ.get("ROCKY_FORKSERVER_PARENT")
    if parent and parent.isdigit():
        die_with_parent(int(parent))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the executor handles Ctrl-C
    # Our protocol owns fds 0 and 1; what anything else prints goes to stderr.
    requests, reports = os.dup(0), os.dup(1)
    os.dup2(2, 1)
    preload(adapters)
    if native_threads() != 1 and adapters:
        # An adapter's client library started threads on import (e.g. a BLAS pool
        # under pandas): forking them is unsafe. Start again warming only the runner's
        # own modules; each runner then imports the adapter itself, after the fork.
        sys.stderr.write(
            f"rocky-runner fork server: importing {','.join(adapters)} started "
            f"{native_threads() - 1} thread(s); preloading the runner's modules only\n"
        )
        sys.stderr.flush()
        os.dup2(reports, 1)
        os.execv(sys.executable, [sys.executable, "-m", "rocky_runner.forkserver"])
    if native_threads() != 1:
        sys.stderr.write("rocky-runner fork server: threads after import; cannot fork\n")
        return 1
    Server(requests, reports).serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
