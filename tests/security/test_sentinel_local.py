"""The local executor gives the sentinel guarantee too (issue 12): ``rocky-operator local``.

The same sentinel secrets and echoing fakes as the e2e sentinel test
(tests/support/sentinels.py), one ``rocky-operator local`` process per RockyRun with the
credentials in its environment (as a pod's ``secretKeyRef`` would give them). Locally
discovery runs inside the executor process, not a pod, so its own stderr is where an
echoing connector's output would land. Grepped: the RunOutput on stdout, the progress on
stderr, the journal, and every runner log and result file kept by ``--logs-dir``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.support.leaks import LeakFinder, find_leaks
from tests.support.sentinels import (
    ECHOED,
    SENTINELS,
    credential_env,
    echo_fakes,
    run_specs,
    secret_data,
)

pytestmark = pytest.mark.slow


def test_no_fragment_of_a_sentinel_secret_in_a_local_run(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "rocky-operator"
    with echo_fakes() as fakes:
        data = secret_data(fakes)
        runs = run_specs(fakes)
        procs: dict[str, tuple[subprocess.Popen[str], Path, Path]] = {}
        for name, spec in runs.items():
            manifest = tmp_path / f"{name}.yaml"
            doc = {"apiVersion": "rocky.dev/v1alpha1", "kind": "RockyRun",
                   "metadata": {"name": name}, "spec": spec}  # fmt: skip
            manifest.write_text(yaml.safe_dump(doc, allow_unicode=True))
            logs, journal = tmp_path / f"{name}-logs", tmp_path / f"{name}.journal.jsonl"
            env = {
                **os.environ,
                **credential_env(spec, data),
                # Discovery runs in this process: it needs the runner env's CA as well.
                **{e["name"]: e["value"] for e in spec["runner"].get("env", [])},
                "SNOWFLAKE_DISABLE_PLATFORM_DETECTION": "true",
            }
            argv = [str(exe), "local", str(manifest), "--logs-dir", str(logs),
                    "--journal", str(journal)]  # fmt: skip
            procs[name] = (
                subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True),
                logs,
                journal,
            )  # fmt: skip
        texts: dict[str, str] = {}
        for name, (proc, logs, journal) in procs.items():
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 1, (name, proc.returncode, err[-3000:])
            texts[f"{name} stdout"] = out
            texts[f"{name} stderr"] = err
            if journal.exists():
                texts[f"{name} journal"] = journal.read_text(errors="replace")
            for path in sorted(logs.rglob("*")) if logs.exists() else []:
                if path.is_file():
                    texts[f"{name} {path.name}"] = path.read_text(errors="replace")
            output = json.loads(out)
            summary = json.dumps(output)
            # Discovery failures are classified as a discovery pod classifies them.
            kinds = {e["failure_kind"] for e in output["errors"]}
            assert kinds == {"auth-failed"}, (name, output)
            marker = ECHOED[name.split("-")[0] if name != "sf-bad-key" else name]
            assert marker in summary, (name, output)
        # The fakes were sent the secrets (so an echo carried them).
        for label in ("sf-copy", "dbx-copy", "sf-discovery", "dbx-discovery"):
            sent = [r.body.decode("utf-8", "replace") + json.dumps(r.headers)
                    for r in fakes[label].requests]  # fmt: skip
            assert find_leaks(SENTINELS, sent), label
    finder = LeakFinder(SENTINELS)
    found = [
        (label, leak.secret_name, leak.shape, leak.context(text))
        for label, text in texts.items()
        for leak in finder(text)
    ]
    assert found == [], "\n".join(map(repr, found[:40]))
    assert any(k.endswith(".log") for k in texts), "the runner logs were kept and read"


_LOGGING_DISCOVERY = """
import logging, sys, warnings
import rocky_runner.discovery as discovery
from rocky_operator.cli import main

def open_adapter(settings, credentials, *, timeout_seconds):
    secret = credentials.require("ROCKY_SNOWFLAKE_PASSWORD")
    # A connector with nobody's logging configured: Python's last-resort handler.
    logging.getLogger("snowflake.connector").error("login body: %r", {"PASSWORD": secret})
    warnings.warn("retrying with " + secret)
    raise PermissionError("refused")

discovery.open_adapter = open_adapter
sys.exit(main(sys.argv[1:]))
"""


def test_library_output_of_local_discovery_is_redacted(tmp_path: Path) -> None:
    """Local discovery runs the connector inside the executor: its library output on
    the executor's stderr goes through the redactor too."""
    secret = SENTINELS["sf-password-copy"]
    manifest = tmp_path / "run.yaml"
    doc = {"apiVersion": "rocky.dev/v1alpha1", "kind": "RockyRun", "metadata": {"name": "r"},
           "spec": {"adapter": {"type": "snowflake", "snowflake": {
               "account": "a", "user": "u", "passwordSecretRef": {"name": "s", "key": "k"}}},
               "source": {"schemaPattern": {"components": ["tenant"]}},
               "target": {"catalogTemplate": "t", "schemaTemplate": "s"}}}  # fmt: skip
    manifest.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [sys.executable, "-c", _LOGGING_DISCOVERY, "local", str(manifest),
         "--journal", str(tmp_path / "j.jsonl")],
        env={**os.environ, "ROCKY_SNOWFLAKE_PASSWORD": secret},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "login body" in proc.stderr, proc.stderr
    assert "retrying with" in proc.stderr, proc.stderr
    leaks = find_leaks({"s": secret}, [proc.stdout, proc.stderr])
    assert leaks == [], [(leak.shape, leak.context(proc.stderr)) for leak in leaks]
