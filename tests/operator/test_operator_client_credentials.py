"""The operator's API client re-reads credentials at most once per CREDENTIALS_TTL_SECONDS
(issue 13 goal 1: re-loading the kubeconfig on every request cost ~1 ms of CPU each), and
picks up a rotated token after that."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from rocky_operator.kube import client as kube_client
from rocky_operator.kube.client import CREDENTIALS_TTL_SECONDS, KubeClient


def test_credentials_are_refreshed_once_per_ttl_and_rotation_is_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = k8s.Configuration()
    config.host = "https://127.0.0.1:6443"
    config.api_key = {"authorization": "Bearer first"}
    refreshes: list[int] = []

    def hook(conf: k8s.Configuration) -> None:
        refreshes.append(1)

    config.refresh_api_key_hook = hook
    clock = [1000.0]
    monkeypatch.setattr(kube_client.time, "monotonic", lambda: clock[0])
    api = KubeClient(config)
    for _ in range(200):
        assert api._headers()["Authorization"] == "Bearer first"
    once = len(refreshes)
    assert 1 <= once <= 3  # one refresh (the hook also runs inside get_api_key_with_prefix)
    config.api_key = {"authorization": "Bearer rotated"}
    clock[0] += CREDENTIALS_TTL_SECONDS + 0.1
    assert api._headers()["Authorization"] == "Bearer rotated"
    assert len(refreshes) <= 2 * once
    headers = api._headers()
    headers["Content-Type"] = "x"  # callers add headers: the cached copy stays clean
    assert "Content-Type" not in api._headers()
