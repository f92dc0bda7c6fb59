"""Issue 15 goal 2: containment holds whether runners are forked or spawned.

Every test runs both ways: ``fork`` (each table's runner forked from the run's warm
fork server) and ``spawn`` (a new interpreter per table). One table's process is
crashed (SIGSEGV), SIGKILLed (what the kernel's OOM killer does) or SIGTERMed while it
waits on a locked target file; it alone fails, the others copy every row. A table that
needs more memory than ``memoryLimit`` fails as quota-exceeded alone. SIGKILL of the
executor leaves neither the fork server nor a runner alive. Regression: the server no
longer blocks for its 120 s start-up deadline after reporting ready.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from tests.local.helpers import build_warehouse, manifest_doc, run, write_manifest

from rocky_operator.local.executor import LocalOptions
from rocky_operator.local.fork import READY_TIMEOUT_SECONDS, ForkServer

MODES = ["fork", "spawn"]
LOCKED = "t0"
TENANTS = [f"t{i}" for i in range(5)]
DEADLINE = 90.0


def _options(mode: str, logs: Path) -> LocalOptions:
    return LocalOptions(fork_server=mode == "fork", logs_dir=logs)


def _doc(warehouse: Path, **spec: object) -> dict[str, object]:
    doc = manifest_doc(
        warehouse,
        retry={kind: {"maxRetries": 0} for kind in ("unknown", "transient", "quota-exceeded")},
        **spec,
    )
    doc["spec"]["adapter"]["duckdb"]["lockTimeoutSeconds"] = 120  # type: ignore[index]
    return doc


def _pids_writing_into(directory: Path) -> dict[int, Path]:
    """Processes whose stdout is a log file in ``directory`` (the runners), by pid."""
    found: dict[int, Path] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            target = Path(os.readlink(entry / "fd" / "1"))
            if target.parent == directory:
                found[int(entry.name)] = target
    return found


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _blocks_sigterm(pid: int) -> bool:
    """Whether the runner is in its copy (its watchdog blocks SIGTERM to take it)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigBlk:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def _wait_for_runner(logs: Path, name_part: str) -> int:
    """The pid of the runner of ``name_part`` once it is in its copy."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        for pid, log in _pids_writing_into(logs).items():
            if name_part in log.name and _blocks_sigterm(pid):
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no runner for {name_part} in {logs}")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Another writer holds the target file's lock (its runner waits on it)."""
    conn = duckdb.connect(str(path))
    try:
        yield
    finally:
        conn.close()


def _warehouse(tmp_path: Path) -> Path:
    return build_warehouse(tmp_path / "w.duckdb", {f"src__{t}__shop": ["orders"] for t in TENANTS})


def _rows(path: Path) -> int:
    with contextlib.closing(duckdb.connect(str(path), read_only=True)) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM staging__shop.orders").fetchone() or (0,)
    return int(rows)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV, signal.SIGTERM])
def test_one_runner_killed_the_others_copy(tmp_path: Path, mode: str, sig: int) -> None:
    warehouse = _warehouse(tmp_path)
    manifest = write_manifest(tmp_path / "run.yaml", _doc(warehouse, concurrency=2))
    logs = tmp_path / "logs"
    seen: dict[str, int] = {}
    parents: dict[int, str] = {}

    def kill_locked_runner() -> None:
        pid = _wait_for_runner(logs, LOCKED)
        seen["parent"] = _parent(pid)
        parents[seen["parent"]] = _cmdline(seen["parent"])
        seen["pid"] = pid
        os.kill(pid, sig)

    killer = threading.Thread(target=kill_locked_runner, daemon=True)
    with _locked(tmp_path / f"{LOCKED}_wh.duckdb"):
        killer.start()
        result = run(manifest, _options(mode, logs))
        killer.join(timeout=DEADLINE)
    assert "pid" in seen, result.stderr
    assert "fork server unavailable" not in result.stderr
    if mode == "fork":  # the runner was forked by the server, not by us
        assert seen["parent"] != os.getpid()
        assert "rocky_runner.forkserver" in parents[seen["parent"]]
    else:
        assert seen["parent"] == os.getpid()
    assert result.code == 2, result.stderr
    assert sorted(result.copied()) == [f"duckdb/{t}/shop/orders" for t in TENANTS[1:]]
    for tenant in TENANTS[1:]:
        assert _rows(tmp_path / f"{tenant}_wh.duckdb") == 20
    (error,) = result.output["errors"]
    assert error["asset_key"] == ["duckdb", LOCKED, "shop", "orders"]
    if sig == signal.SIGTERM:  # the runner's own handler wrote a result, as in a pod
        assert error["failure_kind"] == "transient", error
        assert "LockTimeoutError" in error["error"], error
    else:
        assert error["failure_kind"] == "unknown"
        assert f"killed by {signal.Signals(sig).name}" in error["error"]


@pytest.mark.parametrize("mode", MODES)
def test_a_table_over_the_memory_limit_fails_alone(tmp_path: Path, mode: str) -> None:
    warehouse = _warehouse(tmp_path)
    with contextlib.closing(duckdb.connect(str(warehouse))) as conn:
        conn.execute(
            f"INSERT INTO src__{LOCKED}__shop.orders (id, name) VALUES (99, repeat('x', 40 << 20))"
        )
    doc = _doc(warehouse, concurrency=2)
    doc["spec"]["adapter"]["duckdb"]["memoryLimit"] = "32MB"  # type: ignore[index]
    result = run(write_manifest(tmp_path / "run.yaml", doc), _options(mode, tmp_path / "logs"))
    assert result.code == 2, result.stderr
    assert result.kinds() == {f"duckdb/{LOCKED}/shop/orders": "quota-exceeded"}
    assert len(result.copied()) == len(TENANTS) - 1


def test_executor_sigkill_leaves_no_server_and_no_runner(tmp_path: Path) -> None:
    """The executor is a child process here (never pytest); its fork server and the
    runner it forked die with it (PR_SET_PDEATHSIG down the tree)."""
    warehouse = _warehouse(tmp_path)
    manifest = write_manifest(tmp_path / "run.yaml", _doc(warehouse, concurrency=1))
    logs = tmp_path / "logs"
    command = [sys.executable, "-m", "rocky_operator.cli", "local", str(manifest)]
    with _locked(tmp_path / f"{LOCKED}_wh.duckdb"):
        executor = subprocess.Popen(
            [*command, "--fork-server", "--logs-dir", str(logs)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            runner = _wait_for_runner(logs, LOCKED)
            server = _parent(runner)
            assert _parent(server) == executor.pid
            os.kill(executor.pid, signal.SIGKILL)
            executor.wait(timeout=DEADLINE)
            deadline = time.monotonic() + DEADLINE
            while (_alive(runner) or _alive(server)) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _alive(runner), "the forked runner outlived the executor"
            assert not _alive(server), "the fork server outlived the executor"
        finally:
            if executor.poll() is None:
                executor.kill()
                executor.wait()


def test_server_is_ready_without_waiting_for_its_deadline(tmp_path: Path) -> None:
    """Regression: start() read "ready" and then waited for more input until the 120 s
    deadline (the CLI hung). It must return as soon as the server is ready."""
    began = time.monotonic()
    server = ForkServer.start(adapters=["duckdb"], log_path=tmp_path / "server.log")
    try:
        assert time.monotonic() - began < READY_TIMEOUT_SECONDS / 2
        assert server.alive
    finally:
        server.close()
    assert server.process.returncode == 0


def test_duration_counts_from_the_fork_not_from_the_server_start(tmp_path: Path) -> None:
    """duration_ms is the table's real cost from its process's start: for a forked runner
    the fork. At concurrency 1 the tables' durations cannot add up to more than the run."""
    warehouse = _warehouse(tmp_path)
    manifest = write_manifest(tmp_path / "run.yaml", _doc(warehouse, concurrency=1))
    began = time.monotonic()
    result = run(manifest, _options("fork", tmp_path / "logs"))
    took_ms = (time.monotonic() - began) * 1000
    assert result.code == 0, result.stderr
    durations = [m["duration_ms"] for m in result.output["materializations"]]
    assert len(durations) == len(TENANTS)
    assert 0 < sum(durations) <= took_ms, (durations, took_ms)


def _fork_servers_of_this_process() -> list[int]:
    """Live fork servers started by this (test) process, by ROCKY_FORKSERVER_PARENT."""
    mark = f"ROCKY_FORKSERVER_PARENT={os.getpid()}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if mark in (entry / "environ").read_bytes().split(b"\0") and _alive(
                    int(entry.name)
                ):
                    found.append(int(entry.name))
    return found


def test_server_is_launched_before_discovery_and_closed_when_it_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fork server imports its modules while discovery runs (it is already a process
    when discovery starts); a failed discovery ends the run and leaves no server behind."""
    import rocky_operator.local.executor as executor

    seen_during_discovery: list[list[int]] = []

    def failing_discovery(manifest: object) -> object:
        seen_during_discovery.append(_fork_servers_of_this_process())
        raise RuntimeError("the catalog is gone")

    monkeypatch.setattr(executor, "discover", failing_discovery)
    manifest = write_manifest(tmp_path / "run.yaml", _doc(_warehouse(tmp_path)))
    result = run(manifest, _options("fork", tmp_path / "logs"))
    assert result.code == 1
    assert "discovery failed" in result.stderr
    assert seen_during_discovery, "discovery never ran"
    assert seen_during_discovery[0], "no server during discovery"
    deadline = time.monotonic() + DEADLINE
    while _fork_servers_of_this_process() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _fork_servers_of_this_process() == []
