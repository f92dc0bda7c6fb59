"""No fragment of a secret leaves the runner pods (issue 12), on the real kube-apiserver.

Sentinel secrets of awkward shapes (quotes, backslashes, unicode, 6 to 200 characters)
go into every credential field of the three remote adapters, from Secrets, through the
operator's runner pods, against loopback fakes that echo the credential in the login
failure in the shapes services use (Snowflake: the login request body, JSON-escaped;
Databricks: the bearer token verbatim in the error header the connector reports, URL-
encoded in another, JSON-escaped in the body; BigQuery: the grant request form-encoded
and the JWT's key id, the ``private_key_id``, both JSON-escaped and inside the base64
JWT header). Each adapter fails once at discovery (the discovery pod's answer) and
once at the copy (discovery passes, the table's runner pod is refused), so both pod
kinds and both ways into the RockyRun's status are covered. One operator serves all
runs.

Everything the runs leave behind is then grepped with tests/support/leaks.py (every
6-character fragment of each secret: exact, case-folded, JSON-escaped, repr, URL-encoded,
base64 at every alignment): each RockyRun whole (status included), the namespace's
Events and ConfigMaps (the RunOutput unpacked), every version of every pod the watch
saw (termination messages), each pod's log through the API (pods/log, read as the watch
sees it terminate: the operator deletes finished pods) and the node agent's log and
termination files of every pod, and the operator's log and metrics. The fakes'
own request logs prove each secret really was sent and echoed.

DuckDB takes no credential, and the task document is the pod's first environment
variable, so no ``$(VAR)`` can expand a Secret into it: no Secret value can reach DuckDB
SQL through the operator. The DuckDB context-window clipping is covered on a real
runner process in tests/security/test_sentinel_runner.py.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from tests.support.control_plane import ControlPlane
from tests.support.e2e import OperatorProcess, Rest, apply_crds, kubectl, wait_for
from tests.support.leaks import LeakFinder, find_leaks
from tests.support.sentinels import (
    ECHOED,
    SECRET_NAME,
    SENTINELS,
    echo_fakes,
    run_specs,
    secret_data,
)

FINISHED = ("Succeeded", "PartialFailure", "Failed")


@pytest.fixture
def fakes() -> Iterator[dict[str, Any]]:
    with echo_fakes() as found:
        yield found


class PodWatch:
    """Every version of every pod of a namespace, as a watch delivers them."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.versions: list[dict[str, Any]] = []
        self.logs: dict[str, str] = {}
        self._stop = threading.Event()
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        self._thread = threading.Thread(target=self._run, daemon=True, name="pod-watch")

    def _run(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                for event in self._watch.stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    resource_version=version or None,
                    timeout_seconds=5,
                    _preload_content=True,
                ):
                    pod = self.core.api_client.sanitize_for_serialization(event["object"])
                    self.versions.append(pod)
                    self._read_log(pod)
                    version = pod["metadata"].get("resourceVersion", version)
                    if self._stop.is_set():
                        break
            except Exception:  # watch expired or the API hiccuped: list again
                version = ""

    def _read_log(self, pod: dict[str, Any]) -> None:
        """A terminated pod's log through the API (pods/log), once, while it exists (the
        operator deletes finished pods; the node agent's files keep every log anyway)."""
        name = pod["metadata"]["name"]
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        if name in self.logs or not any((c.get("state") or {}).get("terminated") for c in statuses):
            return
        with contextlib.suppress(Exception):
            self.logs[name] = self.core.read_namespaced_pod_log(name, self.namespace)

    def __enter__(self) -> PodWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._watch.stop()  # type: ignore[no-untyped-call]
        self._thread.join(timeout=15)


def _everything(
    cp: ControlPlane, rest: Rest, namespace: str, pods: PodWatch, operator: OperatorProcess
) -> dict[str, str]:
    """Each place a secret must not reach, as text, by a label for the report."""
    texts: dict[str, str] = {}
    for kind in ("rockyruns.rocky.dev", "events", "configmaps", "pods"):
        out = kubectl(cp, "-n", namespace, "get", kind, "-o", "json").stdout
        texts[f"kubectl get {kind}"] = out
    # The output ConfigMaps hold the RunOutput gzip'd in binaryData: grep it unpacked, and
    # not as its base64, where a base64 secret (a PEM key's body) shares a 6-character run
    # with the compressed bytes' encoding by chance now and then (CI, d8b5b58). Nor the API
    # server's public CA certificate (kube-root-ca.crt), base64 the operator did not write.
    config_maps = json.loads(texts["kubectl get configmaps"])["items"]
    config_maps = [cm for cm in config_maps if cm["metadata"]["name"] != "kube-root-ca.crt"]
    texts["kubectl get configmaps"] = json.dumps(
        [{**cm, "binaryData": sorted(cm.get("binaryData") or {})} for cm in config_maps]
    )
    for cm in config_maps:
        for key, value in (cm.get("binaryData") or {}).items():
            raw = base64.b64decode(value)
            with contextlib.suppress(OSError, EOFError):
                raw = gzip.decompress(raw)
            label = f"configmap {cm['metadata']['name']}/{key} (unpacked)"
            texts[label] = raw.decode("utf-8", "replace")
    for i, pod in enumerate(pods.versions):
        texts[f"pod watch #{i} {pod['metadata']['name']}"] = json.dumps(pod, ensure_ascii=False)
    for name, log in pods.logs.items():
        texts[f"pods/log {name}"] = log
    for path in sorted((cp.node_work_dir / "pods").glob(f"{namespace}_*/*")):
        if path.is_file():
            texts[f"node agent {path.parent.name}/{path.name}"] = path.read_text(errors="replace")
    texts["operator log"] = operator.proc.output() if operator.proc else ""
    texts["operator metrics"] = operator.metrics()
    return texts


def test_no_fragment_of_a_sentinel_secret_leaves_the_pods(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    rest: Rest,
    namespace: str,
    fakes: dict[str, Any],
    tmp_path: Path,
) -> None:
    cp = control_plane
    apply_crds(cp, "rockyruns.rocky.dev")
    data = secret_data(fakes)
    rest.create(namespace, "secrets", {"metadata": {"name": SECRET_NAME}, "stringData": data})
    operator = OperatorProcess(cp, namespace, tmp_path / "operator.log")
    runs = run_specs(fakes)
    with PodWatch(api_client, namespace) as pods:
        operator.start()
        try:
            for name, spec in runs.items():
                doc = {"apiVersion": "rocky.dev/v1alpha1", "kind": "RockyRun",
                       "metadata": {"name": name}, "spec": spec}  # fmt: skip
                rest.post(f"/apis/rocky.dev/v1alpha1/namespaces/{namespace}/rockyruns", doc)

            def finished() -> dict[str, dict[str, Any]] | None:
                items = rest.get(f"/apis/rocky.dev/v1alpha1/namespaces/{namespace}/rockyruns")
                done = {
                    r["metadata"]["name"]: r
                    for r in items["items"]
                    if (r.get("status") or {}).get("phase") in FINISHED
                }
                return done if len(done) == len(runs) else None

            done = wait_for(finished, timeout=420, interval=1, what="every sentinel run finished")
            texts = _everything(cp, rest, namespace, pods, operator)
        finally:
            operator.stop()
    texts["operator log"] = (tmp_path / "operator.log").read_text(errors="replace")

    # Every run failed on its credential, where it was meant to, and the echoing
    # error reached its status (masked).
    for name, run in done.items():
        status = run["status"]
        assert status["phase"] == "Failed", (name, status)
        summary = json.dumps(status)
        assert "auth-failed" in summary, (name, status)
        assert ECHOED[name.split("-")[0] if name != "sf-bad-key" else name] in summary, (
            name,
            status,
        )
        if name.endswith("-copy"):
            # Discovery passed: the table's own pod was refused, reported per table.
            errors = status["runOutput"]["errors"]
            assert [e["failure_kind"] for e in errors] == ["auth-failed"], (name, errors)
    # The fakes got the secrets and echoed them (before redaction these are leaks).
    for label in ("sf-discovery", "sf-copy", "dbx-discovery", "dbx-copy"):
        sent = [
            r.body.decode("utf-8", "replace") + json.dumps(r.headers, ensure_ascii=False)
            for r in fakes[label].requests
        ]
        assert find_leaks(SENTINELS, sent), f"{label}: no secret reached the fake"
    for mode in ("discovery", "copy"):
        grants = [r.body.decode() for r in fakes[f"bq-{mode}"].requests if r.path == "/token"]
        assert find_leaks({"kid": SENTINELS[f"bq-kid-{mode}"]}, grants), f"bq-{mode}: no kid"
    # Nothing anywhere else.
    finder = LeakFinder(SENTINELS)
    found = []
    for label, text in texts.items():
        for leak in finder(text):
            found.append((label, leak.secret_name, leak.shape, leak.context(text)))
    assert found == [], "\n".join(map(repr, found[:40]))
    agent_logs = [t for label, t in texts.items() if label.startswith("node agent")]
    assert sum("Traceback" in t for t in agent_logs) >= len(runs), "runner tracebacks were read"
    pod_logs = sum(1 for label in texts if label.startswith("pods/log"))
    terminated = [
        c["state"]["terminated"]["message"]
        for p in pods.versions
        for c in (p.get("status") or {}).get("containerStatuses") or []
        if ((c.get("state") or {}).get("terminated") or {}).get("message")
    ]
    assert terminated, "the watch saw termination messages"
    unpacked = [t for label, t in texts.items() if label.endswith("(unpacked)")]
    assert len(unpacked) >= len(runs), "every run's output ConfigMap was read"
    assert any(ECHOED["sf"] in t for t in unpacked)
    scanned = sum(len(t) for t in texts.values())
    print(
        f"\nscanned {len(texts)} texts ({pod_logs} pod logs read through the API), "
        f"{scanned} characters: no fragment of any secret"
    )
