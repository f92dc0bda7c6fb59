"""Where the operator's one API client connects, and as whom: ``kubernetes_asyncio``'s loaders.

In a pod, the in-cluster ServiceAccount (its loader re-reads the rotated token once a minute);
elsewhere the kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``, ``--context``): client
certificates, token files, exec plugins, OIDC. The same :class:`Configuration` serves the run
workers, the schedules, the Lease and kopf's login (``handlers.login``).
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when used: the CLI side imports ConfigurationError only
    from kubernetes_asyncio.client import Configuration

#: Credentials from a kubeconfig are re-loaded (token file, exec plugin) at most this often:
#: re-loading costs about 1 ms, per request a tenth of the operator's CPU at a thousand pods.
CREDENTIALS_TTL_SECONDS = 10.0


class ConfigurationError(Exception):
    """No usable cluster configuration: not in a pod, and no (valid) kubeconfig."""


class CredentialRefresher:
    """The configuration's ``refresh_api_key_hook`` for a kubeconfig: re-load the user's
    credentials through the library's loader (token file, exec plugin, OIDC), at most once per
    :data:`CREDENTIALS_TTL_SECONDS` unless forced (kopf's re-login after a 401)."""

    def __init__(self, loader: Any, ttl: float = CREDENTIALS_TTL_SECONDS) -> None:
        self.loader = loader
        self.ttl = ttl
        self.loaded_at = time.monotonic()

    async def __call__(self, configuration: Configuration, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.loaded_at < self.ttl:
            return
        self.loaded_at = now  # before the await: concurrent requests do not refresh too
        await self.loader.load_and_set(configuration)

    @property
    def expiration(self) -> datetime | None:
        """When an exec plugin's token expires, if it said so."""
        expiry = getattr(self.loader, "exec_plugin_expiry", None)
        return expiry if isinstance(expiry, datetime) else None


async def load_configuration(context: str | None = None) -> Configuration:
    """In-cluster configuration when running in a pod, else the kubeconfig."""
    from kubernetes_asyncio import config as k8s_config
    from kubernetes_asyncio.client import Configuration

    configuration = Configuration()
    try:
        k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    except k8s_config.ConfigException:
        # $KUBECONFIG read now, not when the library was imported.
        path = os.environ.get("KUBECONFIG") or None
        try:
            loader = await k8s_config.load_kube_config(
                config_file=path or _default_kubeconfig(),
                context=context,
                client_configuration=configuration,
                persist_config=False,  # the operator never writes the user's kubeconfig
            )
        except (k8s_config.ConfigException, OSError, ValueError) as exc:
            where = path or "~/.kube/config"
            raise ConfigurationError(
                f"no Kubernetes configuration: not running in a pod, and the kubeconfig "
                f"({where}{', context ' + context if context else ''}) is not usable: {exc}"
            ) from exc
        configuration.refresh_api_key_hook = CredentialRefresher(loader)
    return configuration


def _default_kubeconfig() -> str:
    return os.path.expanduser("~/.kube/config")


def configuration_for(host: str) -> Configuration:
    """A configuration of an API server that needs no credentials (test servers)."""
    from kubernetes_asyncio.client import Configuration

    configuration = Configuration()
    configuration.host = host
    return configuration


async def authorization(configuration: Configuration, *, force: bool = False) -> str | None:
    """The ``Authorization`` header value now ("Bearer …" or "Basic …"), refreshed by the
    configuration's loader first (``force``: whatever the TTL)."""
    hook = configuration.refresh_api_key_hook
    if force and isinstance(hook, CredentialRefresher):
        await hook(configuration, force=True)
    settings = await configuration.auth_settings()
    token = (settings.get("BearerToken") or {}).get("value")
    return str(token) if token else None
