"""Fixtures of the security suite: the operator suite's (kmock API, namespace, fake
kubelet, DuckDB warehouse), so the policy scenarios run the real controller."""

from __future__ import annotations

from tests.operator.conftest import (  # noqa: F401  (fixtures, found by pytest by name)
    api_counts,
    api_server,
    cluster,
    kmock_options,
    kubelet,
    warehouse,
)
