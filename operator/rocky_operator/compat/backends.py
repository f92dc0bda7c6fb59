"""Where ``rocky-operator-rocky run`` runs a translated pipeline: a cluster or this machine.

* **cluster**: the RockyRun is created with :class:`~rocky_operator.client.cluster.ClusterClient`
  (in-cluster configuration, else ``KUBECONFIG``), labelled with its pipeline (and
  ``--state-namespace``) so a later ``--resume-latest`` finds it in the cluster, its progress
  printed on stderr while the operator runs one pod per table, and its complete RunOutput read
  when it is ``Complete``. A resume sets ``spec.resumeFrom`` to the earlier RockyRun (waiting
  for it first when it is still running).
* **local**: the manifest goes to the local executor (one runner process per table), its journal
  kept in the state directory; the credentials reach the runners in their ``ROCKY_*``
  variables, never through the manifest. A resume passes the earlier run's RunOutput (or, for
  a run that was killed, its journal) as ``--resume-from``.

Both return ``(exit code, RunOutput or None, run name)``.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from rocky_operator.compat import state
from rocky_operator.compat.rocky_toml import Translation
from rocky_operator.compat.state import RunRecord

Outcome = tuple[int, dict[str, Any] | None, str]
PROG = "rocky-operator-rocky"
LABEL_PIPELINE = "rocky.dev/rocky-pipeline"
LABEL_STATE_NAMESPACE = "rocky.dev/rocky-state-namespace"
ANNOTATION_FILTER = "rocky.dev/rocky-filter"
ANNOTATION_PIPELINE = "rocky.dev/rocky-pipeline"
ANNOTATION_STARTED = "rocky.dev/rocky-started-ns"


class BackendError(RuntimeError):
    """The run could not be carried out (one line, exit 1)."""


class RunInterruptedError(RuntimeError):
    """SIGINT / SIGTERM while waiting for a cluster run (exit 130, as Rocky)."""


@dataclass(frozen=True)
class RunRequest:
    translation: Translation
    state: Path
    resume: RunRecord | None = None
    filter: str = ""
    state_namespace: str | None = None


def run_name(base: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{base[:230]}-{stamp}-{secrets.token_hex(2)}"


def label_value(text: str) -> str:
    """A Kubernetes label value (63 characters, alphanumeric at both ends) for ``text``."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value) or "x"


def credential_values(translation: Translation, env: Mapping[str, str]) -> dict[str, str]:
    """Runner variable -> value, from this environment (or the file a variable names)."""
    values: dict[str, str] = {}
    for cred in translation.credentials:
        raw = cred.literal if cred.env is None else env.get(cred.env)
        if not raw:
            raise BackendError(
                f"credential {cred.secret_key}: environment variable {cred.env} is not set"
            )
        if cred.is_file:
            try:
                raw = Path(raw).read_text()
            except OSError as exc:
                raise BackendError(
                    f"credential {cred.secret_key}: cannot read the file it names: "
                    f"{exc.strerror or exc}"
                ) from None
        values[cred.runner_env] = raw
    return values


# --- local ----------------------------------------------------------------------------


def run_local(
    request: RunRequest,
    *,
    stderr: TextIO,
    environ: MutableMapping[str, str] = os.environ,
) -> Outcome:
    from rocky_operator.local.executor import LocalOptions
    from rocky_operator.local.executor import run_local as execute

    manifest = json.loads(json.dumps(request.translation.manifest))
    name = run_name(manifest["metadata"]["name"])
    manifest["metadata"]["name"] = name
    environ.update(credential_values(request.translation, environ))  # the runners inherit it
    path = request.state / "runs" / f"{name}.manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2))  # JSON is YAML; no credential in it
    previous = None
    if request.resume is not None:
        previous = state.local_resume_source(request.state, request.resume)
        if previous is None:
            raise BackendError(
                f"resume: neither the RunOutput nor the journal of "
                f"{request.resume.name} is in {request.state}"
            )
    journal = state.journal_path(request.state, name)
    state.started(
        request.state,
        RunRecord(
            name,
            request.translation.pipeline,
            "local",
            None,
            state.RUNNING,
            request.filter,
            journal=str(journal),
        ),
    )
    out = io.StringIO()
    code = execute(
        path,
        LocalOptions(resume_from=str(previous) if previous else None, journal=journal),
        stdout=out,
        stderr=stderr,
    )
    text = out.getvalue().strip()
    return code, (json.loads(text) if text else None), name


# --- cluster --------------------------------------------------------------------------


def _selector(pipeline: str, state_namespace: str | None) -> str:
    ns = (
        f"{LABEL_STATE_NAMESPACE}={state_namespace}"
        if state_namespace
        else (f"!{LABEL_STATE_NAMESPACE}")
    )
    return f"{LABEL_PIPELINE}={label_value(pipeline)},{ns}"


def _finished_at(obj: Mapping[str, Any]) -> float:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Complete" and cond.get("status") == "True":
            stamp = str(cond.get("lastTransitionTime") or "")
            try:
                return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            except ValueError:
                return 0.0
    return 0.0


def cluster_record(obj: Mapping[str, Any], namespace: str, pipeline: str) -> RunRecord:
    """What ``--resume-latest`` needs of a RockyRun."""
    from rocky_operator.client.cluster import is_complete

    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    output = status.get("runOutput") or {}
    verdict = str(output.get("status") or status.get("phase")) if is_complete(obj) else None
    return RunRecord(
        str(meta.get("name")),
        pipeline,
        "cluster",
        namespace,
        verdict or state.RUNNING,
        str((meta.get("annotations") or {}).get(ANNOTATION_FILTER, "")),
        _finished_at(obj) if verdict else _started_at(meta),
    )


def _started_at(meta: Mapping[str, Any]) -> float:
    raw = str((meta.get("annotations") or {}).get(ANNOTATION_STARTED, ""))
    return int(raw) / 1e9 if raw.isdigit() else 0.0


def cluster_latest(client: Any, pipeline: str, state_namespace: str | None) -> RunRecord | None:
    """The newest RockyRun this command made for the pipeline (and state namespace)."""
    from rocky_operator.api.spec import API_GROUP, API_VERSION, PLURAL
    from rocky_operator.client.cluster import REQUEST_TIMEOUT

    try:
        listed = client.custom.list_namespaced_custom_object(
            API_GROUP,
            API_VERSION,
            client.namespace,
            PLURAL,
            label_selector=_selector(pipeline, state_namespace),
            _request_timeout=REQUEST_TIMEOUT,
        )
    except Exception as exc:  # ApiException or a connection error: one line
        status = getattr(exc, "status", None)
        why = f"{status} {getattr(exc, 'reason', '')}" if status else str(exc)
        raise BackendError(f"listing RockyRuns in {client.namespace}: {why}") from None
    items = listed.get("items") or []
    if not items:
        return None

    def started(obj: Mapping[str, Any]) -> tuple[int, str, str]:
        meta = obj.get("metadata") or {}
        raw = (meta.get("annotations") or {}).get(ANNOTATION_STARTED, "0")
        return (
            int(raw) if str(raw).isdigit() else 0,
            meta.get("creationTimestamp", ""),
            meta.get("name", ""),
        )

    return cluster_record(max(items, key=started), client.namespace, pipeline)


def cluster_find(client: Any, pipeline: str, run: str) -> RunRecord | None:
    """``--resume RUN_ID`` on a cluster: the RockyRun of that name, None when there is none."""
    from rocky_operator.client.result import RockyClientError

    try:
        obj = client.get(run)
    except RockyClientError as exc:
        if getattr(exc.__cause__, "status", None) == 404:
            return None
        raise BackendError(str(exc)) from None
    return cluster_record(obj, client.namespace, pipeline)


def _progress(obj: Mapping[str, Any]) -> str:
    status = obj.get("status") or {}
    tables = status.get("tables") or {}
    counts = ", ".join(
        f"{tables.get(k, 0)} {label}"
        for k, label in (
            ("planned", "planned"),
            ("running", "running"),
            ("copied", "copied"),
            ("failed", "failed"),
            ("waitingRetry", "waiting to retry"),
        )
    )
    return f"{status.get('phase') or 'Pending'}: {counts}"


def _wait(
    client: Any, name: str, deadline: float, stderr: TextIO, poll_seconds: float
) -> dict[str, Any]:
    from rocky_operator.client.cluster import is_complete

    last = ""
    obj: dict[str, Any] = client.get(name)
    while not is_complete(obj):
        line = _progress(obj)
        if line != last:
            stderr.write(f"{PROG}: {name}: {line}\n")
            stderr.flush()
            last = line
        if time.monotonic() >= deadline:
            raise BackendError(
                f"RockyRun {client.namespace}/{name} did not finish in time; it keeps "
                "running (kubectl delete rockyrun to stop it)"
            )
        time.sleep(poll_seconds)
        obj = client.get(name)
    stderr.write(f"{PROG}: {name}: {_progress(obj)}\n")
    return obj


def run_cluster(
    request: RunRequest,
    client: Any,
    *,
    timeout: float,
    stderr: TextIO,
    poll_seconds: float = 1.0,
    on_created: Callable[[str], None] | None = None,
) -> Outcome:
    from rocky_operator.client.result import RockyClientError

    manifest: dict[str, Any] = json.loads(json.dumps(request.translation.manifest))
    meta = manifest["metadata"]
    base = meta.pop("name")
    pipeline = request.translation.pipeline
    labels = {LABEL_PIPELINE: label_value(pipeline)}
    if request.state_namespace:
        labels[LABEL_STATE_NAMESPACE] = request.state_namespace
    meta.setdefault("annotations", {}).update(
        {
            ANNOTATION_PIPELINE: pipeline,
            ANNOTATION_FILTER: request.filter,
            ANNOTATION_STARTED: str(time.time_ns()),
        }
    )
    deadline = time.monotonic() + timeout
    name = run_name(base)
    try:
        resume = request.resume
        if resume is not None and resume.status == state.RUNNING:
            stderr.write(f"{PROG}: waiting for RockyRun {resume.name} to finish, to resume it\n")
            _wait(client, resume.name, deadline, stderr, poll_seconds)
        name = client.submit(
            manifest, name=name, labels=labels, resume_from=resume.name if resume else None
        )
        stderr.write(f"{PROG}: RockyRun {client.namespace}/{name} created\n")
        stderr.flush()
        if on_created is not None:
            on_created(name)
        obj = _wait(client, name, deadline, stderr, poll_seconds)
        outcome = client.outcome(obj)
    except RockyClientError as exc:
        raise BackendError(str(exc)) from None
    except KeyboardInterrupt:
        raise RunInterruptedError(
            f"interrupted; RockyRun {client.namespace}/{name} keeps running on the cluster "
            "(kubectl delete rockyrun to stop it; --resume-latest resumes it once it ends)"
        ) from None
    return outcome.exit_code, outcome.output, name
