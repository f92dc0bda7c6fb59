"""Run RockyRuns on a cluster with the (synchronous) Kubernetes client.

This is the user's side (``rocky-operator output``, Dagster, scripts), another process than the
operator: the operator process uses one asynchronous client (``kube/client.py``) and never
imports this module.

``submit`` creates the RockyRun, ``wait`` watches it until its ``Complete`` condition is
``True`` (re-listing when a watch ends or its resourceVersion expires) and reads the complete
RunOutput: ``status.runOutput`` when it is whole, else the ConfigMaps named in
``status.output`` (the operator bounds what status holds for large runs).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from rocky_operator.api.spec import API_GROUP, API_VERSION, PLURAL, RockyRunSpec
from rocky_operator.client.manifest import build_manifest, validate_manifest, with_resume
from rocky_operator.client.result import (
    RockyClientError,
    RunNotFoundError,
    RunOutcome,
    RunOutputUnavailableError,
    RunTimeoutError,
    outcome_from_output,
)

FINISHED_PHASES = frozenset({"Succeeded", "PartialFailure", "Failed"})
#: Per-request timeout (connect, read) in seconds.
REQUEST_TIMEOUT = (10.0, 60.0)


def load_configuration(context: str | None = None) -> Any:
    """In-cluster configuration when running in a pod, else the kubeconfig (the synchronous
    client's loaders: this is the user's side; the operator process uses kube/configuration.py).
    """
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    from rocky_operator.kube.configuration import ConfigurationError

    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    except k8s_config.ConfigException:
        # $KUBECONFIG read now, not when the kubernetes package was imported.
        path = os.environ.get("KUBECONFIG") or None
        try:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context, client_configuration=configuration
            )
        except (k8s_config.ConfigException, OSError) as exc:
            where = path or "~/.kube/config"
            raise ConfigurationError(
                f"no Kubernetes configuration: not running in a pod, and the kubeconfig "
                f"({where}{', context ' + context if context else ''}) is not usable: {exc}"
            ) from exc
    return configuration


def is_complete(obj: Mapping[str, Any]) -> bool:
    """The run's ``Complete`` condition is ``True`` (the phase alone is for humans)."""
    status = obj.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Complete":
            return bool(cond.get("status") == "True")
    return False


class ClusterClient:
    """RockyRuns in one namespace of a cluster.

    ``api_client`` is a ``kubernetes.client.ApiClient``; by default one is built from the
    ``kubeconfig`` file given, else the in-cluster configuration or the kubeconfig
    (``KUBECONFIG``), with ``context``.
    """

    def __init__(
        self,
        namespace: str = "default",
        *,
        api_client: Any | None = None,
        context: str | None = None,
        kubeconfig: str | None = None,
        output_reader: Callable[[Any, str, Mapping[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        from kubernetes import client as k8s

        if api_client is None and kubeconfig:
            from kubernetes import config as k8s_config

            api_client = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context
            )
        if api_client is None:
            api_client = k8s.ApiClient(load_configuration(context))
        self.namespace = namespace
        self.api_client = api_client
        self.custom = k8s.CustomObjectsApi(api_client)
        self._read_output = output_reader or read_complete_output

    def close(self) -> None:
        self.api_client.close()

    def __enter__(self) -> ClusterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- submit ------------------------------------------------------------------

    def submit(
        self,
        manifest: Mapping[str, Any] | RockyRunSpec,
        *,
        name: str | None = None,
        generate_name: str | None = None,
        labels: Mapping[str, str] | None = None,
        resume_from: str | None = None,
        resume_kinds: list[str] | None = None,
        adopt: bool = False,
    ) -> str:
        """Create the RockyRun; return its name (chosen by the API server for generateName).

        A typed spec needs ``name`` or ``generate_name``; a manifest's own metadata is used
        unless ``name`` / ``generate_name`` override it. With ``adopt``, a RockyRun of that
        name with the same spec (what the server stored may add defaults) counts as this one:
        a caller whose names are unique per attempt, e.g. a restarted Dagster step, re-attaches
        to its run instead of failing or starting a second one.
        """
        if isinstance(manifest, RockyRunSpec):
            body = build_manifest(manifest, name=name, generate_name=generate_name, labels=labels)
        else:
            body = validate_manifest(manifest)
            meta = body["metadata"]
            if name or generate_name:
                meta.pop("name", None)
                meta.pop("generateName", None)
                meta.update({"name": name} if name else {"generateName": generate_name})
            if labels:
                meta.setdefault("labels", {}).update(labels)
        if resume_from is not None or resume_kinds is not None:
            body = with_resume(body, resume_from, resume_kinds)
        body["metadata"].pop("namespace", None)
        try:
            created = self._call(
                self.custom.create_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                self.namespace,
                PLURAL,
                body,
            )
        except RunConflictError:
            name = body["metadata"].get("name")
            if not adopt or not name:
                raise
            existing = self.get(name)
            if not _is_subset(body["spec"], existing.get("spec") or {}):
                raise RunConflictError(
                    f"RockyRun {name} exists with a different spec; not adopting it"
                ) from None
            return str(name)
        return str(created["metadata"]["name"])

    # --- wait ----------------------------------------------------------------------

    def get(self, name: str) -> dict[str, Any]:
        """The RockyRun object; :class:`RunNotFoundError` when there is none of that name."""
        from kubernetes.client import ApiException

        try:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(  # type: ignore[assignment]
                API_GROUP,
                API_VERSION,
                self.namespace,
                PLURAL,
                name,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404:
                raise RunNotFoundError(name, self.namespace) from None
            raise RockyClientError(
                f"reading RockyRun {name}: {exc.status} {exc.reason}: {_api_message(exc)}"
            ) from exc
        return obj

    def wait(self, name: str, *, timeout: float, watch_seconds: int = 30) -> RunOutcome:
        """Block until the run is complete; return its result. Raises RunTimeoutError."""
        from kubernetes import watch as k8s_watch
        from kubernetes.client import ApiException

        deadline = time.monotonic() + timeout
        obj = self.get(name)
        while not is_complete(obj):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RunTimeoutError(name, timeout, (obj.get("status") or {}).get("phase"))
            w = k8s_watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in w.stream(  # type: ignore[no-untyped-call]
                    self.custom.list_namespaced_custom_object,
                    API_GROUP,
                    API_VERSION,
                    self.namespace,
                    PLURAL,
                    field_selector=f"metadata.name={name}",
                    resource_version=obj["metadata"].get("resourceVersion"),
                    timeout_seconds=max(1, min(watch_seconds, int(remaining) + 1)),
                    _request_timeout=(REQUEST_TIMEOUT[0], watch_seconds + 30),
                ):
                    if event["type"] in ("ADDED", "MODIFIED"):
                        obj = event["object"]
                        if is_complete(obj) or time.monotonic() >= deadline:
                            break
                    elif event["type"] == "DELETED":
                        raise RockyClientError(f"RockyRun {name} was deleted before it finished")
            except ApiException as exc:
                if exc.status != 410:  # resourceVersion too old: re-read and watch again
                    raise RockyClientError(
                        f"watching RockyRun {name}: {exc.status} {exc.reason}"
                    ) from exc
            finally:
                w.stop()  # type: ignore[no-untyped-call]
            if not is_complete(obj):
                obj = self.get(name)
        return self.outcome(obj)

    def outcome(self, obj: Mapping[str, Any]) -> RunOutcome:
        """The result of a complete run object."""
        name = str(obj["metadata"]["name"])
        status = obj.get("status") or {}
        output = self._read_output(self.api_client, self.namespace, obj)
        outcome = outcome_from_output(name, output, phase=status.get("phase"))
        reported = status.get("exitCode")
        if reported is not None and int(reported) != outcome.exit_code:
            raise RunOutputUnavailableError(
                f"RockyRun {name}: status.exitCode {reported} disagrees with the RunOutput "
                f"(status {output.get('status')!r} means {outcome.exit_code})"
            )
        return outcome

    def run(
        self,
        manifest: Mapping[str, Any] | RockyRunSpec,
        *,
        timeout: float,
        name: str | None = None,
        generate_name: str | None = None,
        resume_from: str | None = None,
        resume_kinds: list[str] | None = None,
    ) -> RunOutcome:
        """Submit and wait: the cluster counterpart of ``rocky run``.

        With an explicit ``name``, a run of that name and spec that exists already is
        waited on instead (see ``submit(adopt=True)``).
        """
        run_name = self.submit(
            manifest,
            name=name,
            generate_name=generate_name,
            resume_from=resume_from,
            resume_kinds=resume_kinds,
            adopt=name is not None,
        )
        return self.wait(run_name, timeout=timeout)

    def delete(self, name: str) -> None:
        from kubernetes.client import ApiException

        try:
            self.custom.delete_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                self.namespace,
                PLURAL,
                name,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise RockyClientError(
                    f"deleting RockyRun {name}: {exc.status} {exc.reason}"
                ) from exc

    @staticmethod
    def _call(fn: Callable[..., Any], *args: Any) -> Any:
        from kubernetes.client import ApiException

        try:
            return fn(*args, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            error = RunConflictError if exc.status == 409 else RockyClientError
            raise error(f"{fn.__name__}: {exc.status} {exc.reason}: {_api_message(exc)}") from exc


class RunConflictError(RockyClientError):
    """A RockyRun of that name exists already (409)."""


def _is_subset(sent: Any, stored: Any) -> bool:
    """Every field sent is stored with the same value (the server may add defaults)."""
    if isinstance(sent, dict):
        return isinstance(stored, dict) and all(
            k in stored and _is_subset(v, stored[k]) for k, v in sent.items()
        )
    return bool(sent == stored)


def _api_message(exc: Any) -> str:
    import json

    try:
        return str(json.loads(exc.body).get("message", exc.body))
    except (TypeError, ValueError, AttributeError):
        return str(exc.body or "")


def read_complete_output(api_client: Any, namespace: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The complete RunOutput of a finished run object.

    ``status.runOutput`` when the operator did not shorten it; otherwise the operator's own
    reader of the ConfigMaps that ``status.output`` names.
    """
    status = obj.get("status") or {}
    name = obj.get("metadata", {}).get("name")
    output = status.get("runOutput")
    if not status.get("runOutputTruncated") and isinstance(output, dict):
        return output
    if not status.get("output"):
        raise RunOutputUnavailableError(
            f"RockyRun {name}: status.runOutput is shortened and status.output names no ConfigMaps"
        )
    return _read_config_map_output(api_client, namespace, status["output"], str(name))


def _read_config_map_output(
    api_client: Any, namespace: str, ref: Mapping[str, Any], name: str
) -> dict[str, Any]:
    import base64

    from kubernetes import client as k8s
    from kubernetes.client import ApiException

    from rocky_operator.logic import records

    core = k8s.CoreV1Api(api_client)
    chunks: list[bytes] = []
    for cm_name in ref.get("configMaps") or []:
        try:
            cm = core.read_namespaced_config_map(
                cm_name, namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            raise RunOutputUnavailableError(
                f"RockyRun {name}: output ConfigMap {cm_name}: {exc.status} {exc.reason}"
            ) from exc
        data = cm.binary_data or {}
        chunks.extend(base64.b64decode(data[key]) for key in sorted(data))
    try:
        result: dict[str, Any] = records.decompress_checked(b"".join(chunks), ref.get("sha256"))
    except records.RecordError as exc:
        raise RunOutputUnavailableError(f"RockyRun {name}: output ConfigMaps: {exc}") from exc
    return result
