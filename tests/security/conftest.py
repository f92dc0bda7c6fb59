"""Fixtures of the security suite: the operator suite's (kmock API, namespace, fake
kubelet, DuckDB warehouse), so the policy scenarios run the real controller, and the
operator settings of the policy scenarios (test_runner_policy_realapi.py overrides them
with the settings the chart's Deployment passes)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from tests.operator.conftest import (  # noqa: F401  (fixtures, found by pytest by name)
    api_counts,
    api_server,
    cluster,
    kmock_options,
    kubelet,
    warehouse,
)

from rocky_operator.kube.settings import ControllerSettings


@pytest.fixture
def default_settings() -> ControllerSettings:
    """The operator's settings under the default runner policy."""
    from tests.security.test_runner_policy import SETTINGS

    return SETTINGS


@pytest.fixture
def allowed_settings(case: str) -> ControllerSettings:
    """The operator's settings when the admin allows what ``case`` chooses."""
    from tests.security.test_runner_policy import CASES, SETTINGS

    return replace(SETTINGS, runner_policy=CASES[case][2])


@pytest.fixture
def wide_settings() -> ControllerSettings:
    """The operator's settings when the admin allows the ``evil.io/`` registry."""
    from tests.security.test_runner_policy_restart import WIDE

    return WIDE
