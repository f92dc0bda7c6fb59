"""The only code that talks to the Kubernetes API.

A thin asynchronous facade over the official ``kubernetes`` client: requests are
made with its ``ApiClient`` (authentication, TLS, kubeconfig / in-cluster config)
in a small thread pool, and bodies stay plain JSON dicts (no model classes: they
cost time and drop unknown fields). Client errors are converted once, here, into
:class:`KubeError` and its subclasses, and the idempotent verbs swallow the answers
that mean "already done": 409 on create, 404 on delete.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import quote

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from rocky_operator.api.spec import API_GROUP, API_VERSION, KIND, PLURAL

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
#: Per-request timeout (connect, read) in seconds: a hung API server must not hang a run.
REQUEST_TIMEOUT = (10.0, 60.0)


class KubeError(Exception):
    """An API request that failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(KubeError):
    """404."""


class Conflict(KubeError):
    """409."""


def load_configuration(context: str | None = None) -> k8s.Configuration:
    """In-cluster configuration when running in a pod, else the kubeconfig."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(context=context, client_configuration=configuration)
    return configuration


class KubeClient:
    """Asynchronous JSON access to the few API endpoints the operator needs."""

    def __init__(self, configuration: k8s.Configuration, *, workers: int = 16) -> None:
        configuration.connection_pool_maxsize = max(
            configuration.connection_pool_maxsize or 0, workers
        )
        self.configuration = configuration
        self._api = k8s.ApiClient(configuration)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api.close()

    # --- transport -----------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: Any,
        content_type: str,
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        m, url, hdrs, payload, _ = self._api.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(
                m, url, header_params=hdrs, body=payload, _request_timeout=REQUEST_TIMEOUT
            )
            data = response.read()
        except k8s.ApiException as exc:
            raise KubeError(exc.status or 0, str(exc.reason), str(exc.body or "")) from exc
        except OSError as exc:  # urllib3 errors are OSErrors: refused, reset, timeout
            raise KubeError(0, type(exc).__name__, str(exc)) from exc
        status = response.status
        if 200 <= status < 300:
            return json.loads(data) if data else None
        try:
            doc = json.loads(data)
            reason, message = str(doc.get("reason", "")), str(doc.get("message", ""))
        except (ValueError, AttributeError):
            reason, message = "", data[:500].decode("utf-8", "replace")
        error = {404: NotFound, 409: Conflict}.get(status, KubeError)
        raise error(status, reason or str(response.reason), message)

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        loop = asyncio.get_running_loop()
        call = partial(self._call, method, path, query, body, content_type)
        return await loop.run_in_executor(self._pool, call)

    # --- RockyRuns -----------------------------------------------------------------

    @staticmethod
    def _run_path(namespace: str, name: str | None = None) -> str:
        base = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{quote(namespace)}/{PLURAL}"
        return f"{base}/{quote(name)}" if name else base

    async def get_run(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", self._run_path(namespace, name))
        return result

    async def patch_run_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the status subresource (lists, e.g. conditions, are replaced whole)."""
        result: dict[str, Any] = await self.request(
            "PATCH",
            self._run_path(namespace, name) + "/status",
            body={"status": dict(status)},
            content_type=MERGE_PATCH,
        )
        return result

    # --- Pods ----------------------------------------------------------------------

    async def list_pods(self, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """Pods with all these labels (also filtered here: some test servers ignore
        ``labelSelector``)."""
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        doc = await self.request(
            "GET",
            f"/api/v1/namespaces/{quote(namespace)}/pods",
            query=[("labelSelector", selector)],
        )
        pods: list[dict[str, Any]] = doc.get("items") or []
        return [p for p in pods if _has_labels(p, labels)]

    async def create_pod(self, namespace: str, pod: Mapping[str, Any]) -> bool:
        """Create a pod; False when it already exists (deterministic names: same attempt)."""
        try:
            await self.request("POST", f"/api/v1/namespaces/{quote(namespace)}/pods", body=pod)
        except Conflict:
            return False
        return True

    async def delete_pod(self, namespace: str, name: str) -> bool:
        """Delete a pod (background propagation); False when it is already gone."""
        try:
            await self.request(
                "DELETE",
                f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}",
                body={"propagationPolicy": "Background"},
            )
        except NotFound:
            return False
        return True

    # --- Secrets -------------------------------------------------------------------

    async def secret_keys(self, namespace: str, name: str) -> set[str] | None:
        """The keys of a Secret (values are not kept); None when the Secret is missing."""
        try:
            doc = await self.request(
                "GET", f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}"
            )
        except NotFound:
            return None
        return set((doc.get("data") or {}) | (doc.get("stringData") or {}))

    async def read_secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One decoded Secret value, for discovery from the operator; never logged."""
        import base64

        try:
            doc = await self.request(
                "GET", f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}"
            )
        except NotFound:
            return None
        raw = (doc.get("data") or {}).get(key)
        if raw is None:
            plain = (doc.get("stringData") or {}).get(key)
            return None if plain is None else str(plain)
        return base64.b64decode(raw).decode("utf-8")

    # --- ConfigMaps ----------------------------------------------------------------

    async def list_config_maps(
        self, namespace: str, labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        doc = await self.request(
            "GET",
            f"/api/v1/namespaces/{quote(namespace)}/configmaps",
            query=[("labelSelector", selector)],
        )
        items: list[dict[str, Any]] = doc.get("items") or []
        return [c for c in items if _has_labels(c, labels)]

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self.request(
                "GET", f"/api/v1/namespaces/{quote(namespace)}/configmaps/{quote(name)}"
            )
        except NotFound:
            return None
        return result

    async def create_config_map(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """Create a ConfigMap; False when one of that name exists."""
        try:
            await self.request(
                "POST", f"/api/v1/namespaces/{quote(namespace)}/configmaps", body=body
            )
        except Conflict:
            return False
        return True

    async def replace_config_map(self, namespace: str, body: Mapping[str, Any]) -> None:
        name = body["metadata"]["name"]
        await self.request(
            "PUT", f"/api/v1/namespaces/{quote(namespace)}/configmaps/{quote(name)}", body=body
        )

    async def patch_config_map(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        await self.request(
            "PATCH",
            f"/api/v1/namespaces/{quote(namespace)}/configmaps/{quote(name)}",
            body=dict(patch),
            content_type=MERGE_PATCH,
        )

    # --- Events --------------------------------------------------------------------

    async def post_event(
        self,
        *,
        namespace: str,
        run_name: str,
        run_uid: str,
        event_type: str,
        reason: str,
        message: str,
        now: datetime | None = None,
    ) -> None:
        """An Event on the RockyRun (core/v1); failures to post are logged, not raised:
        Events are for humans, the status is the contract."""
        stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            # A name of our own rather than generateName: unique, and understood by
            # every API server implementation (test servers included).
            "metadata": {"name": f"{run_name}.{secrets.token_hex(8)}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": KIND,
                "name": run_name,
                "namespace": namespace,
                "uid": run_uid,
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": "rocky-operator"},
            "reportingComponent": "rocky.dev/rocky-operator",
        }
        try:
            await self.request("POST", f"/api/v1/namespaces/{quote(namespace)}/events", body=body)
        except KubeError as exc:
            log.warning("could not post event %s on %s/%s: %s", reason, namespace, run_name, exc)


def _has_labels(obj: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())
