"""Without a usable cluster configuration, `rocky-operator run` and `output` say so in one line
on stderr and exit 1, rather than ending in a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from rocky_operator.cli import main


@pytest.mark.parametrize(
    "argv",
    [["output", "some-run"], ["run", "--metrics-port", "0"]],
    ids=["output", "run"],
)
def test_missing_kubeconfig_is_one_clear_error(
    argv: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = f"{tmp_path}/no-such-kubeconfig"
    monkeypatch.setenv("KUBECONFIG", missing)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"rocky-operator {argv[0]}: no Kubernetes configuration" in err
    assert missing in err
    assert "Traceback" not in err
