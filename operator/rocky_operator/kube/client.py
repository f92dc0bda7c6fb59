"""The only code of the operator that talks to the Kubernetes API (kopf has its own watches).

One client library for the whole operator process: ``kubernetes_asyncio``. Its loaders read
the configuration (kubeconfig with client certificates, token files or exec plugins; or the
in-cluster ServiceAccount, whose rotated token it re-reads); its REST client carries the
requests (TLS, proxy, one pooled aiohttp session in the operator's event loop). We call that
transport with plain JSON, not the generated API classes: deserializing every pod into model
objects is what makes the official clients slow, and it drops unknown fields. Client errors are
converted once, here, into :class:`KubeError` and its subclasses, and the idempotent verbs
swallow the answers that mean "already done": 409 on create, 404 on delete.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.client.rest import RESTClientObject
from yarl import URL

from rocky_operator.api.spec import API_GROUP, API_VERSION, KIND, PLURAL

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
USER_AGENT = "rocky-operator"
#: Per-request timeout (connect, read) in seconds: a hung API server must not hang a run.
REQUEST_TIMEOUT = (10.0, 60.0)
#: Connections to the API server per client (the REST client's pool size).
CONNECTIONS = 32


class KubeError(Exception):
    """An API request that failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFoundError(KubeError):
    """404."""


class ConflictError(KubeError):
    """409."""


class GoneError(KubeError):
    """410: a watch's resourceVersion is too old (list again)."""


_ERRORS: dict[int, type[KubeError]] = {404: NotFoundError, 409: ConflictError, 410: GoneError}


class KubeClient:
    """Asynchronous JSON access to the few API endpoints the operator needs, over the
    library's REST client (created on first use, in the running event loop)."""

    def __init__(self, configuration: Configuration, *, connections: int = CONNECTIONS) -> None:
        self.configuration = configuration
        self._connections = connections
        self._rest: RESTClientObject | None = None
        self.requests = 0

    def _open(self) -> RESTClientObject:
        if self._rest is None:
            rest = RESTClientObject(self.configuration, maxsize=self._connections)
            # The library's session trusts the environment: per request, two thread-pool hops
            # (the proxy from $HTTPS_PROXY / $NO_PROXY, and ~/.netrc), which quadrupled the CPU
            # of a request. The proxy is resolved once here instead; netrc credentials have no
            # place next to the configuration's own.
            rest.pool_manager._trust_env = False
            if not rest.proxy:
                with contextlib.suppress(LookupError):
                    proxy, auth = get_env_proxy_for_url(URL(str(self.configuration.host)))
                    rest.proxy = str(proxy)
                    if auth is not None:
                        rest.proxy_headers = {"Proxy-Authorization": auth.encode()}
            self._rest = rest
        return self._rest

    async def close(self) -> None:
        if self._rest is not None:
            await self._rest.close()
            self._rest = None

    async def _headers(self, accept: str, content_type: str) -> dict[str, str]:
        headers = {"Accept": accept, "Content-Type": content_type, "User-Agent": USER_AGENT}
        for setting in (await self.configuration.auth_settings()).values():
            headers[setting["key"]] = setting["value"]
        return headers

    @asynccontextmanager
    async def _response(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        read_timeout: float = REQUEST_TIMEOUT[1],
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request; the open response of a 2xx answer, else :class:`KubeError`."""
        rest = self._open()
        headers = await self._headers(accept, content_type)
        url = str(self.configuration.host).rstrip("/") + path
        connect = REQUEST_TIMEOUT[0]
        self.requests += 1
        try:
            response: aiohttp.ClientResponse = await rest.request(
                method,
                url,
                query_params=dict(query) if query else None,
                headers=headers,
                body=body,
                _preload_content=False,
                _request_timeout=aiohttp.ClientTimeout(
                    connect=connect, sock_connect=connect, sock_read=read_timeout
                ),
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeError(0, type(exc).__name__, str(exc)) from exc
        try:
            if not 200 <= response.status < 300:
                raise await _error(response)
            yield response
        finally:
            response.release()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """One API request; the JSON answer, or :class:`KubeError` (converted here only)."""
        raw = await self._read(method, path, query=query, body=body, content_type=content_type)
        return json.loads(raw) if raw else None

    async def _read(self, method: str, path: str, **kw: Any) -> bytes:
        try:
            async with self._response(method, path, **kw) as response:
                return await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeError(0, type(exc).__name__, str(exc)) from exc

    @asynccontextmanager
    async def watch(
        self, path: str, query: list[tuple[str, str]], *, timeout_seconds: int
    ) -> AsyncIterator[aiohttp.StreamReader]:
        """A watch request (``watch=true`` and ``timeoutSeconds`` added): its open body, one
        JSON event per line. Errors before the body are :class:`KubeError`."""
        query = [*query, ("watch", "true"), ("timeoutSeconds", str(timeout_seconds))]
        read_timeout = timeout_seconds + REQUEST_TIMEOUT[1]
        async with self._response("GET", path, query=query, read_timeout=read_timeout) as response:
            yield response.content

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
        except ConflictError:
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
        except NotFoundError:
            return False
        return True

    async def read_pod_log(self, namespace: str, name: str, container: str) -> str:
        """A container's whole log (``pods/log``) as text: the discovery pod's answer."""
        raw = await self._read(
            "GET",
            f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}/log",
            query=[("container", container)],
            accept="text/plain, */*",
        )
        return raw.decode("utf-8", "replace")

    # --- Secrets -------------------------------------------------------------------

    async def secret_keys(self, namespace: str, name: str) -> set[str] | None:
        """The keys of a Secret (values are not kept); None when the Secret is missing."""
        try:
            doc = await self.request(
                "GET", f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}"
            )
        except NotFoundError:
            return None
        return set((doc.get("data") or {}) | (doc.get("stringData") or {}))

    async def read_secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One decoded Secret value, for discovery from the operator; never logged."""
        try:
            doc = await self.request(
                "GET", f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}"
            )
        except NotFoundError:
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
        except NotFoundError:
            return None
        return result

    async def create_config_map(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """Create a ConfigMap; False when one of that name exists."""
        try:
            await self.request(
                "POST", f"/api/v1/namespaces/{quote(namespace)}/configmaps", body=body
            )
        except ConflictError:
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


async def _error(response: aiohttp.ClientResponse) -> KubeError:
    """The :class:`KubeError` of a non-2xx answer (the API server's Status, if it sent one)."""
    try:
        raw = await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError):
        raw = b""
    reason = response.reason or ""
    try:
        doc = json.loads(raw)
        reason, message = str(doc.get("reason", reason)), str(doc.get("message", ""))
    except (ValueError, AttributeError):
        message = raw[:500].decode("utf-8", "replace")
    return _ERRORS.get(response.status, KubeError)(response.status, reason, message)


def _has_labels(obj: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())
