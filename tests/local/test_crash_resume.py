"""Issue 10 case 15: SIGKILL of `rocky-operator local` mid-run, then `--resume-from` its journal.

The executor is a child process of the test (the signal goes to that child, never to
pytest). Two tables copy; the runners of two more wait on target files the test holds
locked. After the SIGKILL no runner survives (PR_SET_PDEATHSIG), the journal records the
two copied tables, and a resume from it runs only the other two. Every table ends with
its 20 rows, once, and the row counts reported along the way agree with the warehouse.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
from tests.local.helpers import (
    build_warehouse,
    manifest_doc,
    run,
    validate_output,
    wrapper_script,
    write_manifest,
)

from rocky_operator.local.executor import LocalOptions

DEADLINE = 90.0
#: `rocky-operator local` in a child process, with the test's runner command (the CLI's
#: own entry point, run_local, with what its flags would give).
EXECUTOR = """
import json, sys
from pathlib import Path
from rocky_operator.local.executor import LocalOptions, run_local
options = LocalOptions(
    runner_command=json.loads(Path(sys.argv[2]).read_text()), journal=Path(sys.argv[3])
)
sys.exit(run_local(sys.argv[1], options, stdout=sys.stdout, stderr=sys.stderr))
"""


def _wait(check: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _journal(path: Path) -> dict[str, dict[str, object]]:
    if not path.exists():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines()[1:] if line.strip()]
    return {"/".join(r["asset_key"]): r for r in records if "asset_key" in r}


@contextlib.contextmanager
def _locked(*paths: Path) -> Iterator[None]:
    """Hold DuckDB's write lock on each file (its runner waits, lockTimeoutSeconds 60)."""
    with contextlib.ExitStack() as stack:
        for path in paths:
            stack.enter_context(contextlib.closing(duckdb.connect(str(path))))
        yield


def test_sigkill_leaves_no_runner_and_the_journal_resumes_the_rest(tmp_path: Path) -> None:
    tenants = ["t1", "t2", "t3", "t4"]  # one target file each: no write group in the way
    warehouse = build_warehouse(
        tmp_path / "w.duckdb", {f"src__{t}__shop": ["orders"] for t in tenants}
    )
    pids = tmp_path / "pids"
    command = wrapper_script(tmp_path / "runner.sh", f"echo $$ >> {pids}\nexec $RUNNER")
    doc = manifest_doc(warehouse, concurrency=4)
    doc["spec"]["adapter"]["duckdb"]["lockTimeoutSeconds"] = 60
    manifest = write_manifest(tmp_path / "run.yaml", doc)
    journal = tmp_path / "run.journal.jsonl"
    runner_file = tmp_path / "runner-command.json"
    runner_file.write_text(json.dumps(command))
    key = "duckdb/{}/shop/orders".format

    with _locked(tmp_path / "t3_wh.duckdb", tmp_path / "t4_wh.duckdb"):
        executor = subprocess.Popen(
            [sys.executable, "-c", EXECUTOR, str(manifest), str(runner_file), str(journal)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:

            def settled() -> bool:
                done = _journal(journal)
                started = pids.read_text().split() if pids.exists() else []
                return {key("t1"), key("t2")} <= set(done) and len(started) == 4

            _wait(settled, "t1 and t2 journaled while t3 and t4 wait for their locks")
            runners = [int(p) for p in pids.read_text().split()]
            assert sum(_alive(p) for p in runners) == 2  # t3's and t4's, mid-run
            os.kill(executor.pid, signal.SIGKILL)
            out, _ = executor.communicate(timeout=DEADLINE)
        finally:
            if executor.poll() is None:
                executor.kill()
                executor.wait()
        assert executor.returncode == -signal.SIGKILL
        assert out == b""  # killed before any RunOutput
        _wait(lambda: not any(_alive(p) for p in runners), "the runners to die with it")

    done = _journal(journal)
    assert {k: r["outcome"] for k, r in done.items()} == {
        key("t1"): "copied",
        key("t2"): "copied",
    }
    resumed = run(
        manifest,
        LocalOptions(runner_command=command, resume_from=str(journal), journal=tmp_path / "j2"),
    )
    assert resumed.code == 0, resumed.stderr
    output = resumed.output
    validate_output(output)
    assert sorted(resumed.copied()) == [key("t3"), key("t4")]
    assert sorted("/".join(k) for k in output["carried_copied"]) == [key("t1"), key("t2")]
    assert len(pids.read_text().split()) == 6  # 4 before the kill, 2 after: none re-run

    reported = {k: int(str(r["rows_copied"])) for k, r in done.items()}
    reported |= {"/".join(m["asset_key"]): m["rows_copied"] for m in output["materializations"]}
    in_warehouse = {}
    for tenant in tenants:
        with contextlib.closing(duckdb.connect(str(tmp_path / f"{tenant}_wh.duckdb"))) as conn:
            row = conn.execute("SELECT count(*) FROM staging__shop.orders").fetchone()
        assert row is not None
        in_warehouse[key(tenant)] = row[0]
    assert reported == in_warehouse == dict.fromkeys(map(key, tenants), 20)
