"""Run RockyRuns on this machine through ``rocky-operator local`` (no cluster needed).

Each run is a subprocess of the local executor, which starts one runner subprocess per table
through the same decision core as the operator. Its stdout is the RunOutput JSON and its exit
code that of ``rocky run``; the client keeps each run's manifest, output and log under
``state_dir`` by run name, so a later run can resume from an earlier one by name, as
``spec.resumeFrom`` does on a cluster.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.client.manifest import build_manifest, validate_manifest, with_resume
from rocky_operator.client.result import (
    ManifestError,
    RockyClientError,
    RunOutcome,
    RunOutputUnavailableError,
    RunTimeoutError,
    outcome_from_output,
)

#: How the executor is started by default: this interpreter, so the same installation runs it.
DEFAULT_COMMAND: tuple[str, ...] = (sys.executable, "-m", "rocky_operator.cli", "local")


class LocalClient:
    """RockyRuns executed by ``rocky-operator local`` in subprocesses."""

    def __init__(
        self,
        state_dir: str | Path,
        *,
        command: Sequence[str] = DEFAULT_COMMAND,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        mounts: Mapping[str, str] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.command = list(command)
        self.env = dict(os.environ if env is None else env)
        self.cwd = Path(cwd) if cwd else None
        #: pod path -> local directory, as the runner pods' volume mounts would map them
        #: (e.g. ``{"/data": "./warehouse"}`` for ``adapter.duckdb.path: /data/...``).
        self.mounts = dict(mounts or {})

    def output_path(self, name: str) -> Path:
        """Where the RunOutput of run ``name`` is kept."""
        return self.state_dir / f"{name}.json"

    def run(
        self,
        manifest: Mapping[str, Any] | RockyRunSpec,
        *,
        timeout: float,
        name: str | None = None,
        generate_name: str | None = None,
        resume_from: str | None = None,
        resume_kinds: list[str] | None = None,
    ) -> RunOutcome:
        """Run to completion (or ``timeout`` seconds) and return the result.

        ``resume_from`` names an earlier run of this client: its output becomes the
        executor's ``--resume-from`` file, so only the tables it did not copy run again
        (only those that failed with ``resume_kinds``, when given).
        """
        if isinstance(manifest, RockyRunSpec):
            body = build_manifest(
                manifest, name=name, generate_name=None if name else generate_name or "run-"
            )
        else:
            body = validate_manifest(manifest)
        meta = body["metadata"]
        run_name = name or meta.get("name")
        if not run_name:
            prefix = generate_name or meta.get("generateName") or "run-"
            run_name = f"{prefix}{secrets.token_hex(3)}"
        meta.pop("generateName", None)
        meta["name"] = run_name
        body = with_resume(body, None, None)  # the executor takes resumption as a file
        manifest_path = self.state_dir / f"{run_name}.yaml"
        manifest_path.write_text(json.dumps(body, indent=2))  # JSON is YAML
        args = [*self.command, str(manifest_path)]
        for pod_path, local_dir in self.mounts.items():
            args += ["--mount", f"{pod_path}={local_dir}"]
        if resume_from:
            previous = self.output_path(resume_from)
            if not previous.is_file():
                raise RockyClientError(f"no output of an earlier local run {resume_from!r}")
            args += ["--resume-from", str(previous)]
            if resume_kinds:
                args += ["--resume-kinds", ",".join(resume_kinds)]
        log_path = self.state_dir / f"{run_name}.log"
        try:
            proc = subprocess.run(
                args,
                capture_output=True,
                timeout=timeout,
                env=self.env,
                cwd=self.cwd,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            log_path.write_bytes(exc.stderr or b"")
            raise RunTimeoutError(run_name, timeout, "Running") from exc
        log_path.write_bytes(proc.stderr)
        stdout = proc.stdout.decode("utf-8", "replace").strip()
        if not stdout:
            tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
            raise ManifestError(
                f"rocky-operator local exited {proc.returncode} without a RunOutput: "
                + " | ".join(tail)
            )
        try:
            output = json.loads(stdout)
        except ValueError as exc:
            raise RunOutputUnavailableError(f"run {run_name}: stdout is not JSON: {exc}") from exc
        self.output_path(run_name).write_text(json.dumps(output))
        outcome = outcome_from_output(run_name, output)
        if proc.returncode != outcome.exit_code:
            raise RunOutputUnavailableError(
                f"run {run_name}: the executor exited {proc.returncode} but its RunOutput "
                f"(status {output.get('status')!r}) means {outcome.exit_code}"
            )
        return outcome
