"""``rocky-operator-rocky`` as the real rocky-sdk and dagster-rocky drive it (local backend).

The binary is the installed console script, run as a subprocess by rocky-sdk's own
``RockyClient`` / dagster-rocky's ``RockyResource``: the version gate, the argv they build, the
exit codes they key on (0 / 2 partial with JSON / 1), the one-line refusal of what is not
implemented, and resume in Rocky's terms (``resume_run()`` -> ``--resume-latest`` /
``--resume RUN_ID``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.compat import scenario
from tests.compat.conftest import interpreter_bin

rocky_sdk = pytest.importorskip("rocky_sdk", reason="rocky-sdk comes with rocky-operator")
from rocky_sdk import client as sdk_client  # noqa: E402
from rocky_sdk.exceptions import RockyCommandError, RockyVersionError  # noqa: E402

BINARY = str(interpreter_bin() / "rocky-operator-rocky")


def _semver(text: str) -> tuple[int, ...]:
    parts = tuple(int(p) for p in text.split(".")[:3])
    return parts + (0,) * (3 - len(parts))


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> scenario.Scenario:
    """The demo warehouse with its rocky.toml, the command's environment set for it."""
    setup = scenario.prepare(tmp_path)
    monkeypatch.chdir(setup.directory)
    monkeypatch.setenv("ROCKY_OPERATOR_BACKEND", "local")
    monkeypatch.setenv("ROCKY_OPERATOR_OVERLAY", str(setup.overlay))
    return setup


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BINARY, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def test_version_passes_the_installed_rocky_sdk_gate() -> None:
    """rocky-sdk's own check (run before every command) accepts the version line."""
    client = sdk_client.RockyClient(binary_path=BINARY)
    line = client.run_cli(["--version"])  # the gate runs first, then the command
    assert "rocky-operator" in line
    assert "not the Rocky engine" in line
    assert client._engine_version is not None
    assert client._engine_version >= _semver(sdk_client.MIN_ROCKY_VERSION)


def test_the_gate_is_real(tmp_path: Path) -> None:
    """The same check refuses a line one patch below rocky-sdk's minimum (so passing means
    something): the version is read from the first token, as ours is written."""
    major, minor, patch = _semver(sdk_client.MIN_ROCKY_VERSION)
    below = f"{major}.{minor - 1}.99" if patch == 0 else f"{major}.{minor}.{patch - 1}"
    fake = tmp_path / "old-rocky"
    fake.write_text(f"#!/bin/sh\necho 'rocky {below} (rocky-operator: not the Rocky engine)'\n")
    fake.chmod(0o755)
    with pytest.raises(RockyVersionError):
        sdk_client.RockyClient(binary_path=str(fake)).run_cli(["--version"])


def test_an_unimplemented_subcommand_is_one_line_naming_rocky(demo: scenario.Scenario) -> None:
    client = sdk_client.RockyClient(binary_path=BINARY)
    with pytest.raises(RockyCommandError) as caught:
        client.discover()
    assert caught.value.returncode == 1
    [line] = caught.value.stderr_tail.splitlines()
    assert "`rocky discover` is not implemented by rocky-operator" in line
    assert "https://github.com/rocky-data/rocky" in line


def test_an_unimplemented_run_flag_is_one_line(demo: scenario.Scenario) -> None:
    proc = _cli(
        "--output", "json", "run", "--filter", "tenant=acme", "--shadow", cwd=demo.directory
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert "`rocky run --shadow` is not implemented" in line
    assert "real Rocky" in line


def test_state_namespace_follows_rockys_rule(demo: scenario.Scenario) -> None:
    proc = _cli("--state-namespace", "../x", "--output", "json", "run", cwd=demo.directory)
    assert proc.returncode == 1
    assert "^[a-zA-Z0-9_]+$" in proc.stderr


def test_output_table_is_a_summary(demo: scenario.Scenario) -> None:
    proc = _cli("-o", "table", "run", "--filter", "source=shopify", cwd=demo.directory)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].endswith(": Failure: 0 copied, 1 failed")
    assert lines[1].split()[:2] == ["query-rejected", "duckdb/acme/us_west/shopify/refunds:"]


def _run_json(*args: str, cwd: Path) -> tuple[int, dict[str, Any], str]:
    proc = _cli("--config", "rocky.toml", "--output", "json", "run", *args, cwd=cwd)
    assert proc.stdout.lstrip().startswith("{"), proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_exit_codes_are_rockys(demo: scenario.Scenario) -> None:
    """0 all copied; 2 some copied, some failed; 1 every table failed: JSON on stdout in all
    three (rocky-sdk's allow_partial keys on it)."""
    code, out, _ = _run_json("--filter", "tenant=globex", cwd=demo.directory)
    assert (code, out["status"], out["tables_copied"], out["errors"]) == (0, "Success", 1, [])
    code, out, err = _run_json("--filter", "source=stripe", "--parallel", "2", cwd=demo.directory)
    assert (code, out["tables_copied"], out["tables_failed"]) == (2, 1, 1)
    assert [e["failure_kind"] for e in out["errors"]] == ["quota-exceeded"]
    assert "--parallel 2: as in Rocky, it does not bound" in err
    assert "use --resume acme-" in err  # Rocky's partial-failure hint, with the run id
    code, out, _ = _run_json("--filter", "source=shopify", cwd=demo.directory)
    assert (code, out["tables_copied"], out["tables_failed"]) == (1, 0, 1)
    assert [e["failure_kind"] for e in out["errors"]] == ["query-rejected"]


def test_dagster_rocky_resume_run_reruns_only_the_failed_tables(
    demo: scenario.Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``RockyResource.resume_run()`` (``run --resume-latest``) and ``resume_run(run_id)``
    (``run --resume ID``): only what the earlier run did not copy runs again."""
    from dagster_rocky import RockyResource

    monkeypatch.setenv("PATH", f"{interpreter_bin()}{os.pathsep}{os.environ['PATH']}")
    rocky = RockyResource(config_path="rocky.toml", binary_path="rocky-operator-rocky")
    with scenario.hold_lock(demo.directory / "acme_hubspot.duckdb"):
        first = rocky.run(filter="tenant=acme")
    assert {"/".join(e.asset_key): e.failure_kind for e in first.errors} == scenario.PLANTED_KINDS
    ((first_name, _),) = demo.runs()

    second = rocky.resume_run(
        filter="tenant=acme"
    )  # the lock is gone: the transient table copies now
    assert second.resumed_from == first_name
    assert second.tables_copied == 1  # contacts; payouts was not run again
    assert {e.failure_kind for e in second.errors} == {
        "query-rejected",
        "connection-failed",
        "quota-exceeded",
    }
    second_name = demo.runs()[-1][0]

    scenario.repair(demo.directory)
    third = rocky.resume_run(second_name, filter="tenant=acme")
    assert third.resumed_from == second_name
    assert third.tables_copied == 2  # tickets and disputes
    assert [e.failure_kind for e in third.errors] == ["query-rejected"]
    copied = [tuple(m.asset_key) for r in (first, second, third) for m in r.materializations]
    assert len(copied) == len(set(copied)) == 4  # no table copied twice


def test_resume_of_an_unknown_run_starts_fresh_as_rocky_does(demo: scenario.Scenario) -> None:
    code, out, err = _run_json("--filter", "tenant=globex", "--resume", "nope", cwd=demo.directory)
    assert code == 0
    assert out["tables_copied"] == 1
    assert not out.get("resumed_from")
    assert "--resume nope: no such run; starting fresh" in err


def test_sigterm_stops_a_local_run_with_rockys_130(
    demo: scenario.Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM (a stopped Dagster run) to the command, a child process: the run stops like
    Ctrl-C and the command exits 130, as Rocky does."""
    import signal
    import time

    import yaml

    overlay = yaml.safe_load(demo.overlay.read_text())
    overlay["adapter"]["duckdb"]["lockTimeoutSeconds"] = 120  # the table waits on the lock
    slow = tmp_path / "slow.yaml"
    slow.write_text(yaml.safe_dump(overlay))
    monkeypatch.setenv("ROCKY_OPERATOR_OVERLAY", str(slow))
    latest = demo.state / "latest" / "acme.json"
    with scenario.hold_lock(demo.directory / "acme_hubspot.duckdb"):
        proc = subprocess.Popen(
            [BINARY, "--output", "json", "run", "--filter", "source=hubspot"],
            cwd=demo.directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not latest.exists() and proc.poll() is None:
                assert time.monotonic() < deadline, "the run did not start"
                time.sleep(0.1)
            time.sleep(1.0)  # let the runner reach the lock wait; either way the exit is 130
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, err
    if out.strip():  # the executor was running (else Python's KeyboardInterrupt: also 130)
        stopped = json.loads(out)
        assert stopped["interrupted"] is True
        assert stopped["tables_copied"] == 0


@pytest.mark.parametrize("how", ["--resume-latest", "auto-resume"])
def test_a_killed_local_run_is_resumed_from_its_journal(
    demo: scenario.Scenario, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """SIGKILL to the command's process group half-way (no RunOutput is ever printed, as when
    rocky-sdk's watchdog fires): ``--resume-latest``, or a plain retry under
    ``ROCKY_OPERATOR_AUTO_RESUME_SECONDS``, reads the journal kept in the state directory and
    runs only the tables the killed run had not copied."""
    import signal
    import time

    runs = demo.state / "runs"
    with scenario.hold_lock(demo.directory / "acme_hubspot.duckdb"):
        proc = subprocess.Popen(
            [BINARY, "--output", "json", "run", "--filter", "tenant=acme"],
            cwd=demo.directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 300
            copied: list[str] = []
            while not copied:  # wait for the journal to record a copied table
                assert proc.poll() is None, "the run ended before it could be killed"
                assert time.monotonic() < deadline, "no table was copied"
                copied = [
                    line
                    for journal in runs.glob("*.journal.jsonl")
                    for line in journal.read_text().splitlines()
                    if '"outcome": "copied"' in line
                ]
                time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    [journal] = runs.glob("*.journal.jsonl")
    killed = journal.name.removesuffix(".journal.jsonl")
    assert not (runs / f"{killed}.json").exists()  # it never printed its output
    done = sum(1 for line in journal.read_text().splitlines() if '"outcome"' in line)

    flags = ["--resume-latest"] if how == "--resume-latest" else []
    if how == "auto-resume":
        monkeypatch.setenv("ROCKY_OPERATOR_AUTO_RESUME_SECONDS", "3600")
    code, out, err = _run_json("--filter", "tenant=acme", *flags, cwd=demo.directory)
    assert f"resuming {killed} (Running" in err
    assert out["resumed_from"] == killed
    ran = out["tables_copied"] + out["tables_failed"] + out.get("tables_skipped", 0)
    finished_copied = sum(
        1 for line in journal.read_text().splitlines() if '"outcome": "copied"' in line
    )
    assert finished_copied >= 1
    assert ran == len(scenario.PLANTED_KINDS) + 1 - finished_copied, (done, out)
    assert code == 2


def test_rockys_idempotency_key_variable_is_refused_not_ignored(
    demo: scenario.Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rocky reads ROCKY_IDEMPOTENCY_KEY as --idempotency-key (dedup): ignoring it could run
    twice what the caller meant to run once."""
    monkeypatch.setenv("ROCKY_IDEMPOTENCY_KEY", "nightly-2026-12-02")
    proc = _cli("--output", "json", "run", "--filter", "tenant=globex", cwd=demo.directory)
    assert proc.returncode == 1
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert "ROCKY_IDEMPOTENCY_KEY is set" in line
    assert not (demo.state / "runs").exists()  # nothing ran
