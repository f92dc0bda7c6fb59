"""The chart's ``imagePullSecrets`` reach every pod that pulls the image: the operator pod, the
runner ServiceAccount in each namespace it is created in, and (through the operator's
``--runner-image-pull-secrets``) every runner pod, whichever ServiceAccount a run names."""

from __future__ import annotations

import argparse
from typing import Any

from tests.chart.support import Render, find, only

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.commands import run as run_command
from rocky_operator.logic.pod_manifest import RunnerDefaults, build_pod
from rocky_operator.logic.tables import plan_tables
from rocky_runner.discovery import DiscoveredTable

PULL_SECRETS = ["imagePullSecrets[0].name=regcred", "imagePullSecrets[1].name=mirror"]


def _operator_defaults(manifests: list[dict[str, Any]]) -> RunnerDefaults:
    """The runner defaults of the operator as the chart starts it (its real command line)."""
    (container,) = only(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    parser = argparse.ArgumentParser(exit_on_error=False)
    run_command.add_arguments(parser)
    return run_command.runner_defaults(parser.parse_args(container["args"][1:]))


def _runner_pod(defaults: RunnerDefaults, **runner: Any) -> dict[str, Any]:
    spec = RockyRunSpec.model_validate(
        {
            "adapter": {"type": "duckdb", "duckdb": {"path": "/data/w.duckdb"}},
            "source": {"schemaPattern": {"components": ["tenant"]}},
            "target": {"catalogTemplate": "{tenant}", "schemaTemplate": "staging"},
            "runner": runner,
        }
    )
    (table,) = plan_tables(spec, [DiscoveredTable(None, "acme", "orders", {"tenant": "acme"})])
    pod = build_pod(
        run_name="r",
        run_uid="u",
        namespace="n",
        spec=spec,
        table=table,
        attempt=1,
        defaults=defaults,
    )
    return dict(pod["spec"])


def test_pull_secrets_reach_runner_service_accounts_and_runner_pods(render: Render) -> None:
    manifests = render(set_values=[*PULL_SECRETS, "watchNamespaces={team-a,team-b}"])
    wanted = [{"name": "regcred"}, {"name": "mirror"}]
    pod = only(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == wanted
    runner_accounts = [
        sa for sa in find(manifests, "ServiceAccount") if sa["metadata"]["name"] == "rocky-runner"
    ]
    assert sorted(sa["metadata"]["namespace"] for sa in runner_accounts) == [
        "rocky-system",
        "team-a",
        "team-b",
    ]
    for account in runner_accounts:
        assert account["imagePullSecrets"] == wanted
    defaults = _operator_defaults(manifests)
    assert defaults.image_pull_secrets == ("regcred", "mirror")
    # Whatever ServiceAccount the run uses (the chart's, or one the policy allows).
    assert _runner_pod(defaults)["imagePullSecrets"] == wanted
    assert _runner_pod(defaults, serviceAccountName="team-runner")["imagePullSecrets"] == wanted


def test_cluster_wide_runner_pods_get_them_without_a_runner_service_account(
    render: Render,
) -> None:
    """Cluster-wide the runner ServiceAccount exists only in the release namespace, so runs
    elsewhere use their namespace's default account: the pod itself must carry them."""
    manifests = render(set_values=PULL_SECRETS)
    defaults = _operator_defaults(manifests)
    assert defaults.service_account_name is None
    assert _runner_pod(defaults)["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]


def test_no_pull_secrets_by_default(render: Render) -> None:
    manifests = render()
    assert "imagePullSecrets" not in only(manifests, "Deployment")["spec"]["template"]["spec"]
    for account in find(manifests, "ServiceAccount"):
        assert "imagePullSecrets" not in account
    defaults = _operator_defaults(manifests)
    assert defaults.image_pull_secrets == ()
    assert "imagePullSecrets" not in _runner_pod(defaults)
