"""The node agent's kubelet rules that need no API server: `$(VAR)` expansion, the termination
message (file first 4096 bytes, log fallback of 80 lines / 2048 bytes only on error), and which
images count as unpullable."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.node_agent import expand_vars, read_termination_message, tail_log, unpullable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)-$(B)", "1-two"),
        ("$$(A)", "$(A)"),  # escaped
        ("$(MISSING)", "$(MISSING)"),  # unknown names stay as written
        ("$(printf %04d 3)", "$(printf %04d 3)"),  # not a variable reference
        ("no refs", "no refs"),
    ],
)
def test_expand_vars_follows_kubernetes_rules(text: str, expected: str) -> None:
    assert expand_vars(text, {"A": "1", "B": "two"}) == expected


def test_termination_message_is_the_file_cut_at_4096_bytes(tmp_path: Path) -> None:
    msg, log = tmp_path / "msg", tmp_path / "log"
    msg.write_bytes(b"y" * 5000)
    log.write_text("log line\n")
    assert read_termination_message(msg, log, policy="File", exit_code=1) == "y" * 4096


@pytest.mark.parametrize(
    ("policy", "exit_code", "uses_log"),
    [
        ("FallbackToLogsOnError", 3, True),
        ("FallbackToLogsOnError", 0, False),  # success never falls back
        ("File", 3, False),
    ],
)
def test_log_fallback_only_on_error_with_the_policy(
    tmp_path: Path, policy: str, exit_code: int, uses_log: bool
) -> None:
    msg, log = tmp_path / "msg", tmp_path / "log"
    msg.write_bytes(b"")
    log.write_text("the error\n")
    got = read_termination_message(msg, log, policy=policy, exit_code=exit_code)
    assert got == ("the error\n" if uses_log else "")


def test_log_tail_is_bounded_by_lines_and_bytes(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("".join(f"line {i}\n" for i in range(200)))
    tail = tail_log(log)
    assert tail.splitlines()[-1] == "line 199"
    assert len(tail.splitlines()) == 80
    log.write_text("z" * 10_000 + "\n")
    assert len(tail_log(log).encode()) == 2048


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("registry.invalid/rocky-runner:1", True),
        ("registry.invalid:5000/rocky-runner:1", True),
        ("ghcr.io/rocky-dev/rocky-operator:0.1.0", False),
        ("rocky-runner.invalid", False),  # no registry part: a Docker Hub name
        ("busybox", False),
    ],
)
def test_unpullable_images(image: str, expected: bool) -> None:
    assert unpullable(image) is expected


def test_synthetic_results_are_valid_runner_results_and_planted_failures_fail() -> None:
    import json
    import re

    from tests.support.node_agent import SyntheticResults

    from rocky_operator.logic.pods import classify_pod
    from rocky_runner.contract import FailureKind, decode_result, encode_result, exit_code_for

    synthetic = SyntheticResults(re.compile(r"/fail_"), FailureKind.TRANSIENT)
    ok_task = json.dumps({"asset_key": ["duckdb", "acme", "orders"]})
    bad_task = json.dumps({"asset_key": ["duckdb", "acme", "fail_7"]})
    ok = decode_result(encode_result(synthetic.result_for(ok_task, "p-1")))
    bad = decode_result(encode_result(synthetic.result_for(bad_task, "p-2")))
    assert (ok.outcome, ok.asset_key, ok.failure_kind) == (
        "copied",
        ["duckdb", "acme", "orders"],
        None,
    )
    assert (bad.outcome, bad.failure_kind) == ("failed", FailureKind.TRANSIENT)
    assert "fail_7" in (bad.error or "")
    # A Job pod has no ROCKY_TASK: still a valid result, named after the pod.
    assert SyntheticResults().result_for(None, "copy-3-abc").asset_key == [
        "synthetic",
        "copy-3-abc",
    ]

    # The operator classifies such a pod like a real runner's.
    def pod(result_task: str, number: int) -> dict[str, object]:
        result = synthetic.result_for(result_task, "p")
        code = exit_code_for(result.failure_kind)
        return {
            "metadata": {"labels": {"rocky.dev/table": "abc", "rocky.dev/attempt": str(number)}},
            "status": {
                "phase": "Succeeded" if code == 0 else "Failed",
                "containerStatuses": [
                    {
                        "name": "runner",
                        "state": {
                            "terminated": {
                                "exitCode": code,
                                "message": encode_result(result).decode(),
                                "finishedAt": "2026-01-01T00:00:00Z",
                            }
                        },
                    }
                ],
            },
        }

    from datetime import UTC, datetime

    now = datetime.now(UTC)
    copied = classify_pod(pod(ok_task, 1), now)
    failed = classify_pod(pod(bad_task, 2), now)
    assert copied is not None
    assert copied.state == "copied"
    assert failed is not None
    assert (failed.state, failed.failure_kind) == ("failed", "transient")
