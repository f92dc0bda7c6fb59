"""Where ``rocky-operator-rocky run`` runs a translated pipeline: a cluster or this machine.

* **cluster**: the RockyRun is created with :class:`~rocky_operator.client.cluster.ClusterClient`
  (in-cluster configuration, else ``KUBECONFIG``), its progress printed on stderr while the
  operator runs one pod per table, and its complete RunOutput read when it is ``Complete``. A
  resume sets ``spec.resumeFrom`` to the earlier RockyRun.
* **local**: the manifest goes to the local executor (one runner process per table); the
  credentials reach the runners in their ``ROCKY_*`` variables, never through the manifest. A
  resume passes the earlier run's RunOutput as ``--resume-from``.

Both return ``(exit code, RunOutput or None, run name)``.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from rocky_operator.compat.rocky_toml import Translation
from rocky_operator.compat.state import RunRecord, output_path

Outcome = tuple[int, dict[str, Any] | None, str]


class BackendError(RuntimeError):
    """The run could not be carried out (one line, exit 1)."""


@dataclass(frozen=True)
class RunRequest:
    translation: Translation
    state: Path
    resume: RunRecord | None = None
    concurrency: int | None = None
    fail_fast: bool = False


def _manifest(request: RunRequest) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(json.dumps(request.translation.manifest))
    spec = manifest["spec"]
    if request.concurrency is not None:
        spec["concurrency"] = max(1, min(request.concurrency, 1000))
    if request.fail_fast:
        spec["failFast"] = True
    return manifest


def run_name(base: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{base[:230]}-{stamp}-{secrets.token_hex(2)}"


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


def run_local(
    request: RunRequest,
    *,
    stderr: TextIO,
    environ: MutableMapping[str, str] = os.environ,
) -> Outcome:
    from rocky_operator.local.executor import LocalOptions
    from rocky_operator.local.executor import run_local as execute

    manifest = _manifest(request)
    name = run_name(manifest["metadata"]["name"])
    manifest["metadata"]["name"] = name
    environ.update(credential_values(request.translation, environ))  # the runners inherit it
    path = request.state / "runs" / f"{name}.manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2))  # JSON is YAML; no credential in it
    previous = None
    if request.resume is not None:
        previous = output_path(request.state, request.resume.name)
        if not previous.is_file():
            raise BackendError(f"resume: the RunOutput of {request.resume.name} is gone")
    out = io.StringIO()
    code = execute(
        path,
        LocalOptions(resume_from=str(previous) if previous else None),
        stdout=out,
        stderr=stderr,
    )
    text = out.getvalue().strip()
    return code, (json.loads(text) if text else None), name


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


def run_cluster(
    request: RunRequest,
    *,
    namespace: str,
    timeout: float,
    stderr: TextIO,
    poll_seconds: float = 1.0,
    client_factory: Callable[[str], Any] | None = None,
) -> Outcome:
    from rocky_operator.client.cluster import ClusterClient, is_complete
    from rocky_operator.client.result import RockyClientError

    manifest = _manifest(request)
    base = manifest["metadata"].pop("name")
    try:
        client = (client_factory or (lambda ns: ClusterClient(ns)))(namespace)
    except Exception as exc:  # a missing or unusable kubeconfig: one line
        raise BackendError(f"cluster: {exc}") from None
    try:
        resume = request.resume
        if resume is not None and resume.namespace != namespace:
            raise BackendError(
                f"resume: {resume.name} ran in namespace {resume.namespace}, not {namespace}"
            )
        name = client.submit(
            manifest,
            name=run_name(base),
            resume_from=resume.name if resume else None,
        )
        stderr.write(f"rocky-operator-rocky: RockyRun {namespace}/{name} created\n")
        stderr.flush()
        deadline = time.monotonic() + timeout
        last = ""
        obj = client.get(name)
        while not is_complete(obj):
            line = _progress(obj)
            if line != last:
                stderr.write(f"rocky-operator-rocky: {name}: {line}\n")
                stderr.flush()
                last = line
            if time.monotonic() >= deadline:
                raise BackendError(
                    f"RockyRun {namespace}/{name} did not finish within {timeout:g} s; it keeps "
                    "running (kubectl delete rr to stop it)"
                )
            time.sleep(poll_seconds)
            obj = client.get(name)
        stderr.write(f"rocky-operator-rocky: {name}: {_progress(obj)}\n")
        outcome = client.outcome(obj)
    except RockyClientError as exc:
        raise BackendError(str(exc)) from None
    finally:
        client.close()
    return outcome.exit_code, outcome.output, name
