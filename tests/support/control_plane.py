"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager
and the process node agent, the way controller-runtime's envtest runs one (plus the controllers
and a "kubelet").

Used three ways:
- the pytest session fixture `control_plane` (tests/e2e/conftest.py) starts one per session;
- `scripts/control-plane up|down|status` (this module's CLI) starts one in the background for a
  person to try the operator with kubectl;
- benchmarks/side_by_side.py.

Authentication is by static bearer tokens, one user per client, so the audit log can attribute
every request (see `TOKENS`); all of them are in `system:masters` except `rocky-operator-rbac`,
which has no permissions until a test binds a role to it. Binaries come from
tools/k8s-binaries/build.sh (built from Go modules, cached under ~/.cache/rocky-operator/k8s/).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import pki
from tests.support.procs import die_with_parent_process

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tools" / "k8s-binaries" / "build.sh"
DEFAULT_STATE_DIR = Path(
    os.environ.get("ROCKY_CP_DIR", Path.home() / ".cache" / "rocky-operator" / "control-plane")
)
NODE_NAME = "rocky-node"

# user name -> groups. Each user gets its own kubeconfig `<key>.kubeconfig` in the state dir.
TOKENS: dict[str, tuple[str, tuple[str, ...]]] = {
    "admin": ("admin", ("system:masters",)),
    "operator": ("rocky-operator", ("system:masters",)),
    "operator-rbac": ("rocky-operator-rbac", ()),
    "node-agent": ("rocky-node-agent", ("system:masters",)),
    "kcm": ("system:kube-controller-manager", ("system:masters",)),
    "benchmark": ("rocky-benchmark", ("system:masters",)),
}

# Controllers kube-controller-manager runs: garbage collection by ownerReference, namespace
# deletion, default service accounts and their tokens, Jobs (the side-by-side benchmark), and the
# ReplicaSet / Deployment pair so a person can try ordinary workloads by hand.
KCM_CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "job-controller",
    "ttl-after-finished-controller",
    "replicaset-controller",
    "deployment-controller",
)

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
"""


class ControlPlaneError(RuntimeError):
    """A component did not start or become ready; the message carries its log tail."""


def binaries_dir(*, build: bool = True) -> Path:
    """The directory holding kube-apiserver, kube-controller-manager, kubectl and etcd.

    `ROCKY_K8S_BIN_DIR` overrides; otherwise tools/k8s-binaries/build.sh builds or reuses them.
    """
    override = os.environ.get("ROCKY_K8S_BIN_DIR")
    if override:
        return Path(override)
    if not build:
        raise ControlPlaneError("ROCKY_K8S_BIN_DIR is not set and building is disabled")
    out = subprocess.run(
        [str(BUILD_SCRIPT), "--print-dir"], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Component:
    """One background process of the control plane, in its own process group."""

    name: str
    argv: list[str]
    log: Path
    pid: int | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(
        self,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        *,
        die_with_parent: bool = True,
    ) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                cwd=cwd,
                preexec_fn=die_with_parent_process if die_with_parent else None,
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.pid is not None and _pid_alive(self.pid, self.argv[0])

    def check(self) -> None:
        if not self.alive():
            raise ControlPlaneError(f"{self.name} exited; last log lines:\n{tail(self.log)}")

    def stop(self, grace: float = 10.0) -> None:
        if self.pid is None:
            return
        _kill_group(self.pid, grace)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        self.pid = None


def _pid_alive(pid: int, exe: str) -> bool:
    """Whether `pid` still runs `exe` (guards against a recycled pid after a reboot)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and os.fsencode(exe) in cmdline[:3]


def _kill_group(pgid: int, grace: float) -> None:
    """SIGTERM the process group, wait up to `grace` seconds for it, then SIGKILL what is left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pgid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, 0)


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager (+ node agent) in `state_dir`."""

    def __init__(
        self,
        state_dir: Path,
        bin_dir: Path,
        *,
        node_agent: bool = True,
        max_pods: int = 64,
        extra_apiserver_args: Sequence[str] = (),
        extra_kcm_args: Sequence[str] = (),
        node_agent_args: Sequence[str] = (),
        die_with_parent: bool = True,
    ) -> None:
        self.state_dir = state_dir
        self.die_with_parent = die_with_parent
        self.bin_dir = bin_dir
        self.with_node_agent = node_agent
        self.max_pods = max_pods
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.extra_kcm_args = list(extra_kcm_args)
        self.node_agent_args = list(node_agent_args)
        """Extra node agent flags, e.g. `--synthetic-results` (see tests/support/node_agent.py)."""
        self.components: dict[str, Component] = {}
        self.etcd_port = 0
        self.apiserver_port = 0
        self.tokens: dict[str, str] = {}

    # -- paths ----------------------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "pki" / "ca.crt"

    def kubeconfig_for(self, user: str = "admin") -> Path:
        return self.state_dir / f"{user}.kubeconfig"

    @property
    def kubeconfig(self) -> Path:
        return self.kubeconfig_for("admin")

    @property
    def kubectl(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.log"

    @property
    def node_work_dir(self) -> Path:
        return self.state_dir / "node"

    def env(self, user: str = "admin") -> dict[str, str]:
        """os.environ with KUBECONFIG for `user` and the binaries first on PATH."""
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig_for(user)),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, timeout: float = 120.0, *, attempts: int = 3) -> None:
        """Start every component and wait until each is ready.

        Ports are picked free just before use; another process on the machine can take one in
        between, so a start that fails on a port already in use is retried on fresh ports.
        """
        t0 = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, attempts + 1):
            try:
                self._prepare()
                self._start_etcd(timeout)
                self._start_apiserver(timeout)
                self._start_kcm(timeout)
                if self.with_node_agent:
                    self._start_node_agent(timeout)
                break
            except ControlPlaneError as exc:
                self.stop()
                if attempt == attempts or "address already in use" not in str(exc):
                    raise
                shutil.rmtree(self.state_dir / "etcd", ignore_errors=True)
            except BaseException:
                self.stop()
                raise
        self._save_state()
        self.startup_seconds = time.monotonic() - t0

    def stop(self) -> None:
        """Stop every component, newest first, and any pod process the node agent left."""
        for name in reversed(list(self.components)):
            self.components[name].stop()
        self.components.clear()
        kill_orphan_pods(self.node_work_dir)
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "state.json").unlink()

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _prepare(self) -> None:
        keys = pki.generate(self.state_dir / "pki")
        self._pki = keys
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.apiserver_port = free_port()
        self.tokens = {key: secrets.token_hex(16) for key in TOKENS}
        lines = []
        for key, (user, groups) in TOKENS.items():
            lines.append(f'{self.tokens[key]},{user},{user},"{",".join(groups)}"')
        token_file = self.state_dir / "tokens.csv"
        token_file.write_text("\n".join(lines) + "\n")
        token_file.chmod(0o600)
        (self.state_dir / "audit-policy.yaml").write_text(AUDIT_POLICY)
        for key in TOKENS:
            self._write_kubeconfig(key)

    def _write_kubeconfig(self, key: str) -> None:
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "rocky-test",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": key, "user": {"token": self.tokens[key]}}],
            "contexts": [
                {
                    "name": "rocky-test",
                    "context": {"cluster": "rocky-test", "user": key, "namespace": "default"},
                }
            ],
            "current-context": "rocky-test",
        }
        path = self.kubeconfig_for(key)
        path.write_text(json.dumps(doc, indent=2))  # JSON is YAML; no yaml dependency here
        path.chmod(0o600)

    def _launch(self, name: str, argv: list[str], **kwargs: Any) -> Component:
        comp = Component(name, argv, self.state_dir / "logs" / f"{name}.log")
        comp.start(die_with_parent=self.die_with_parent, **kwargs)
        self.components[name] = comp
        return comp

    def _wait(self, comp: Component, probe: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            comp.check()
            try:
                if probe():
                    return
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last = exc
            time.sleep(0.2)
        raise ControlPlaneError(
            f"{comp.name} not {what} after {timeout:.0f}s ({last}); log:\n{tail(comp.log)}"
        )

    def _start_etcd(self, timeout: float) -> None:
        data = self.state_dir / "etcd"
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        comp = self._launch(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                f"--data-dir={data}",
                "--name=default",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync",  # test data only: durability is not needed, speed is
                "--quota-backend-bytes=2147483648",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"{client}/health", timeout=2) as resp:
                return bool(json.load(resp).get("health") == "true")

        self._wait(comp, healthy, timeout, "healthy")

    def _ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def get(self, path: str, *, user: str = "admin", timeout: float = 10.0) -> bytes:
        """GET an API path with `user`'s token (e.g. /metrics, /readyz)."""
        return self.call("GET", path, user=user, timeout=timeout)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        user: str = "admin",
        content_type: str = "application/json",
        timeout: float = 10.0,
    ) -> bytes:
        """One API request as `user`; the raw answer (raises urllib's HTTPError on >= 400)."""
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.server + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=timeout, context=self._ssl()) as resp:
            return bytes(resp.read())

    def _start_apiserver(self, timeout: float) -> None:
        sd = self.state_dir
        comp = self._launch(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--cert-dir={sd / 'apiserver-certs'}",
                f"--tls-cert-file={self._pki.serving_cert}",
                f"--tls-private-key-file={self._pki.serving_key}",
                f"--client-ca-file={self._pki.ca_cert}",
                f"--token-auth-file={sd / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={self._pki.sa_pub}",
                f"--service-account-signing-key-file={self._pki.sa_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                # Pods must not wait for their namespace's default ServiceAccount (created
                # asynchronously by the controller manager), and nothing mounts its token.
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                f"--audit-policy-file={sd / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-maxsize=0",
                "--profiling=false",
                # `kubectl logs` reaches the node agent at the Node's InternalIP (127.0.0.1).
                "--kubelet-preferred-address-types=InternalIP",
                *self.extra_apiserver_args,
            ],
        )
        self._wait(comp, lambda: self.get("/readyz", timeout=3) == b"ok", timeout, "ready")

    def _start_kcm(self, timeout: float) -> None:
        comp = self._launch(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig_for('kcm')}",
                "--leader-elect=false",
                f"--controllers={','.join(KCM_CONTROLLERS)}",
                f"--service-account-private-key-file={self._pki.sa_key}",
                f"--root-ca-file={self._pki.ca_cert}",
                "--use-service-account-credentials=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                *self.extra_kcm_args,
            ],
        )

        def default_sa() -> bool:
            try:
                self.get("/api/v1/namespaces/default/serviceaccounts/default", timeout=3)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return False
                raise
            return True

        self._wait(comp, default_sa, timeout, "running (no default ServiceAccount)")

    def _start_node_agent(self, timeout: float) -> None:
        comp = self._launch(
            "node-agent",
            [
                sys.executable,
                "-m",
                "tests.support.node_agent",
                f"--kubeconfig={self.kubeconfig_for('node-agent')}",
                f"--node-name={NODE_NAME}",
                f"--work-dir={self.node_work_dir}",
                f"--max-pods={self.max_pods}",
                f"--kubelet-port={free_port()}",
                f"--tls-cert={self._pki.serving_cert}",
                f"--tls-key={self._pki.serving_key}",
                *self.node_agent_args,
            ],
            cwd=REPO,
        )

        def node_ready() -> bool:
            try:
                node = json.loads(self.get(f"/api/v1/nodes/{NODE_NAME}", timeout=3))
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return False
                raise
            conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            return conds.get("Ready") == "True"

        self._wait(comp, node_ready, timeout, "registered")

    # -- state for the CLI ------------------------------------------------------------------------

    def _save_state(self) -> None:
        state = {
            "bin_dir": str(self.bin_dir),
            "server": self.server,
            "apiserver_port": self.apiserver_port,
            "etcd_port": self.etcd_port,
            "components": {
                c.name: {"pid": c.pid, "argv": c.argv, "log": str(c.log)}
                for c in self.components.values()
            },
        }
        (self.state_dir / "state.json").write_text(json.dumps(state, indent=2))

    # -- observation -------------------------------------------------------------------------------

    def request_total(self) -> Counter[tuple[str, str]]:
        """apiserver_request_total summed by (verb, resource) from /metrics."""
        counts: Counter[tuple[str, str]] = Counter()
        for line in self.get("/metrics").decode().splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels_text, _, value = line[len("apiserver_request_total{") :].rpartition("} ")
            labels = dict(part.split("=", 1) for part in labels_text.split(",") if "=" in part)
            key = (labels.get("verb", "").strip('"'), labels.get("resource", "").strip('"'))
            counts[key] += int(float(value))
        return counts


def audit_offset(control_plane: ControlPlane) -> int:
    """The current end of the audit log, to count only the requests made after it."""
    try:
        return control_plane.audit_log.stat().st_size
    except FileNotFoundError:
        return 0


def audit_counts(control_plane: ControlPlane, since: int = 0) -> Counter[str]:
    """API requests per user name in the audit log since byte offset `since`."""
    counts: Counter[str] = Counter()
    with control_plane.audit_log.open("rb") as fh:
        fh.seek(since)
        for line in fh:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line still being written
            counts[str(event.get("user", {}).get("username", "?"))] += 1
    return counts


def kill_orphan_pods(node_work_dir: Path) -> int:
    """Kill the pod process groups a hard-killed node agent left behind; returns how many."""
    killed = 0
    pgids = node_work_dir / "pgids"
    if not pgids.is_dir():
        return 0
    for entry in pgids.iterdir():
        with contextlib.suppress(ValueError, OSError):
            os.killpg(int(entry.read_text()), signal.SIGKILL)
            killed += 1
        with contextlib.suppress(OSError):
            entry.unlink()
    return killed


# -- CLI (scripts/control-plane) ------------------------------------------------------------


def _load_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((state_dir / "state.json").read_text()))
    except FileNotFoundError:
        return None


def cmd_up(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    state = _load_state(state_dir)
    if state and any(_pid_alive(c["pid"], c["argv"][0]) for c in state["components"].values()):
        print(f"# already running; `{sys.argv[0]} down` first", file=sys.stderr)
        print(f"export KUBECONFIG={state_dir / 'admin.kubeconfig'}")
        return 0
    bin_dir = binaries_dir()
    cp = ControlPlane(state_dir, bin_dir, max_pods=args.max_pods, die_with_parent=False)
    cp.start()
    for comp in cp.components.values():
        comp.popen = None  # detach: the processes outlive this command
    print(f"# control plane up in {cp.startup_seconds:.1f}s: {cp.server}", file=sys.stderr)
    print(f"# logs: {state_dir / 'logs'}; kubectl: {cp.kubectl}", file=sys.stderr)
    print(f"export PATH={bin_dir}:$PATH")
    print(f"export KUBECONFIG={cp.kubeconfig}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    state = _load_state(state_dir)
    stopped = []
    if state:
        for name in reversed(list(state["components"])):
            comp = state["components"][name]
            if _pid_alive(comp["pid"], comp["argv"][0]):
                _kill_group(comp["pid"], 10.0)
                stopped.append(name)
        (state_dir / "state.json").unlink()
    orphans = kill_orphan_pods(state_dir / "node")
    print(
        f"stopped: {', '.join(stopped) or 'nothing was running'}"
        + (f"; killed {orphans} orphan pod process(es)" if orphans else ""),
        file=sys.stderr,
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = _load_state(args.state_dir)
    if not state:
        print("down")
        return 3
    up = True
    for name, comp in state["components"].items():
        alive = _pid_alive(comp["pid"], comp["argv"][0])
        up &= alive
        print(f"{name:<24} pid {comp['pid']:<8} {'running' if alive else 'DEAD'}")
    print(f"server {state['server']}; export KUBECONFIG={args.state_dir / 'admin.kubeconfig'}")
    return 0 if up else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/control-plane",
        description="Run etcd, kube-apiserver, kube-controller-manager and the node agent "
        "on 127.0.0.1 in the background.",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where certificates, kubeconfigs, logs and etcd data live "
        "(default $ROCKY_CP_DIR or ~/.cache/rocky-operator/control-plane)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything; prints `export KUBECONFIG=...`")
    up.add_argument("--max-pods", type=int, default=64, help="pods the node agent runs at once")
    sub.add_parser("down", help="stop everything and every pod process")
    sub.add_parser("status", help="show which components run")
    args = parser.parse_args(argv)
    handler = {"up": cmd_up, "down": cmd_down, "status": cmd_status}[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
