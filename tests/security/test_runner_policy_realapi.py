"""The runner policy scenarios of test_runner_policy.py and test_runner_policy_restart.py
(an operator restarted mid-run with a tightened policy), unchanged, on a real
kube-apiserver (the fixtures of tests/operator/test_operator_realapi.py: etcd,
kube-apiserver and kube-controller-manager built from Go modules, the committed CRD),
with the runner policy set *through the chart*: the chart is rendered by the real helm
with the admin's values, and the operator's settings are parsed from the Deployment's
``rocky-operator run`` arguments by the real command line, so a value the chart failed to
pass on (or passed wrongly) would show here.
"""

from __future__ import annotations

import argparse
import subprocess
from dataclasses import replace

import pytest
from tests.chart.support import CHART, build_tool
from tests.operator.harness import FAST
from tests.operator.test_operator_realapi import (  # noqa: F401  (fixtures, by name)
    api_counts,
    api_server,
    cluster,
    control_plane,
)
from tests.security.test_runner_policy import (  # noqa: F401  (collected again here)
    test_allowed_when_the_admin_allows_it,
    test_refused_under_the_default_policy,
)
from tests.security.test_runner_policy_restart import (  # noqa: F401  (collected again here)
    test_policy_tightened_between_restarts_halts_the_run_without_new_pods,
    test_policy_tightened_during_discovery_stops_the_discovery_pod,
    test_spec_edited_out_of_policy_between_restarts_keeps_the_frozen_runner,
)

from rocky_operator.commands import run as run_command
from rocky_operator.kube.settings import ControllerSettings
from rocky_operator.logic.pod_manifest import RunnerDefaults
from rocky_operator.logic.runner_policy import RunnerPolicy

pytestmark = pytest.mark.e2e

#: The chart values by which the admin allows each case of test_runner_policy.CASES.
ALLOWANCE = {
    "foreign-image": ["runner.policy.images={evil.io/}"],
    "service-account": ["runner.policy.serviceAccounts={powerful}"],
    "host-path": [
        "runner.policy.volumeTypes={persistentVolumeClaim,configMap,secret,emptyDir,hostPath}"
    ],
    "command-override": ["runner.policy.allowCommandOverride=true"],
}


def settings_from_chart(*sets: str) -> ControllerSettings:
    """The operator's runner settings as the chart's Deployment passes them."""
    import yaml

    helm = build_tool("helm")
    argv = [str(helm), "template", "rocky", str(CHART), "--set", "image.tag=test"]
    for item in sets:
        argv += ["--set", item]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    (deployment,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "run"
    parser = argparse.ArgumentParser(exit_on_error=False)
    run_command.add_arguments(parser)
    args = parser.parse_args(container["args"][1:])
    return replace(
        FAST,
        runner_policy=run_command.runner_policy(args),
        runner_defaults=RunnerDefaults(
            image=args.runner_image, service_account_name=args.runner_service_account
        ),
    )


@pytest.fixture(scope="module")
def chart_default_settings() -> ControllerSettings:
    return settings_from_chart()


@pytest.fixture
def default_settings(chart_default_settings: ControllerSettings) -> ControllerSettings:
    return chart_default_settings


@pytest.fixture
def allowed_settings(case: str) -> ControllerSettings:
    return settings_from_chart(*ALLOWANCE[case])


@pytest.fixture
def wide_settings() -> ControllerSettings:
    return settings_from_chart(*ALLOWANCE["foreign-image"])


def test_the_charts_defaults_are_the_default_policy(
    chart_default_settings: ControllerSettings,
) -> None:
    """What the chart passes by default is the operator's own default policy (plus the
    chart's runner ServiceAccount), and the operator's image is the runner image."""
    policy = chart_default_settings.runner_policy
    assert policy == replace(RunnerPolicy(), service_accounts=("rocky-runner",))
    assert chart_default_settings.runner_defaults.image == "ghcr.io/rocky-dev/rocky-operator:test"
