"""The node agent behaves like a kubelet towards the API: it binds and runs pods as processes,
resolves Secret / ConfigMap env, reports phases, exit codes, reasons and termination messages,
enforces activeDeadlineSeconds, honours deletion with SIGTERM and grace, and its test hooks
produce OOMKilled, Evicted and ImagePullBackOff pods."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from tests.support.control_plane import ControlPlane
from tests.support.e2e import Rest, wait_for

PY = "python"


def pod_manifest(
    name: str,
    command: list[str],
    *,
    env: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "main",
        "image": "rocky-runner:test",
        "command": command,
        "env": env or [],
    }
    for key in ("terminationMessagePolicy", "args"):
        if key in spec:
            container[key] = spec.pop(key)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def read_pod(rest: Rest, namespace: str, name: str) -> dict[str, Any]:
    return rest.read(namespace, "pods", name)


def wait_phase(
    rest: Rest, namespace: str, name: str, phases: set[str], timeout: float = 30
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        pod = read_pod(rest, namespace, name)
        return pod if pod.get("status", {}).get("phase") in phases else None

    return wait_for(probe, timeout=timeout, what=f"pod {name} in {sorted(phases)}")


def container_state(pod: dict[str, Any]) -> dict[str, Any]:
    return dict(pod["status"]["containerStatuses"][0]["state"])


def test_pod_runs_to_succeeded_with_env_and_termination_message(
    control_plane: ControlPlane, namespace: str, rest: Rest
) -> None:
    rest.create(
        namespace, "secrets", {"metadata": {"name": "creds"}, "stringData": {"token": "s3"}}
    )
    rest.create(namespace, "configmaps", {"metadata": {"name": "cfg"}, "data": {"mode": "full"}})
    script = (
        "import json, os; "
        "open(os.environ['ROCKY_RESULT_PATH'], 'w').write(json.dumps({"
        "'token_len': len(os.environ['TOKEN']), 'mode': os.environ['MODE'], "
        "'greeting': os.environ['GREETING'], 'pod': os.environ['POD']}))"
    )
    env: list[dict[str, Any]] = [
        {"name": "ROCKY_RESULT_PATH", "value": "/dev/termination-log"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
        {"name": "NAME", "value": "world"},
        {"name": "GREETING", "value": "hello $(NAME)"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    rest.create(namespace, "pods", pod_manifest("ok", [PY, "-c", script], env=env))
    pod = wait_phase(rest, namespace, "ok", {"Succeeded", "Failed"})
    assert pod["spec"]["nodeName"] == "rocky-node"
    assert pod["status"]["phase"] == "Succeeded"
    term = container_state(pod)["terminated"]
    assert term["exitCode"] == 0
    assert term["reason"] == "Completed"
    assert json.loads(term["message"]) == {
        "token_len": 2,
        "mode": "full",
        "greeting": "hello world",
        "pod": "ok",
    }
    assert term["startedAt"] <= term["finishedAt"]
    conditions = {c["type"]: c for c in pod["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["reason"] == "PodCompleted"
    assert conditions["PodScheduled"]["status"] == "True"


def test_exit_code_and_fallback_to_logs_on_error(
    control_plane: ControlPlane, namespace: str, rest: Rest
) -> None:
    script = "import sys; print('first line'); sys.stderr.write('boom: bad thing\\n'); sys.exit(13)"
    rest.create(
        namespace,
        "pods",
        pod_manifest("fails", [PY, "-c", script], terminationMessagePolicy="FallbackToLogsOnError"),
    )
    rest.create(namespace, "pods", pod_manifest("fails-file", [PY, "-c", script]))
    pod = wait_phase(rest, namespace, "fails", {"Succeeded", "Failed"})
    term = container_state(pod)["terminated"]
    assert pod["status"]["phase"] == "Failed"
    assert (term["exitCode"], term["reason"]) == (13, "Error")
    assert "boom: bad thing" in term["message"]
    # The default policy (File) does not fall back to the log.
    plain = container_state(wait_phase(rest, namespace, "fails-file", {"Failed"}))
    assert "message" not in plain["terminated"]


def test_termination_message_is_cut_at_4096_bytes(
    control_plane: ControlPlane, namespace: str, rest: Rest
) -> None:
    script = "import os; open(os.environ['ROCKY_RESULT_PATH'], 'w').write('x' * 10000)"
    rest.create(namespace, "pods", pod_manifest("big", [PY, "-c", script]))
    term = container_state(wait_phase(rest, namespace, "big", {"Succeeded"}))["terminated"]
    assert term["message"] == "x" * 4096


def test_missing_secret_waits_with_create_container_config_error_then_runs(
    control_plane: ControlPlane, namespace: str, rest: Rest
) -> None:
    env = [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}]
    rest.create(
        namespace,
        "pods",
        pod_manifest("waits", [PY, "-c", "import os; assert os.environ['T']"], env=env),
    )

    def waiting() -> dict[str, Any] | None:
        statuses = read_pod(rest, namespace, "waits").get("status", {}).get("containerStatuses")
        return statuses[0]["state"].get("waiting") if statuses else None

    state = wait_for(waiting, what="a waiting container")
    assert state == {"reason": "CreateContainerConfigError", "message": 'secret "later" not found'}
    assert read_pod(rest, namespace, "waits")["status"]["phase"] == "Pending"
    # A Secret without the key: the kubelet's other message.
    rest.create(namespace, "secrets", {"metadata": {"name": "later"}})
    wait_for(
        lambda: (
            (waiting() or {}).get("message")
            == f"couldn't find key token in Secret {namespace}/later"
        ),
        what="the missing-key message",
    )
    rest.merge_patch(
        f"/api/v1/namespaces/{namespace}/secrets/later", {"stringData": {"token": "t"}}
    )
    assert wait_phase(rest, namespace, "waits", {"Succeeded", "Failed"})["status"]["phase"] == (
        "Succeeded"
    )


def test_active_deadline_fails_the_pod_with_deadline_exceeded(
    control_plane: ControlPlane, namespace: str, rest: Rest
) -> None:
    rest.create(namespace, "pods", pod_manifest("slow", ["sleep", "60"], activeDeadlineSeconds=2))
    started = time.monotonic()
    pod = wait_phase(rest, namespace, "slow", {"Succeeded", "Failed"}, timeout=30)
    assert time.monotonic() - started < 20
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert "terminated" in container_state(pod)


def test_deletion_sends_sigterm_then_removes_the_pod(
    control_plane: ControlPlane, namespace: str, rest: Rest, tmp_path: Path
) -> None:
    marker = tmp_path / "got-sigterm"
    script = (
        "import signal, sys, time, pathlib\n"
        "def bye(*_):\n"
        f"    pathlib.Path({str(marker)!r}).write_text('term')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    rest.create(
        namespace,
        "pods",
        pod_manifest("victim", [PY, "-c", script], terminationGracePeriodSeconds=10),
    )
    pod = wait_phase(rest, namespace, "victim", {"Running"})
    log = (
        control_plane.node_work_dir
        / "pods"
        / (f"{namespace}_victim_{pod['metadata']['uid']}/main.log")
    )
    wait_for(lambda: log.exists() and "ready" in log.read_text(), what="the handler installed")
    rest.remove(namespace, "pods", "victim")

    def gone() -> bool:
        return not rest.items(namespace, "pods")

    wait_for(gone, timeout=20, what="the pod to be removed")
    assert marker.read_text() == "term"


def test_deletion_kills_after_the_grace_period(
    control_plane: ControlPlane, namespace: str, rest: Rest, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    script = (
        "import os, signal, time, pathlib\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(pidfile)!r}).write_text(str(os.getpid()))\n"
        "time.sleep(120)\n"
    )
    rest.create(namespace, "pods", pod_manifest("stubborn", [PY, "-c", script]))
    wait_phase(rest, namespace, "stubborn", {"Running"})
    wait_for(pidfile.exists, what="the pid file")
    pid = int(pidfile.read_text())
    started = time.monotonic()
    rest.remove(namespace, "pods", "stubborn", grace=2)
    wait_for(
        lambda: not rest.items(namespace, "pods"),
        timeout=20,
        what="the pod to be removed",
    )
    assert time.monotonic() - started >= 1.5  # it waited for the grace period first
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize(
    ("hook", "phase", "reason"),
    [("oom-kill", "Failed", "OOMKilled"), ("evict", "Failed", "Evicted")],
)
def test_simulated_oom_kill_and_eviction(
    control_plane: ControlPlane,
    namespace: str,
    rest: Rest,
    hook: str,
    phase: str,
    reason: str,
) -> None:
    rest.create(
        namespace,
        "pods",
        pod_manifest(
            "sim",
            ["sleep", "60"],
            annotations={
                "test.rocky.dev/simulate": hook,
                "test.rocky.dev/simulate-after-seconds": "0.5",
            },
        ),
    )
    pod = wait_phase(rest, namespace, "sim", {"Succeeded", "Failed"})
    assert pod["status"]["phase"] == phase
    term = container_state(pod)["terminated"]
    assert term["exitCode"] == 137
    conditions = {c["type"]: c for c in pod["status"]["conditions"]}
    if hook == "oom-kill":
        assert term["reason"] == reason
        assert "DisruptionTarget" not in conditions
    else:
        assert pod["status"]["reason"] == reason
        assert conditions["DisruptionTarget"]["status"] == "True"
        assert conditions["DisruptionTarget"]["reason"] == "TerminationByKubelet"


def test_simulated_image_pull_backoff_stays_pending_until_deleted(
    control_plane: ControlPlane, namespace: str, rest: Rest
) -> None:
    rest.create(
        namespace,
        "pods",
        pod_manifest(
            "nopull",
            [PY, "-c", "pass"],
            annotations={"test.rocky.dev/simulate": "image-pull-backoff"},
        ),
    )

    def reason() -> str | None:
        statuses = read_pod(rest, namespace, "nopull").get("status", {}).get("containerStatuses")
        waiting = statuses[0]["state"].get("waiting") if statuses else None
        return waiting["reason"] if waiting else None

    assert wait_for(lambda: reason() == "ImagePullBackOff", what="ImagePullBackOff") is True
    assert read_pod(rest, namespace, "nopull")["status"]["phase"] == "Pending"
    rest.remove(namespace, "pods", "nopull")
    wait_for(lambda: not rest.items(namespace, "pods"), what="pod removal")


def test_many_pods_run_concurrently(
    control_plane: ControlPlane, namespace: str, rest: Rest
) -> None:
    count = 40
    for i in range(count):
        rest.create(namespace, "pods", pod_manifest(f"p{i}", ["sh", "-c", f"exit $(( {i} % 3 ))"]))

    def done() -> list[dict[str, Any]] | None:
        pods = rest.items(namespace, "pods")
        finished = [p for p in pods if p["status"].get("phase") in ("Succeeded", "Failed")]
        return finished if len(finished) == count else None

    pods = wait_for(done, timeout=60, what=f"{count} finished pods")
    by_name = {p["metadata"]["name"]: p for p in pods}
    for i in range(count):
        term = container_state(by_name[f"p{i}"])["terminated"]
        assert term["exitCode"] == i % 3
        assert by_name[f"p{i}"]["status"]["phase"] == ("Succeeded" if i % 3 == 0 else "Failed")


def test_restart_policy_on_failure_restarts_the_container(
    control_plane: ControlPlane, namespace: str, rest: Rest, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    script = (
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "sys.exit(0 if n >= 2 else 1)\n"
    )
    manifest = pod_manifest("flaky", [PY, "-c", script])
    manifest["spec"]["restartPolicy"] = "OnFailure"
    rest.create(namespace, "pods", manifest)
    pod = wait_phase(rest, namespace, "flaky", {"Succeeded", "Failed"})
    status = pod["status"]["containerStatuses"][0]
    assert pod["status"]["phase"] == "Succeeded"
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1


def test_sigkill_of_pod_process_is_reported_like_a_kubelet(
    control_plane: ControlPlane, namespace: str, rest: Rest, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    script = (
        "import os, time, pathlib\n"
        f"pathlib.Path({str(pidfile)!r}).write_text(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    rest.create(namespace, "pods", pod_manifest("killed", [PY, "-c", script]))
    wait_for(pidfile.exists, what="the pid file")
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    pod = wait_phase(rest, namespace, "killed", {"Succeeded", "Failed"})
    term = container_state(pod)["terminated"]
    assert (pod["status"]["phase"], term["exitCode"], term["reason"]) == ("Failed", 137, "Error")


def test_in_process_agent_runs_pods_of_its_node_and_reports_lost_ones_after_restart(
    control_plane: ControlPlane, namespace: str, rest: Rest, tmp_path: Path
) -> None:
    from tests.support.node_agent import BackgroundAgent

    kubeconfig = control_plane.kubeconfig_for("node-agent")
    agent = BackgroundAgent(kubeconfig, tmp_path / "agent", node_name="second-node")
    agent.start()
    try:
        pod = pod_manifest("pinned", ["sleep", "60"])
        pod["spec"]["nodeName"] = "second-node"  # pre-bound: no Binding needed
        rest.create(namespace, "pods", pod)
        wait_phase(rest, namespace, "pinned", {"Running"})
    finally:
        agent.stop()  # a node going away kills its processes without reporting
    assert read_pod(rest, namespace, "pinned")["status"]["phase"] == "Running"
    again = BackgroundAgent(kubeconfig, tmp_path / "agent", node_name="second-node")
    again.start()
    try:
        pod = wait_phase(rest, namespace, "pinned", {"Failed"})
        term = container_state(pod)["terminated"]
        assert (term["reason"], term["exitCode"]) == ("ContainerStatusUnknown", 137)
    finally:
        again.stop()
        rest.delete("/api/v1/nodes/second-node")


@pytest.mark.parametrize(("hook", "reason"), [("oom-kill", "OOMKilled"), ("evict", "Evicted")])
def test_annotating_a_running_pod_fires_the_hook(
    control_plane: ControlPlane, namespace: str, rest: Rest, hook: str, reason: str
) -> None:
    rest.create(namespace, "pods", pod_manifest("later", ["sleep", "60"]))
    wait_phase(rest, namespace, "later", {"Running"})
    time.sleep(0.5)  # still running: the hook is not armed by status updates
    assert read_pod(rest, namespace, "later")["status"]["phase"] == "Running"
    rest.merge_patch(
        f"/api/v1/namespaces/{namespace}/pods/later",
        {"metadata": {"annotations": {"test.rocky.dev/simulate": hook}}},
    )
    pod = wait_phase(rest, namespace, "later", {"Failed"}, timeout=15)
    term = container_state(pod)["terminated"]
    assert term["exitCode"] == 137
    assert reason in (term["reason"], pod["status"].get("reason"))


def test_image_from_an_invalid_registry_cannot_be_pulled(
    control_plane: ControlPlane, namespace: str, rest: Rest
) -> None:
    pod = pod_manifest("badimage", [PY, "-c", "pass"])
    pod["spec"]["containers"][0]["image"] = "registry.invalid/rocky-runner:1"
    rest.create(namespace, "pods", pod)

    def waiting() -> dict[str, Any] | None:
        statuses = read_pod(rest, namespace, "badimage").get("status", {}).get("containerStatuses")
        return statuses[0]["state"].get("waiting") if statuses else None

    state = wait_for(waiting, what="a waiting container")
    assert state["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert "registry.invalid" in state["message"]


def test_kubectl_logs_reads_the_container_output_through_the_apiserver(
    control_plane: ControlPlane, namespace: str, rest: Rest
) -> None:
    from tests.support.e2e import kubectl

    script = "import sys\nfor i in range(5): print(f'line {i}', flush=True)\n"
    rest.create(namespace, "pods", pod_manifest("talker", [PY, "-c", script]))
    wait_phase(rest, namespace, "talker", {"Succeeded"})
    out = kubectl(control_plane, "-n", namespace, "logs", "talker").stdout
    assert out.splitlines() == [f"line {i}" for i in range(5)]
    tail = kubectl(control_plane, "-n", namespace, "logs", "talker", "--tail=2").stdout
    assert tail.splitlines() == ["line 3", "line 4"]


def test_synthetic_agent_ends_pods_at_once_with_a_runner_result(
    control_plane: ControlPlane, namespace: str, rest: Rest, tmp_path: Path
) -> None:
    import re

    from tests.support.node_agent import BackgroundAgent, SyntheticResults

    from rocky_runner.contract import decode_result

    kubeconfig = control_plane.kubeconfig_for("node-agent")
    synthetic = SyntheticResults(re.compile(r"/bad$"))
    agent = BackgroundAgent(
        kubeconfig, tmp_path / "agent", node_name="synthetic-node", synthetic=synthetic
    )
    agent.start()
    try:
        for name, table in (("syn-ok", "good"), ("syn-bad", "bad")):
            task = json.dumps({"asset_key": ["duckdb", "acme", table]})
            # The command would never end: synthetic mode runs no process.
            pod = pod_manifest(name, ["sleep", "600"], env=[{"name": "ROCKY_TASK", "value": task}])
            pod["spec"]["nodeName"] = "synthetic-node"
            rest.create(namespace, "pods", pod)
        ok = wait_phase(rest, namespace, "syn-ok", {"Succeeded", "Failed"})
        bad = wait_phase(rest, namespace, "syn-bad", {"Succeeded", "Failed"})
    finally:
        agent.stop()
        rest.delete("/api/v1/nodes/synthetic-node")
    assert ok["status"]["phase"] == "Succeeded"
    result = decode_result(container_state(ok)["terminated"]["message"])
    assert (result.outcome, result.asset_key) == ("copied", ["duckdb", "acme", "good"])
    assert bad["status"]["phase"] == "Failed"
    term = container_state(bad)["terminated"]
    assert term["exitCode"] == 12
    assert decode_result(term["message"]).failure_kind == "query-rejected"
