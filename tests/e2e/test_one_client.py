"""Issue 13 goal 6: one Kubernetes API client library in the operator process.

`rocky-operator run` talks to the API through ``kubernetes_asyncio`` only (kube/client.py: the run
workers, the schedules, the Lease, kopf's login) and kopf's own watches; the synchronous
``kubernetes`` package is the user's side (client/cluster.py) and is never imported there.

Both run with the synchronous package made unimportable (tests/support/no_sync_client: kopf
imports it, when installed, only to recognise its objects):

* in a fresh interpreter, every module `rocky-operator run` loads imports (cheap, no cluster);
* On the real control plane, `rocky-operator run` with leader election drives a RockyRun to the
  end (discovery pod, table pod, status, Events) and a RockySchedule's pass, under Python's
  import profiler: over its whole life, until a graceful stop, no ``kubernetes`` import but
  kopf's optional probe.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kubernetes import client
from tests.support import schedules as sk
from tests.support.control_plane import REPO, ControlPlane
from tests.support.e2e import OperatorProcess, apply_crds, kubectl, wait_for

#: A sitecustomize that makes ``kubernetes`` (sync) unimportable in the process it starts in.
NO_SYNC_CLIENT = REPO / "tests" / "support" / "no_sync_client"
IMPORT_EVERYTHING_RUN_LOADS = """
import importlib, pkgutil, sys
from rocky_operator.kube.kopf_import import import_kopf
import_kopf()  # as `rocky-operator run` does first
import rocky_operator.kube
for name in ("rocky_operator.cli", "rocky_operator.commands.run", "rocky_operator.handlers",
             "rocky_operator.schedule_handlers", "rocky_operator.client.schedules",
             "rocky_operator.metrics"):
    importlib.import_module(name)
for info in pkgutil.iter_modules(rocky_operator.kube.__path__):
    importlib.import_module("rocky_operator.kube." + info.name)
sync = sorted(m for m in sys.modules if m == "kubernetes" or m.startswith("kubernetes."))
assert "kubernetes_asyncio" in sys.modules
print("SYNC", sync)
"""


def imported_modules(log: str) -> set[str]:
    """Module names of ``-X importtime`` lines ("import time: self | cumulative | name")."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in log.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def is_sync_client(module: str) -> bool:
    return module == "kubernetes" or module.startswith("kubernetes.")


def test_the_operators_modules_import_no_sync_client() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING_RUN_LOADS],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(NO_SYNC_CLIENT)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "SYNC []" in proc.stdout, proc.stdout


def test_rocky_operator_run_uses_one_client_for_runs_schedules_lease_and_kopf(
    control_plane: ControlPlane,
    namespace: str,
    custom: client.CustomObjectsApi,
    tiny_warehouse: Path,
    tmp_path: Path,
) -> None:
    apply_crds(control_plane, "rockyruns.rocky.dev", "rockyschedules.rocky.dev")
    operator = OperatorProcess(
        control_plane,
        namespace,
        tmp_path / "operator.log",
        extra_args=(
            "--leader-election-lease",
            "one-client",
            "--leader-election-namespace",
            namespace,
        ),
        env={
            "PYTHONPATH": str(NO_SYNC_CLIENT),
            "PYTHONPROFILEIMPORTTIME": "1",
            "ROCKY_SCHEDULE_POLL_SECONDS": "1",
        },
    )
    operator.start()
    try:
        sk.create_schedule(
            custom,
            namespace,
            "nightly",
            {
                "schedule": "0 3 * * *",
                "runTemplate": {"spec": sk.run_spec(tiny_warehouse)},
            },
        )
        sk.create(
            custom,
            namespace,
            "rockyruns",
            {
                "apiVersion": f"{sk.GROUP}/{sk.VERSION}",
                "kind": "RockyRun",
                "metadata": {"name": "direct"},
                "spec": sk.run_spec(tiny_warehouse),
            },
        )
        kubectl(
            control_plane, "-n", namespace, "wait", "--for=condition=Complete",
            "rockyrun/direct", "--timeout=240s", timeout=270,
        )  # fmt: skip
        run = sk.runs(custom, namespace)["direct"]
        assert run["status"]["phase"] == "Succeeded", run["status"]
        wait_for(
            lambda: (sk.get_schedule(custom, namespace, "nightly").get("status") or {}).get(
                "conditions"
            ),
            timeout=60,
            what="the schedule's first pass to write its status",
        )
        lease = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/one-client"
        assert kubectl(control_plane, "get", "--raw", lease).stdout  # it led through the Lease
    finally:
        proc = operator.proc
        operator.stop()
    assert proc is not None
    modules = imported_modules(proc.output())
    assert "kubernetes_asyncio.client.rest" in modules
    assert "rocky_operator.schedule_handlers" in modules
    # The only attempts at the sync package (each refused by the blocker, yet profiled) are
    # kopf's optional probe of its types (kopf/_cogs/helpers/thirdparty.py); none of ours.
    assert {m for m in modules if is_sync_client(m)} <= {"kubernetes", "kubernetes.client"}
