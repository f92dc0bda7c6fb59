"""A small asyncio Kubernetes API client over aiohttp, for the node agent.

The node agent handles hundreds of pods at once; the official `kubernetes` client is synchronous
and deserialises every object into generated model classes, which costs more CPU than the agent's
real work. This client speaks plain JSON to the API server, authenticates with what the test
control plane's kubeconfigs hold (CA file, bearer token, optional client certificate) and streams
watches line by line.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

JSON = dict[str, Any]
# Answers worth retrying: throttled by API Priority and Fairness, or the server is not ready.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class ApiError(Exception):
    """A non-2xx answer of the API server, with the decoded Status when there is one."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        self.status = status
        self.body = body
        try:
            doc = json.loads(body)
            self.reason = str(doc.get("reason", "")) if isinstance(doc, dict) else ""
            self.message = str(doc.get("message", body)) if isinstance(doc, dict) else body
        except ValueError:
            self.reason = ""
            self.message = body
        super().__init__(f"{method} {path}: HTTP {status}: {self.message}")


@dataclass(frozen=True)
class KubeConfig:
    """The connection settings of one kubeconfig context."""

    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    insecure: bool = False

    @classmethod
    def load(cls, path: str | Path, context: str | None = None) -> KubeConfig:
        """Read a kubeconfig file; `*-data` fields are written to private temporary files."""
        doc = yaml.safe_load(Path(path).read_text())
        ctx_name = context or doc.get("current-context")
        ctx = _named(doc.get("contexts", []), ctx_name, "context")
        cluster = _named(doc.get("clusters", []), ctx["cluster"], "cluster")
        user = _named(doc.get("users", []), ctx["user"], "user")
        base = Path(path).resolve().parent

        def file_or_data(section: Mapping[str, Any], key: str) -> str | None:
            if section.get(key):
                p = Path(section[key])
                return str(p if p.is_absolute() else base / p)
            data = section.get(f"{key}-data")
            if not data:
                return None
            tmp = tempfile.NamedTemporaryFile(prefix="kubeconfig-", delete=False)  # noqa: SIM115
            with tmp:
                tmp.write(base64.b64decode(data))
            return tmp.name

        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = Path(user["tokenFile"]).read_text().strip()
        return cls(
            server=str(cluster["server"]).rstrip("/"),
            ca_file=file_or_data(cluster, "certificate-authority"),
            cert_file=file_or_data(user, "client-certificate"),
            key_file=file_or_data(user, "client-key"),
            token=token,
            insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        )

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def _named(items: list[JSON], name: str | None, what: str) -> JSON:
    for item in items:
        if item.get("name") == name:
            return dict(item.get(what, {}))
    raise ValueError(f"kubeconfig has no {what} named {name!r}")


class KubeApi:
    """JSON requests and watches against one API server; use as an async context manager."""

    def __init__(
        self,
        config: KubeConfig,
        *,
        user_agent: str = "rocky-node-agent",
        max_connections: int = 64,
        timeout_seconds: float = 30.0,
        retries: int = 4,
    ) -> None:
        self.config = config
        self._retries = retries
        self._user_agent = user_agent
        self._max_connections = max_connections
        self._timeout = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeApi:
        headers = {"User-Agent": self._user_agent, "Accept": "application/json"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        connector = aiohttp.TCPConnector(ssl=self.config.ssl_context(), limit=self._max_connections)
        self._session = aiohttp.ClientSession(
            base_url=self.config.server, headers=headers, connector=connector
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("KubeApi is not open (use `async with`)")
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JSON:
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        headers = {"Content-Type": content_type} if data is not None else None
        delay = 0.2
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            try:
                async with self.session.request(
                    method,
                    path,
                    params=params,
                    data=data,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self._timeout),
                ) as resp:
                    text = await resp.text()
                    if resp.status in RETRY_STATUSES and not last:
                        retry_after = resp.headers.get("Retry-After", "")
                        wait = float(retry_after) if retry_after.isdigit() else delay
                        await asyncio.sleep(min(wait, 5.0))
                        delay *= 2
                        continue
                    if resp.status >= 300:
                        raise ApiError(resp.status, method, path, text)
                    return json.loads(text) if text else {}
            except (aiohttp.ClientConnectionError, TimeoutError):
                # The API server restarting or overloaded: bounded retries, then give up.
                if last:
                    raise
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> JSON:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, body: Any) -> JSON:
        return await self.request("POST", path, body=body)

    async def merge_patch(self, path: str, body: Any) -> JSON:
        return await self.request(
            "PATCH", path, body=body, content_type="application/merge-patch+json"
        )

    async def delete(self, path: str, body: Any = None) -> JSON:
        return await self.request("DELETE", path, body=body)

    async def watch(
        self, path: str, params: Mapping[str, str], *, timeout_seconds: int = 300
    ) -> AsyncIterator[JSON]:
        """Yield watch events (`{"type": ..., "object": ...}`) until the server ends the stream."""
        query = {
            **params,
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        async with self.session.get(
            path,
            params=query,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30),
        ) as resp:
            if resp.status >= 300:
                raise ApiError(resp.status, "WATCH", path, await resp.text())
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
