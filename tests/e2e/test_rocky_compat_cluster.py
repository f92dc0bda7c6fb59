"""The seed's Dagster asset, unchanged but for binary_path=, on the real kube-apiserver.

Real dagster and dagster-rocky (PyPI) call ``rocky-operator-rocky`` (cluster backend:
``KUBECONFIG``, ``ROCKY_OPERATOR_NAMESPACE``), which creates a RockyRun from rocky.toml; the
operator (``rocky-operator run``) runs one pod per table under the node agent against the demo
warehouse with its planted failures. Checked: the planted kinds in ``result.errors[*]``, the
``dg.Failure`` retry on the retryable kinds that resumes (``spec.resumeFrom``) the first
RockyRun so only its failed tables run, the alert on query-rejected, and then
``RockyResource.resume_run()`` (``--resume-latest``) finding the latest RockyRun by label, and
``resume_run(RUN_ID)`` (``--resume RUN_ID``) resuming the first by name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.compat import scenario
from tests.compat.conftest import interpreter_bin
from tests.support.control_plane import ControlPlane
from tests.support.e2e import OperatorProcess, apply_crds

pytest.importorskip("dagster_rocky", reason="dagster-rocky is in the `examples` extra")


@pytest.fixture
def operator(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[None]:
    apply_crds(control_plane, "rockyruns.rocky.dev")
    op = OperatorProcess(control_plane, namespace, tmp_path / "operator.log")
    op.start()
    try:
        yield
    finally:
        op.stop()


@pytest.fixture
def cli_env(control_plane: ControlPlane, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What rocky-operator-rocky reads (rocky-sdk passes our environment on)."""
    for name in list(os.environ):
        if name.startswith("ROCKY_") and name != "ROCKY_OPERATOR_CACHE":
            monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", f"{interpreter_bin()}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    monkeypatch.setenv("ROCKY_OPERATOR_BACKEND", "cluster")
    monkeypatch.setenv("ROCKY_OPERATOR_NAMESPACE", namespace)
    monkeypatch.setenv("ROCKY_OPERATOR_TIMEOUT", "600")
    monkeypatch.setenv("ROCKY_OPERATOR_AUTO_RESUME_SECONDS", "3600")


def _rockyrun(api_client: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(api_client).get_namespaced_custom_object(  # type: ignore[assignment]
        "rocky.dev", "v1alpha1", namespace, "rockyruns", name
    )
    return obj


@pytest.mark.slow
def test_seed_asset_on_the_cluster(
    namespace: str,
    operator: None,
    cli_env: None,
    api_client: client.ApiClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup = scenario.prepare(tmp_path)
    monkeypatch.chdir(setup.directory)  # RockyResource(config_path="rocky.toml")
    monkeypatch.setenv("ROCKY_OPERATOR_OVERLAY", str(setup.overlay))
    with scenario.planted_then_repaired(setup):
        job = scenario.run_seed_job()
    scenario.check_outcome(setup, job)

    (first_name, _), (second_name, _) = setup.runs()
    first = _rockyrun(api_client, namespace, first_name)
    second = _rockyrun(api_client, namespace, second_name)
    assert "resumeFrom" not in first["spec"]
    assert second["spec"]["resumeFrom"] == first_name  # the retry resumed on the cluster
    assert second["metadata"]["labels"]["rocky.dev/rocky-pipeline"] == "acme"
    assert second["metadata"]["annotations"]["rocky.dev/rocky-filter"] == "tenant=acme"
    assert second["status"]["phase"] == "PartialFailure"

    # dagster-rocky's resume_run() -> `run --resume-latest`: the newest RockyRun of the
    # pipeline, found by label; only its one failed table (the view in the way) runs.
    from dagster_rocky import RockyResource

    rocky = RockyResource(config_path="rocky.toml", binary_path="rocky-operator-rocky")
    third = rocky.resume_run(filter="tenant=acme")
    assert third.resumed_from == second_name
    assert third.tables_copied == 0
    assert [("/".join(e.asset_key), e.failure_kind) for e in third.errors] == [
        (k, v) for k, v in scenario.PLANTED_KINDS.items() if v == "query-rejected"
    ]
    third_name = setup.runs()[-1][0]
    assert _rockyrun(api_client, namespace, third_name)["spec"]["resumeFrom"] == second_name

    # resume_run(RUN_ID) -> `run --resume RUN_ID`: that RockyRun, by name; its four failed
    # tables run again (three now copy: the causes were repaired after it).
    fourth = rocky.resume_run(first_name, filter="tenant=acme")
    assert fourth.resumed_from == first_name
    assert fourth.tables_copied == 3
    fourth_name = setup.runs()[-1][0]
    assert _rockyrun(api_client, namespace, fourth_name)["spec"]["resumeFrom"] == first_name


@pytest.mark.slow
def test_a_retry_after_the_command_was_killed_waits_for_and_resumes_the_run(
    namespace: str,
    operator: None,
    cli_env: None,
    api_client: client.ApiClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rocky-sdk's watchdog kills the command (SIGKILL to its process group) while the
    RockyRun runs on: the retry (the same plain ``run``, auto-resume on) must not copy the
    same tables beside it; it waits for that RockyRun and resumes it."""
    import json
    import signal
    import subprocess
    import time

    import yaml

    setup = scenario.prepare(tmp_path)
    overlay = yaml.safe_load(setup.overlay.read_text())
    overlay["adapter"]["duckdb"]["lockTimeoutSeconds"] = 120
    slow = tmp_path / "slow.yaml"
    slow.write_text(yaml.safe_dump(overlay))
    monkeypatch.setenv("ROCKY_OPERATOR_OVERLAY", str(slow))
    binary = str(interpreter_bin() / "rocky-operator-rocky")
    argv = [binary, "--output", "json", "run", "--filter", "source=hubspot"]
    custom = client.CustomObjectsApi(api_client)
    with scenario.hold_lock(setup.directory / "acme_hubspot.duckdb"):
        proc = subprocess.Popen(
            argv,
            cwd=setup.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        items: list[Any] = []
        while not items:
            assert proc.poll() is None, "the command ended before it was killed"
            assert time.monotonic() < deadline, "no RockyRun was created"
            listed: Any = custom.list_namespaced_custom_object(
                "rocky.dev", "v1alpha1", namespace, "rockyruns"
            )
            items = listed["items"]
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    [killed] = [i["metadata"]["name"] for i in items]  # the lock is released: it can finish

    retry = subprocess.run(
        argv, cwd=setup.directory, capture_output=True, text=True, timeout=600, check=False
    )
    assert f"waiting for RockyRun {killed} to finish" in retry.stderr, retry.stderr
    out = json.loads(retry.stdout)
    assert retry.returncode == 0, retry.stderr
    assert out["resumed_from"] == killed
    assert out["tables_copied"] == 0  # the killed command's run copied both tables itself
    first = _rockyrun(api_client, namespace, killed)
    assert first["status"]["runOutput"]["tables_copied"] == 2
    listed = custom.list_namespaced_custom_object("rocky.dev", "v1alpha1", namespace, "rockyruns")
    [second] = [i for i in listed["items"] if i["metadata"]["name"] != killed]
    assert second["spec"]["resumeFrom"] == killed
