"""The only code that talks to the Kubernetes API.

Connection settings come from the official ``kubernetes`` client's configuration
loaders (kubeconfig / in-cluster); requests are plain JSON over aiohttp (no model
classes: they cost time and drop unknown fields). Client errors are converted once, here, into
:class:`KubeError` and its subclasses, and the idempotent verbs swallow the answers
that mean "already done": 409 on create, 404 on delete.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import ssl
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from rocky_operator.api.spec import API_GROUP, API_VERSION, KIND, PLURAL

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
#: Per-request timeout (connect, read) in seconds: a hung API server must not hang a run.
REQUEST_TIMEOUT = (10.0, 60.0)
#: Credentials are re-read (the configuration's refresh hook: exec plugins, rotated
#: ServiceAccount tokens) at most this often. Each refresh re-loads the kubeconfig,
#: about 1 ms: per request it was a tenth of the operator's CPU at a thousand pods.
CREDENTIALS_TTL_SECONDS = 10.0


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


class ConfigurationError(Exception):
    """No usable cluster configuration: not in a pod, and no (valid) kubeconfig."""


def load_configuration(context: str | None = None) -> k8s.Configuration:
    """In-cluster configuration when running in a pod, else the kubeconfig."""
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
                config_file=path,
                context=context,
                client_configuration=configuration,
            )
        except (k8s_config.ConfigException, OSError) as exc:
            where = path or "~/.kube/config"
            raise ConfigurationError(
                f"no Kubernetes configuration: not running in a pod, and the kubeconfig "
                f"({where}{', context ' + context if context else ''}) is not usable: {exc}"
            ) from exc
    return configuration


class KubeClient:
    """Asynchronous JSON access to the few API endpoints the operator needs.

    Connection settings (server, CA, client certificate, bearer token, including
    exec-plugin tokens refreshed through the configuration's hook) come from the
    official client's :class:`~kubernetes.client.Configuration`; requests go over one
    pooled aiohttp session in the operator's event loop. That is an order of magnitude
    cheaper per request than the official client's thread-bound urllib3 calls, which
    matters when a run creates and deletes thousands of pods.
    """

    def __init__(self, configuration: k8s.Configuration, *, connections: int = 32) -> None:
        self.configuration = configuration
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self._credentials: tuple[float, dict[str, str]] | None = None

    def _ssl(self) -> ssl.SSLContext | bool:
        config = self.configuration
        if not config.host.startswith("https"):
            return False
        context = ssl.create_default_context(cafile=config.ssl_ca_cert or None)
        if not config.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if config.cert_file:
            context.load_cert_chain(config.cert_file, config.key_file or None)
        return context

    def _headers(self) -> dict[str, str]:
        now = time.monotonic()
        if self._credentials is not None and now - self._credentials[0] < CREDENTIALS_TTL_SECONDS:
            return dict(self._credentials[1])
        headers = self._fresh_headers()
        self._credentials = (now, headers)
        return dict(headers)

    def _fresh_headers(self) -> dict[str, str]:
        config = self.configuration
        hook = getattr(config, "refresh_api_key_hook", None)
        if hook is not None:
            hook(config)
        headers = {"Accept": "application/json", "User-Agent": "rocky-operator"}
        token = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix(
            "authorization"
        )
        if token:
            headers["Authorization"] = token if " " in token else f"Bearer {token}"
        elif config.username and config.password:
            auth = aiohttp.BasicAuth(config.username, config.password)
            headers["Authorization"] = auth.encode()
        return headers

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, ssl=self._ssl())
            self._session = aiohttp.ClientSession(
                base_url=self.configuration.host.rstrip("/"),
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=REQUEST_TIMEOUT[0], sock_read=REQUEST_TIMEOUT[1]
                ),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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
        session = self._open()
        headers = self._headers()
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body, separators=(",", ":"))
        self.requests += 1
        try:
            async with session.request(
                method, path, params=query, data=data, headers=headers
            ) as response:
                raw = await response.read()
                status = response.status
                reason = response.reason or ""
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeError(0, type(exc).__name__, str(exc)) from exc
        if 200 <= status < 300:
            return json.loads(raw) if raw else None
        try:
            doc = json.loads(raw)
            reason, message = str(doc.get("reason", reason)), str(doc.get("message", ""))
        except (ValueError, AttributeError):
            message = raw[:500].decode("utf-8", "replace")
        error = {404: NotFoundError, 409: ConflictError}.get(status, KubeError)
        raise error(status, reason, message)

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
        session = self._open()
        path = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}/log"
        headers = {**self._headers(), "Accept": "text/plain, */*"}
        self.requests += 1
        try:
            async with session.get(
                path, params=[("container", container)], headers=headers
            ) as response:
                raw = await response.read()
                status, reason = response.status, response.reason or ""
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeError(0, type(exc).__name__, str(exc)) from exc
        if not 200 <= status < 300:
            error = {404: NotFoundError, 409: ConflictError}.get(status, KubeError)
            raise error(status, reason, raw[:500].decode("utf-8", "replace"))
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
        import base64

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


def _has_labels(obj: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())
