"""The seed's shell use: ``rocky run --output json --config rocky.toml | jq -r '.errors[] | ...'``.

The seed (per-table-error-containment, "For non-Dagster consumers") pipes the RunOutput into
jq and branches on the first column: transient and quota-exceeded into a retry loop, the rest
pages the on-call. The same script, with ``rocky`` being ``rocky-operator-rocky``, in bash.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.compat import scenario
from tests.compat.conftest import interpreter_bin

SCRIPT = r"""
set -o pipefail
rocky() { rocky-operator-rocky "$@"; }
rocky run --output json --config rocky.toml \
  | jq -r '.errors[] | "\(.failure_kind)\t\(.asset_key | join("/"))\t\(.error)"' > errors.tsv
echo "exit $?"
while IFS=$'\t' read -r kind target error; do
  case "$kind" in
    transient|quota-exceeded) echo "retry $kind $target" ;;
    connection-failed|auth-failed|query-rejected|not-found|unknown) echo "page $kind $target" ;;
    *) ;;  # a later line of a multi-line error text (DuckDB's "Possible solutions: ...")
  esac
done < errors.tsv
# One line per table: fold the error text.
jq -r '.errors[] | "\(.failure_kind)\t\(.asset_key | join("/"))\t\(.error | gsub("\n"; " "))"' \
  < "$(ls -t .rocky-operator-state/runs/*.json | grep -v manifest | head -1)" > folded.tsv
"""


def test_the_seeds_jq_pipeline(tmp_path: Path) -> None:
    jq = shutil.which("jq")
    if jq is None:
        pytest.skip("jq is not installed (.ci/run installs it)")
    setup = scenario.prepare(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROCKY_")}
    env.update(
        PATH=f"{interpreter_bin()}{os.pathsep}{env['PATH']}",
        ROCKY_OPERATOR_BACKEND="local",
        ROCKY_OPERATOR_OVERLAY=str(setup.overlay),
    )
    with scenario.hold_lock(setup.directory / "acme_hubspot.duckdb"):
        proc = subprocess.run(
            ["bash", "-c", SCRIPT],
            cwd=setup.directory,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    lines = proc.stdout.splitlines()
    assert lines[0] == "exit 2", proc.stderr  # partial success, through the pipe (pipefail)
    expected = {
        f"{'retry' if kind in ('transient', 'quota-exceeded') else 'page'} {kind} {target}"
        for target, kind in scenario.PLANTED_KINDS.items()
    }
    assert set(lines[1:]) == expected
    assert len(lines[1:]) == len(expected)
    # Folded, each row is one table: kind, target and the whole error text.
    rows = [r.split("\t") for r in (setup.directory / "folded.tsv").read_text().splitlines()]
    assert {(r[1], r[0]) for r in rows} == set(scenario.PLANTED_KINDS.items())
    assert all(len(r) == 3 and r[2] for r in rows)
