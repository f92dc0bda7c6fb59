"""The operator's footprint before and after discovery moved into a pod (issue 12).

    python benchmarks/operator_footprint.py [--tables 500] [--skip-install] [--skip-rss]

Before, the operator discovered tables itself: it needed the warehouse connector libraries
(the ``connectors`` extra) in its image and loaded them into its process; now a discovery
pod of the run does that, and the operator needs only the ``operator`` extra. There is no
container engine here, so two figures stand in for the image and the memory:

1. Installed size of each dependency set: a fresh venv per set (``pip install
   --only-binary=:all: -c constraints.txt '.[<extras>]'``, as the Dockerfile's dependency
   layer does), ``du`` of its site-packages. ``operator`` is what an operator-only image
   needs now; ``operator,connectors`` what it needed before. (The chart's one image still
   serves both roles, so the runner's connectors stay in *that* image; an operator-only
   image is ``docker build --build-arg EXTRAS=operator``.)
2. The operator process's resident set size (VmRSS idle, VmHWM at the end of a run) on the
   real kube-apiserver (tests/support/control_plane.py; node agent ``--synthetic-results``:
   the discovery pod runs for real, copy pods end at once with a valid result), ``rocky-operator
   run`` as its own process, twice: as it is now, and with the connector libraries and the
   runner's adapters imported into it first, as the operator that discovered in-process held
   them once it had served a run of each warehouse type.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: What the in-process discovery loaded: the connectors and the runner's adapters on them.
CONNECTOR_IMPORTS = (
    "snowflake.connector",
    "databricks.sql",
    "google.cloud.bigquery",
    "sqlglot",
    "rocky_runner.discovery",
    "rocky_runner.adapters.snowflake",
    "rocky_runner.adapters.databricks",
    "rocky_runner.adapters.bigquery",
    "rocky_runner.adapters.duckdb",
)


def du_mib(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) / 1024


def install_size(extras: str, where: Path) -> tuple[float, int]:
    """(MiB of site-packages, number of distributions) of a fresh venv with ``.[extras]``."""
    env_dir = where / extras.replace(",", "+")
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "-c",
            str(REPO / "constraints.txt"),
            f"{REPO}[{extras}]",
        ],
        check=True,
        cwd=where,
    )
    # pip, setuptools and the project itself are not dependencies: leave them out.
    subprocess.run(
        [str(python), "-m", "pip", "uninstall", "--quiet", "--yes", "pip", "rocky-operator"],
        check=True,
    )
    (site,) = (env_dir / "lib").glob("python3*/site-packages")
    dists = len(list(site.glob("*.dist-info")))
    return du_mib(site), dists


def vm_kib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")


def rss_figures(tables: int, concurrency: int, state: Path) -> dict[str, tuple[float, float]]:
    """Per mode: (idle VmRSS MiB, VmHWM MiB after a run of ``tables`` tables)."""
    import duckdb
    from tests.support.control_plane import ControlPlane, binaries_dir
    from tests.support.e2e import OperatorProcess, Rest, apply_crds, start_process, wait_for
    from tests.support.manifests import staging_run

    class PreloadedOperator(OperatorProcess):
        """The operator with the connector libraries in its process (as before)."""

        def start(self) -> None:
            code = (
                "import importlib, sys\n"
                f"for name in {CONNECTOR_IMPORTS!r}: importlib.import_module(name)\n"
                "from rocky_operator.cli import main\n"
                "sys.argv = ['rocky-operator', *sys.argv[1:]]\n"
                "sys.exit(main())\n"
            )
            argv = [
                sys.executable,
                "-c",
                code,
                "run",
                "--namespace",
                self.namespace,
                "--metrics-host",
                "127.0.0.1",
                "--metrics-port",
                str(self.port),
                *self.extra_args,
            ]
            self.proc = start_process(self.cp, argv, log=self.log, user="operator", env=self.env)
            wait_for(self._healthy, timeout=120, what="the operator's /healthz")

    warehouse = state / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse))
    schemas = max(1, min(concurrency, tables))
    for j in range(schemas):
        con.execute(f"CREATE SCHEMA src__acme__r{j:04d}")
    for i in range(tables):
        con.execute(f"CREATE TABLE src__acme__r{i % schemas:04d}.t{i:06d} (id INTEGER)")
    con.close()
    figures: dict[str, tuple[float, float]] = {}
    cp = ControlPlane(state / "cp", binaries_dir(), node_agent_args=["--synthetic-results"])
    with cp:
        rest = Rest(cp)
        apply_crds(cp, "rockyruns.rocky.dev")
        for mode, kind in (("now", OperatorProcess), ("before", PreloadedOperator)):
            namespace = f"footprint-{mode}"
            rest.post("/api/v1/namespaces", {"metadata": {"name": namespace}})
            settings = ("--batch-seconds", "1", "--status-interval-seconds", "5")
            operator: Any = kind(cp, namespace, state / f"operator-{mode}.log", settings)
            operator.start()
            try:
                pid = operator.proc.popen.pid
                time.sleep(10)  # settled: kopf's watches are up
                idle = vm_kib(pid, "VmRSS") / 1024
                runs = f"/apis/rocky.dev/v1alpha1/namespaces/{namespace}/rockyruns"
                rest.post(runs, staging_run("footprint", warehouse, concurrency=concurrency))

                wait_for(
                    lambda path=f"{runs}/footprint": _complete(rest.get(path)),
                    timeout=1800,
                    interval=1.0,
                    what="the run to complete",
                )
                peak = vm_kib(pid, "VmHWM") / 1024
                run = rest.get(f"{runs}/footprint")
                print(
                    f"   {mode}: run {run['status']['phase']}, "
                    f"{run['status']['tables']['copied']} copied",
                    flush=True,
                )
            finally:
                operator.stop()
            figures[mode] = (idle, peak)
    return figures


def _complete(run: dict[str, Any]) -> bool:
    conditions = (run.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--skip-install", action="store_true", help="no install sizes")
    parser.add_argument("--skip-rss", action="store_true", help="no RSS (no control plane)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rocky-footprint-") as tmp:
        where = Path(tmp)
        if not args.skip_install:
            sizes = {e: install_size(e, where) for e in ("operator", "operator,connectors")}
            now, before = sizes["operator"], sizes["operator,connectors"]
            print("installed dependencies (site-packages, fresh venv, constraints.txt):")
            print(f"  operator             now: {now[0]:7.1f} MiB, {now[1]} distributions")
            print(f"  operator+connectors  before: {before[0]:7.1f} MiB, {before[1]} distributions")
            print(f"  saved: {before[0] - now[0]:.1f} MiB ({1 - now[0] / before[0]:.0%})")
        if not args.skip_rss:
            figures = rss_figures(args.tables, args.concurrency, where)
            print(f"operator RSS (run of {args.tables} tables, concurrency {args.concurrency}):")
            for mode in ("now", "before"):
                idle, peak = figures[mode]
                print(f"  {mode:6}  idle VmRSS {idle:6.1f} MiB   peak VmHWM {peak:6.1f} MiB")
            saved = figures["before"][1] - figures["now"][1]
            print(f"  peak saved: {saved:.1f} MiB")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
