"""The operator's one API configuration (kube/configuration.py, kubernetes_asyncio's loaders):

* a kubeconfig's credentials are re-loaded at most once per CREDENTIALS_TTL_SECONDS (issue 13
  goal 1: re-loading on every request cost ~1 ms of CPU each), and a rotated token is sent after
  that, by the run workers' client, over its REST transport;
* kopf's login (handlers.login) comes from the same configuration, re-loaded first whatever the
  TTL (kopf logs in again after a 401), with an exec plugin's token and its expiry.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web
from tests.support.loopback import serve

from rocky_operator import handlers
from rocky_operator.kube import configuration as kube_configuration
from rocky_operator.kube.client import KubeClient
from rocky_operator.kube.configuration import (
    CREDENTIALS_TTL_SECONDS,
    CredentialRefresher,
    load_configuration,
)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback API server that records each request's Authorization header."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"kind": "Pod", "metadata": {"name": "x"}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with serve(app) as url:
        yield url, seen


def _kubeconfig(path: Path, server: str, user: dict[str, object]) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    return path


async def test_token_file_is_reloaded_once_per_ttl_and_rotation_is_sent(
    server: tuple[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = server
    token = tmp_path / "token"
    token.write_text("first")
    config_file = _kubeconfig(tmp_path / "kubeconfig", url, {"tokenFile": str(token)})
    monkeypatch.setenv("KUBECONFIG", str(config_file))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    clock = [1000.0]
    monkeypatch.setattr(kube_configuration.time, "monotonic", lambda: clock[0])
    configuration = await load_configuration()
    refresher = configuration.refresh_api_key_hook
    assert isinstance(refresher, CredentialRefresher)
    loads: list[int] = []
    load_and_set = refresher.loader.load_and_set

    async def counting(conf: object) -> None:
        loads.append(1)
        await load_and_set(conf)

    refresher.loader.load_and_set = counting
    client = KubeClient(configuration)
    try:
        for _ in range(50):
            await client.get_run("ns", "x")
        token.write_text("rotated")
        await client.get_run("ns", "x")  # within the TTL: the old token, not re-loaded
        assert loads == []
        clock[0] += CREDENTIALS_TTL_SECONDS + 0.1
        for _ in range(50):
            await client.get_run("ns", "x")
        assert len(loads) == 1
        assert client.requests == 101
    finally:
        await client.close()
    assert seen == ["Bearer first"] * 51 + ["Bearer rotated"] * 50
    # kopf's re-login re-loads at once, whatever the TTL.
    token.write_text("third")
    memo = SimpleNamespace(runtime=SimpleNamespace(configuration=configuration))
    info = await handlers.login(memo=memo)
    assert (info.server, info.scheme, info.token) == (url, "Bearer", "third")
    assert len(loads) == 2


async def test_kopf_login_has_the_exec_plugins_token_and_expiry(
    server: tuple[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = server
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
        "'kind': 'ExecCredential', 'status': {'token': 'from-plugin', "
        "'expirationTimestamp': '2099-01-01T00:00:00Z'}}))\n"
    )
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin)],
            "interactiveMode": "Never",
        }
    }
    config_file = _kubeconfig(tmp_path / "kubeconfig", url, user)
    monkeypatch.setenv("KUBECONFIG", str(config_file))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    configuration = await load_configuration()
    memo = SimpleNamespace(runtime=SimpleNamespace(configuration=configuration))
    info = await handlers.login(memo=memo)
    assert (info.scheme, info.token) == ("Bearer", "from-plugin")
    assert info.expiration is not None
    assert info.expiration.year == 2099
    client = KubeClient(configuration)
    try:
        await client.get_run("ns", "x")
    finally:
        await client.close()
    assert seen == ["Bearer from-plugin"]
