"""The pure parts of rocky-operator-rocky: flag splitting, backend choice, label values."""

from __future__ import annotations

import pytest

from rocky_operator.compat import rocky_cli
from rocky_operator.compat.backends import label_value


def test_global_flags_anywhere_as_rocky_spells_them() -> None:
    found, rest = rocky_cli.split_globals(
        ["run", "--output", "json", "--config=rocky.toml", "-c", "b.toml", "--filter", "a=b"]
    )
    assert found == {"output": "json", "config": "b.toml"}  # the last one wins
    assert rest == ["run", "--filter", "a=b"]
    with pytest.raises(rocky_cli.UsageError, match="--state-path needs a value"):
        rocky_cli.split_globals(["run", "--state-path"])


def test_run_flags_are_not_abbreviated_and_unknown_ones_name_rocky() -> None:
    with pytest.raises(rocky_cli.UsageError, match="`rocky run --res` is not implemented"):
        rocky_cli.parse_run(["--res"])  # clap does not expand prefixes either
    with pytest.raises(rocky_cli.UsageError, match=r"\(a flag of rocky run;"):
        rocky_cli.parse_run(["--idempotency-key=k"])
    with pytest.raises(rocky_cli.UsageError, match="exclude each other"):
        rocky_cli.parse_run(["--resume", "r", "--resume-latest"])
    args = rocky_cli.parse_run(["--filter", "tenant=acme", "--parallel", "0"])
    assert (args.filter, args.parallel, args.resume_latest) == ("tenant=acme", 0, False)


@pytest.mark.parametrize(
    ("env", "flag", "backend"),
    [
        ({}, None, "local"),
        ({"ROCKY_OPERATOR_NAMESPACE": "etl"}, None, "cluster"),
        ({}, "etl", "cluster"),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, None, "cluster"),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "ROCKY_OPERATOR_BACKEND": "local"}, None, "local"),
    ],
)
def test_backend_choice(env: dict[str, str], flag: str | None, backend: str) -> None:
    assert rocky_cli.choose_backend(env, flag) == backend


def test_backend_typo_is_refused() -> None:
    with pytest.raises(rocky_cli.UsageError, match="expected cluster or local"):
        rocky_cli.choose_backend({"ROCKY_OPERATOR_BACKEND": "k8s"}, None)


@pytest.mark.parametrize(
    ("text", "value"),
    [("acme", "acme"), ("bronze raw", "bronze-raw"), ("_x_", "x"), ("a" * 80, "a" * 63)],
)
def test_label_values(text: str, value: str) -> None:
    assert label_value(text) == value
