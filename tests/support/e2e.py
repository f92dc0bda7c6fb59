"""Helpers for end-to-end tests against the test control plane: kubectl, polling, processes.

Kept free of pytest so benchmarks and scripts can use them too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.support.control_plane import REPO, ControlPlane, free_port

T = TypeVar("T")


JSON = dict[str, Any]


class Rest:
    """Typed-enough JSON REST calls against the control plane as one user: plain dicts in and out,
    the wire format the operator and the node agent see (no generated model classes)."""

    def __init__(self, cp: ControlPlane, user: str = "admin") -> None:
        self.cp = cp
        self.user = user

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
    ) -> JSON:
        raw = self.cp.call(method, path, body, user=self.user, content_type=content_type)
        return dict(json.loads(raw)) if raw else {}

    def get(self, path: str) -> JSON:
        return self.request("GET", path)

    def post(self, path: str, body: JSON) -> JSON:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, body: JSON) -> JSON:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path: str, body: JSON | None = None) -> JSON:
        return self.request("DELETE", path, body)

    def exists(self, path: str) -> bool:
        try:
            self.get(path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise
        return True

    # Namespaced core/v1 shortcuts: kind is the plural resource name ("pods", "secrets", ...).
    def create(self, namespace: str, kind: str, body: JSON) -> JSON:
        return self.post(f"/api/v1/namespaces/{namespace}/{kind}", body)

    def read(self, namespace: str, kind: str, name: str) -> JSON:
        return self.get(f"/api/v1/namespaces/{namespace}/{kind}/{name}")

    def remove(self, namespace: str, kind: str, name: str, *, grace: int | None = None) -> JSON:
        options = None if grace is None else {"gracePeriodSeconds": grace}
        return self.delete(f"/api/v1/namespaces/{namespace}/{kind}/{name}", options)

    def items(self, namespace: str, kind: str) -> list[JSON]:
        return list(self.get(f"/api/v1/namespaces/{namespace}/{kind}")["items"])


def kubectl(
    cp: ControlPlane,
    *args: str,
    user: str = "admin",
    input: str | None = None,
    check: bool = True,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run the built kubectl against the control plane; raises with its stderr when it fails."""
    proc = subprocess.run(
        [str(cp.kubectl), *args],
        input=input,
        capture_output=True,
        text=True,
        env=cp.env(user),
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"kubectl {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def kubectl_json(cp: ControlPlane, *args: str, user: str = "admin") -> Any:
    return json.loads(kubectl(cp, *args, "-o", "json", user=user).stdout)


def apply_file(cp: ControlPlane, path: Path | str, *, namespace: str | None = None) -> str:
    """`kubectl apply -f <path>` (optionally in a namespace); returns kubectl's output."""
    ns = ["-n", namespace] if namespace else []
    return kubectl(cp, "apply", "-f", str(path), *ns).stdout


def apply_yaml(cp: ControlPlane, manifest: str, *, namespace: str | None = None) -> str:
    """`kubectl apply -f -` with the manifest on stdin."""
    ns = ["-n", namespace] if namespace else []
    return kubectl(cp, "apply", "-f", "-", *ns, input=manifest).stdout


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def is_established(crd: Mapping[str, Any]) -> bool:
    """Whether a CRD serves its kind. A CRD just created has no status conditions yet, which
    `kubectl wait --for=condition=Established` reports as an error instead of waiting."""
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def apply_crds(cp: ControlPlane, *names: str, timeout: float = 60.0) -> None:
    """Apply CRDs from crds/ (e.g. ``rockyruns.rocky.dev``) and wait until each is served."""
    for name in names:
        apply_file(cp, REPO / "crds" / f"{name}.yaml")
    for name in names:
        wait_for(
            lambda name=name: is_established(kubectl_json(cp, "get", "crd", name)),  # type: ignore[misc]
            timeout=timeout,
            what=f"CRD {name} established",
        )


@dataclass
class BackgroundProcess:
    """A process started with the control plane's kubeconfig, e.g. the operator."""

    popen: subprocess.Popen[bytes]
    log: Path

    def kill9(self) -> int:
        """SIGKILL the whole process group at once (a crash, no cleanup); returns the exit code."""
        os.killpg(self.popen.pid, signal.SIGKILL)
        return self.popen.wait(timeout=10)

    def terminate(self, grace: float = 10.0) -> int | None:
        if self.popen.poll() is not None:
            return self.popen.returncode
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            return self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            return self.kill9()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_process(
    cp: ControlPlane,
    argv: Sequence[str],
    *,
    log: Path,
    user: str = "operator",
    env: Mapping[str, str] | None = None,
) -> BackgroundProcess:
    """Start `argv` in its own process group with KUBECONFIG for `user` (default rocky-operator)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**cp.env(user), **(env or {})},
            cwd=REPO,
            start_new_session=True,
        )
    return BackgroundProcess(popen, log)


#: Environment of an operator whose runner policy allows every choice.
ALLOW_ALL_RUNNERS_ENV = {
    "ROCKY_RUNNER_ALLOWED_IMAGES": "*",
    "ROCKY_RUNNER_ALLOWED_SERVICE_ACCOUNTS": "*",
    "ROCKY_RUNNER_ALLOW_COMMAND_OVERRIDE": "true",
    "ROCKY_RUNNER_ALLOWED_VOLUME_TYPES": "*",
    "ROCKY_RUNNER_ALLOWED_MOUNT_PATHS": "*",
    "ROCKY_RUNNER_ALLOWED_ENV_SOURCES": "*",
}


class OperatorProcess:
    """`rocky-operator run` as a process watching one namespace, restartable."""

    def __init__(
        self,
        cp: ControlPlane,
        namespace: str,
        log: Path,
        extra_args: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.cp = cp
        self.namespace = namespace
        self.log = log
        self.extra_args = extra_args
        # The e2e runs replace the runner command (the node agent runs it as a local
        # process): allowed here; tests/security starts operators with the default policy.
        self.env = {**ALLOW_ALL_RUNNERS_ENV, **(env or {})}
        self.port = free_port()
        self.proc: BackgroundProcess | None = None

    def start(self) -> None:
        exe = Path(sys.executable).parent / "rocky-operator"
        argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "rocky_operator.cli"]
        self.proc = start_process(
            self.cp,
            [
                *argv,
                "run",
                "--namespace",
                self.namespace,
                "--metrics-host",
                "127.0.0.1",
                "--metrics-port",
                str(self.port),
                "--batch-seconds",
                "0.2",
                "--status-interval-seconds",
                "1",
                *self.extra_args,
            ],
            log=self.log,
            user="operator",
            env=self.env,
        )
        wait_for(self._healthy, timeout=60, what="the operator's /healthz")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.popen.poll() is not None:
            raise AssertionError(f"operator exited:\n{self.proc.output()[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                return True
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc = None


def pod_log(cp: ControlPlane, namespace: str, name: str, uid: str, container: str) -> str:
    """A pod's container log as the node agent wrote it (the agent serves no `kubectl logs`)."""
    path = cp.node_work_dir / "pods" / f"{namespace}_{name}_{uid}" / f"{container}.log"
    return path.read_text(errors="replace") if path.exists() else ""
