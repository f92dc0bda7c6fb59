"""Start-up cost per adapter: process start to adapter ready, and start to first SQL.

Prints figures (not a timed test), in two parts.

1. Ready: for each adapter type a fresh interpreter imports ``rocky_runner.adapters.base``,
   calls ``open_adapter`` against a local endpoint (a DuckDB file; fakesnow's server; the
   fake Databricks SQL warehouse; the fake BigQuery REST API with a service-account token
   from its ``/token``), lists the schemas, and reports. The parent measures spawn ->
   "ready" wall time; the child reports how long importing the adapter module (its client
   library included) took and which heavy libraries ended up loaded. ``python -c pass`` is
   the baseline.
2. First SQL (issue 15 goal 3): for Snowflake, Databricks and BigQuery, the real runner
   (``python -m rocky_runner`` with ``ROCKY_TASK``, as a pod starts it) copies a table from
   the fake; the fake notes when the first SQL statement reaches it (fakesnow's
   ``query-request``, Databricks' ``ExecuteStatement``, BigQuery's ``jobs.insert`` /
   ``jobs.query``). Runner start -> first SQL is compared with spawn -> exit of
   ``python -c "import <the connector's client module>"`` as installed (the ratio of issue
   15, target <= 1.5x), and with the same import with the extras the adapter hides
   (``UNUSED_EXTRAS``) absent, which is what the connector costs in an image without them.
   ``--before DIR`` adds the runner of another checkout (``DIR/runner`` first on
   ``PYTHONPATH``; e.g. ``git worktree add /tmp/lean-before <commit>``) to the same
   rotation. Every repetition runs the variants in a rotated order.

Needs the test extra (the fakes live in ``tests/fakes``).

    python benchmarks/adapter_startup.py [--repeat 5] [--part ready|first-sql|all]
        [--before /tmp/lean-before]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

HEAVY = ("snowflake", "databricks", "google", "pyarrow", "sqlglot", "thrift", "pandas", "numpy")

CHILD = r"""
import importlib, json, sys, time
t0 = time.perf_counter()
from rocky_runner.adapters.base import ADAPTER_MODULES, Credentials, open_adapter
settings, creds, overrides = (json.loads(a) for a in sys.argv[1:4])
t1 = time.perf_counter()
module = importlib.import_module(ADAPTER_MODULES[settings["type"]])
t2 = time.perf_counter()
if overrides:  # the local endpoint's CA: passed to the adapter module directly
    block = settings[settings["type"]]
    adapter = module.open_adapter(
        block, Credentials(creds), timeout_seconds=30, connect_overrides=overrides
    )
else:
    adapter = open_adapter(settings, Credentials(creds), timeout_seconds=30)
adapter.discover_schemas()
t3 = time.perf_counter()
sys.stdout.write("READY " + json.dumps({
    "base_import_s": t1 - t0, "adapter_import_s": t2 - t1, "open_and_list_s": t3 - t2,
    "heavy": sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[4]))),
}) + "\n")
sys.stdout.flush()
adapter.close()
"""


class FirstStatement:
    """When the first SQL statement reached a fake since :meth:`arm` (``perf_counter``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.at: float | None = None

    def arm(self) -> None:
        with self._lock:
            self.at = None

    def hit(self) -> None:
        with self._lock:
            if self.at is None:
                self.at = time.perf_counter()


class _QueryRequestProbe:
    """ASGI middleware on fakesnow's app: notes each ``/queries/v1/query-request``."""

    def __init__(self, app: Any, probe: FirstStatement) -> None:
        self.app, self.probe = app, probe

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("path") == "/queries/v1/query-request":
            self.probe.hit()
        await self.app(scope, receive, send)


def _noting(probe: FirstStatement, method: Callable[..., Any]) -> Callable[..., Any]:
    def noted(*args: Any, **kwargs: Any) -> Any:
        probe.hit()
        return method(*args, **kwargs)

    return noted


@contextmanager
def _fakes(tmp: Path) -> Iterator[dict[str, Any]]:
    """Every endpoint running and seeded, each fake noting its first SQL statement."""
    import importlib

    import duckdb

    db = tmp / "bench.duckdb"
    with duckdb.connect(str(db)) as conn:
        conn.execute("CREATE SCHEMA src__bench; CREATE TABLE src__bench.t (id INT)")
    probes = {name: FirstStatement() for name in ("snowflake", "databricks", "bigquery")}
    with ExitStack() as stack:
        from fakes.bigquery import bigquery_server
        from fakes.databricks import databricks_warehouse
        from fakes.snowflake import fakesnow_server

        # fakesnow logs every login at INFO; keep the figures readable.
        logging.getLogger("fakesnow.server").setLevel(logging.WARNING)
        app = importlib.import_module("fakesnow.server").app
        app.add_middleware(_QueryRequestProbe, probe=probes["snowflake"])
        sf = stack.enter_context(fakesnow_server())
        import snowflake.connector

        sf_conn = snowflake.connector.connect(**sf)
        for statement in (
            "CREATE DATABASE BENCH",
            "CREATE SCHEMA BENCH.SRC__BENCH",
            "CREATE TABLE BENCH.SRC__BENCH.T (ID INT, _FIVETRAN_SYNCED TIMESTAMP)",
            "INSERT INTO BENCH.SRC__BENCH.T VALUES (1, '2024-01-01'), (2, '2024-01-02')",
        ):
            sf_conn.cursor().execute(statement)
        sf_conn.close()
        dbx_server, dbx_service = stack.enter_context(databricks_warehouse())
        dbx_service.sql(
            "ATTACH ':memory:' AS bench; CREATE SCHEMA bench.src__bench; "
            "CREATE TABLE bench.src__bench.t (id INTEGER, _fivetran_synced TIMESTAMP); "
            "INSERT INTO bench.src__bench.t VALUES (1, '2024-01-01'), (2, '2024-01-02')"
        )
        # The Thrift processor looks the handler's method up per call: note each statement.
        noted = _noting(probes["databricks"], dbx_service.ExecuteStatement)
        dbx_service.__dict__["ExecuteStatement"] = noted
        bq_server, bq_service = stack.enter_context(bigquery_server("bench"))
        bq_service.sql(
            'CREATE SCHEMA "bench".src__bench; '
            'CREATE TABLE "bench".src__bench.t (id BIGINT, _fivetran_synced TIMESTAMP); '
            "INSERT INTO \"bench\".src__bench.t VALUES (1, '2024-01-01'), (2, '2024-01-02')"
        )
        for name in ("_jobs_insert", "_jobs_query"):
            setattr(bq_service, name, _noting(probes["bigquery"], getattr(bq_service, name)))
        yield {"db": db, "sf": sf, "dbx": dbx_server, "bq": bq_server, "probes": probes}


def _settings(fakes: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, str]]]:
    """Adapter settings and credentials per type, for the running fakes."""
    from fakes.bigquery import service_account_json
    from rocky_runner import contract as c

    sf, dbx, bq = fakes["sf"], fakes["dbx"], fakes["bq"]
    return {
        "duckdb": ({"type": "duckdb", "duckdb": {"path": str(fakes["db"])}}, {}),
        "snowflake": (
            {
                "type": "snowflake",
                "snowflake": {
                    "account": "fakesnow",
                    "user": "fake",
                    "database": "BENCH",
                    "host": "127.0.0.1",
                    "port": sf["port"],
                    "protocol": "http",
                    "passwordSecretRef": {"name": "s", "key": "k"},
                },
            },
            {c.ENV_SNOWFLAKE_PASSWORD: sf["password"]},
        ),
        "databricks": (
            {
                "type": "databricks",
                "databricks": {
                    "host": "127.0.0.1",
                    "httpPath": "/sql/1.0/warehouses/bench",
                    "port": dbx.port,
                    "catalog": "bench",
                    "tokenSecretRef": {"name": "s", "key": "k"},
                },
            },
            {c.ENV_DATABRICKS_TOKEN: "bench-token"},
        ),
        "bigquery": (
            {
                "type": "bigquery",
                "bigquery": {
                    "project": "bench",
                    "apiEndpoint": bq.url,
                    "credentialsSecretRef": {"name": "s", "key": "k"},
                },
            },
            {c.ENV_BIGQUERY_CREDENTIALS: service_account_json(f"{bq.url}/token")},
        ),
    }


def _run_child(args: list[str], env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY "):
            ready = time.perf_counter() - start
            report: dict[str, Any] = json.loads(line[len("READY ") :])
            proc.wait(timeout=60)
            return ready, report
    _out, err = proc.communicate(timeout=60)
    raise RuntimeError(f"child failed: {err[-2000:]}")


def _baseline(repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _ready_part(fakes: dict[str, Any], repeat: int, env: dict[str, str]) -> None:
    from fakes.databricks import CA_FILE

    baseline = _baseline(repeat)
    print(f"python -c pass: {baseline * 1000:.0f} ms (median of {repeat})")
    print(
        f"{'adapter':<11} {'start->ready':>13} {'adapter import':>15} {'open+list':>10}  "
        "heavy libraries loaded"
    )
    for name, (settings, creds) in _settings(fakes).items():
        # The local endpoint's CA: passed to the adapter module directly.
        overrides = {"_tls_trusted_ca_file": CA_FILE} if name == "databricks" else {}
        ready_times, imports, opens = [], [], []
        heavy: list[str] = []
        for _ in range(repeat):
            ready, report = _run_child(
                [json.dumps(a) for a in (settings, creds, overrides, HEAVY)], env
            )
            ready_times.append(ready)
            imports.append(report["adapter_import_s"])
            opens.append(report["open_and_list_s"])
            heavy = report["heavy"]
        print(
            f"{name:<11} {statistics.median(ready_times) * 1000:>10.0f} ms "
            f"{statistics.median(imports) * 1000:>12.0f} ms "
            f"{statistics.median(opens) * 1000:>7.0f} ms  {', '.join(heavy) or '-'}"
        )


#: The module each connector's bare import is measured by: the one holding the client the
#: adapter's copy uses (``databricks.sql`` alone is a lazy stub; ``connect`` imports
#: ``databricks.sql.client``).
CLIENT_MODULES = {
    "snowflake": "snowflake.connector",
    "databricks": "databricks.sql.client",
    "bigquery": "google.cloud.bigquery",
}
SOURCES = {"snowflake": ("SRC__BENCH", "T"), "databricks": ("src__bench", "t")}
LEAN = ("pandas", "pyarrow", "numpy", "boto3", "botocore", "grpc")

#: The runner's entry as ``python -m rocky_runner`` runs it, then what it had loaded.
RUNNER_REPORT = r"""
import json, os, sys
from rocky_runner.main import run
code = run(os.environ)
print("LOADED " + json.dumps({"code": code, "loaded": sorted(
    {m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[1])))}))
"""


def _runner_env(
    name: str, fakes: dict[str, Any], tmp: Path, env: dict[str, str], runner_dir: Path
) -> dict[str, str]:
    from fakes.databricks import CA_FILE
    from rocky_runner import contract as c

    settings, creds = _settings(fakes)[name]
    schema, table = SOURCES.get(name, ("src__bench", "t"))
    task = {
        "asset_key": ["bench", name],
        "source": {"schema": schema, "table": table},
        "target": {"schema": "staging", "table": table},
        "strategy": "full_refresh",
        "timeout_seconds": 60,
        "adapter": settings,
    }
    pythonpath = os.pathsep.join(p for p in (str(runner_dir), env.get("PYTHONPATH")) if p)
    return {
        **env,
        **creds,
        c.ENV_TASK: json.dumps(task),
        c.ENV_RESULT_PATH: str(tmp / f"result-{name}"),
        # The fake warehouse's certificate, through the default verify paths: the runner
        # process takes no connector overrides.
        "SSL_CERT_FILE": CA_FILE,
        "PYTHONPATH": pythonpath,
    }


def _timed(command: list[str], env: dict[str, str], probe: FirstStatement | None) -> float:
    """Spawn -> first SQL at the fake (``probe``), or spawn -> exit (no probe)."""
    if probe is not None:
        probe.arm()
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    end = time.perf_counter()
    if proc.returncode != 0:
        raise RuntimeError(f"{command[:3]} exited {proc.returncode}: {proc.stderr[-2000:]}")
    if probe is None:
        return end - start
    if probe.at is None:
        raise RuntimeError(f"{command[:3]}: no SQL reached the fake")
    return probe.at - start


def _import_code(module: str, hidden: tuple[str, ...]) -> str:
    return f"import sys\nfor n in {hidden!r}: sys.modules[n] = None\nimport {module}\n"


def _loaded(command: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    for line in out.stdout.splitlines():
        if line.startswith("LOADED "):
            return ", ".join(json.loads(line[len("LOADED ") :])["loaded"]) or "-"
    raise RuntimeError(f"{command[:3]} failed: {out.stderr[-2000:]}")


def _first_sql_part(
    fakes: dict[str, Any], repeat: int, env: dict[str, str], tmp: Path, before: Path | None
) -> None:
    import importlib

    runners = {"after": ROOT / "runner"} | ({"before": before / "runner"} if before else {})
    report = [sys.executable, "-c", RUNNER_REPORT, json.dumps(LEAN)]
    print(
        f"\nrunner start -> first SQL at the fake vs the bare client import "
        f"(median of {repeat}, rotated order; ratio target <= 1.5x)"
    )
    for name, module in CLIENT_MODULES.items():
        hidden: tuple[str, ...] = importlib.import_module(
            f"rocky_runner.adapters.{name}"
        ).UNUSED_EXTRAS
        commands: dict[str, tuple[list[str], dict[str, str], FirstStatement | None]] = {
            "bare import": ([sys.executable, "-c", _import_code(module, ())], env, None),
            "bare, extras hidden": (
                [sys.executable, "-c", _import_code(module, hidden)],
                env,
                None,
            ),
        }
        for label, runner_dir in runners.items():
            runner_env = _runner_env(name, fakes, tmp, env, runner_dir)
            commands[f"runner {label}"] = (
                [sys.executable, "-m", "rocky_runner"],
                runner_env,
                fakes["probes"][name],
            )
        times: dict[str, list[float]] = {label: [] for label in commands}
        labels = list(commands)
        for rep in range(repeat):
            shift = rep % len(labels)
            for label in labels[shift:] + labels[:shift]:
                times[label].append(_timed(*commands[label]))
        median = {label: statistics.median(values) for label, values in times.items()}
        print(f"{name} (client module {module}; hidden: {', '.join(hidden)})")
        for label, values in times.items():
            line = (
                f"  {label:<20} {median[label] * 1000:>7.0f} ms "
                f"(min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f})"
            )
            if label.startswith("runner"):
                ratio = median[label] / median["bare import"]
                lean = median[label] / median["bare, extras hidden"]
                loaded = _loaded(report, commands[label][1])
                line += f"  {ratio:.2f}x bare, {lean:.2f}x bare with extras hidden; loads: {loaded}"
            else:
                hide = hidden if "hidden" in label else ()
                code = _import_code(module, hide) + (
                    f"import json; print('LOADED ' + json.dumps({{'loaded': sorted("
                    "{m.split('.')[0] for m, v in sys.modules.items() if v}"
                    f" & set({list(LEAN)!r}))}}))"
                )
                line += f"  loads: {_loaded([sys.executable, '-c', code], env)}"
            print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--part", choices=("ready", "first-sql", "all"), default="all")
    parser.add_argument(
        "--before", type=Path, help="a checkout whose runner/ is measured as 'before'"
    )
    options = parser.parse_args()
    warnings.simplefilter("ignore")
    env = dict(os.environ, SNOWFLAKE_DISABLE_PLATFORM_DETECTION="true")
    with tempfile.TemporaryDirectory() as tmp, _fakes(Path(tmp)) as fakes:
        if options.part in ("ready", "all"):
            _ready_part(fakes, options.repeat, env)
        if options.part in ("first-sql", "all"):
            _first_sql_part(fakes, options.repeat, env, Path(tmp), options.before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
