"""Runner pods pull with the operator's imagePullSecrets (``--runner-image-pull-secrets``, the
chart's ``imagePullSecrets``): copy pods and the discovery pod alike, whatever ServiceAccount
the run names, so a private registry works for every table."""

from __future__ import annotations

import argparse

import pytest

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.commands import run as run_command
from rocky_operator.logic.discovery_pod import build_discovery_pod
from rocky_operator.logic.pod_manifest import RunnerDefaults, build_pod
from rocky_operator.logic.tables import plan_tables
from rocky_runner.discovery import DiscoveredTable


def _spec(**runner: object) -> RockyRunSpec:
    return RockyRunSpec.model_validate(
        {
            "adapter": {"type": "duckdb", "duckdb": {"path": "/data/w.duckdb"}},
            "source": {"schemaPattern": {"components": ["tenant", "source"]}},
            "target": {"catalogTemplate": "{tenant}_wh", "schemaTemplate": "staging__{source}"},
            "runner": dict(runner),
        }
    )


def _defaults(*argv: str) -> RunnerDefaults:
    """The runner defaults `rocky-operator run <argv>` would use."""
    parser = argparse.ArgumentParser(exit_on_error=False)
    run_command.add_arguments(parser)
    return run_command.runner_defaults(parser.parse_args(list(argv)))


def _pods(spec: RockyRunSpec, defaults: RunnerDefaults) -> list[dict[str, object]]:
    found = [
        DiscoveredTable(
            None, "src__acme__shopify", "orders", {"tenant": "acme", "source": "shopify"}
        )
    ]
    table = plan_tables(spec, found)[0]
    copy = build_pod(
        run_name="r",
        run_uid="u",
        namespace="n",
        spec=spec,
        table=table,
        attempt=1,
        defaults=defaults,
    )
    discovery = build_discovery_pod(
        run_name="r", run_uid="u", namespace="n", spec=spec, deadline_seconds=60, defaults=defaults
    )
    return [copy["spec"], discovery["spec"]]


@pytest.mark.parametrize(
    "runner",
    [
        pytest.param({}, id="the operator's runner ServiceAccount"),
        pytest.param({"serviceAccountName": "team-runner"}, id="the run's own ServiceAccount"),
    ],
)
def test_runner_pods_carry_the_operators_pull_secrets(runner: dict[str, object]) -> None:
    defaults = _defaults("--runner-image-pull-secrets=regcred,mirror, regcred")
    assert defaults.image_pull_secrets == ("regcred", "mirror")
    for pod in _pods(_spec(**runner), defaults):
        assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]


def test_pull_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCKY_RUNNER_IMAGE_PULL_SECRETS", "regcred")
    assert _defaults().image_pull_secrets == ("regcred",)


def test_no_pull_secrets_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROCKY_RUNNER_IMAGE_PULL_SECRETS", raising=False)
    defaults = _defaults()
    assert defaults.image_pull_secrets == ()
    for pod in _pods(_spec(), defaults):
        assert "imagePullSecrets" not in pod
