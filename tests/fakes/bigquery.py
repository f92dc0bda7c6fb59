"""A BigQuery REST API on 127.0.0.1 for the real google-cloud-bigquery client.

Answers the calls the client makes for queries and metadata, under
``/bigquery/v2``: ``jobs.insert`` / ``jobs.get`` / ``jobs.getQueryResults``,
``jobs.query``, ``datasets.list`` / ``get`` / ``insert``, ``tables.list`` / ``get``.
Query jobs run on an in-memory DuckDB after sqlglot transpiles their BigQuery SQL
(a project is an attached DuckDB catalog, a dataset a schema), and a failing query
ends DONE with an ``errorResult`` (``invalidQuery`` / ``notFound``) like BigQuery's.
Failures are injected per request with :meth:`FakeBigQuery.fail` (HTTP status with
a BigQuery error body and reason) or :meth:`FakeBigQuery.fail_job` (a job that ends
with an ``errorResult``). A ``CREATE SCHEMA`` job reports, as BigQuery's does, its
``statementType`` and ``ddlOperationPerformed`` (``CREATE``, or ``SKIP`` when
``IF NOT EXISTS`` found the dataset). ``/token`` is an OAuth token endpoint for service-account
credentials, which can be told to refuse, or (``grants_before_echo``) to refuse every
grant after the first few echoing what it got: the form-encoded request body with its
signed JWT, and the JWT's key id (the key's ``private_key_id``) decoded, as an
over-helpful error would.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import duckdb
import sqlglot
import sqlglot.errors

from fakes.http import Reply, Request, RunningServer, serve

_API = "/bigquery/v2/projects/"


def bigquery_adapter(
    url: str,
    project: str,
    secret: tuple[str, str] = ("bigquery", "key.json"),
    *,
    location: str | None = None,
) -> dict[str, Any]:
    """A task's ``adapter`` settings for the fake BigQuery API at ``url`` (see
    :func:`bigquery_server`): ``project`` (and ``location`` if given), the service account
    key read from the Secret ``secret`` (name, key)."""
    name, key = secret
    located = {"location": location} if location is not None else {}
    return {
        "type": "bigquery",
        "bigquery": {
            "project": project,
            **located,
            "apiEndpoint": url,
            "credentialsSecretRef": {"name": name, "key": key},
        },
    }


def error_body(status: int, reason: str, message: str) -> Reply:
    """BigQuery's error response: ``error.errors[0].reason`` carries the reason."""
    return Reply.json(
        {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"message": message, "domain": "global", "reason": reason}],
                "status": reason,
            }
        },
        status=status,
    )


def echo_grant_refusal(request: Request) -> Reply:
    """Google's OAuth refusal (400 ``invalid_grant``) whose description echoes the grant:
    the JWT header's key id and the request body (form-encoded, the JWT in it)."""
    body = request.body.decode("utf-8", "replace")
    assertion = (parse_qs(body).get("assertion") or [""])[0]
    try:
        header_b64 = assertion.split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
        key_id = header.get("kid", "")
    except (ValueError, IndexError):
        key_id = ""
    return Reply.json(
        {
            "error": "invalid_grant",
            "error_description": f"Invalid JWT Signature for key {key_id}. Request: {body}",
        },
        status=400,
    )


def _bq_type(duck_type: str) -> dict[str, Any]:
    upper = duck_type.upper()
    match = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", upper)
    if match:
        return {"type": "NUMERIC", "precision": match.group(1), "scale": match.group(2)}
    if upper in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER"):
        return {"type": "INTEGER"}
    if upper in ("DOUBLE", "FLOAT", "REAL"):
        return {"type": "FLOAT"}
    if upper == "BOOLEAN":
        return {"type": "BOOLEAN"}
    if upper.startswith("TIMESTAMP"):
        return {"type": "TIMESTAMP"}
    if upper == "DATE":
        return {"type": "DATE"}
    return {"type": "STRING"}


def _cell(value: Any, bq_type: str) -> str | None:
    if value is None:
        return None
    if bq_type == "TIMESTAMP" and isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return str(int(value.timestamp() * 1_000_000))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, decimal.Decimal | datetime.date):
        return str(value)
    return str(value)


@dataclass
class _Job:
    reference: dict[str, Any]
    query: str
    fields: list[dict[str, Any]] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    dml_rows: int | None = None
    error: dict[str, Any] | None = None
    #: A DDL job's statementType / ddlOperationPerformed (CREATE, SKIP).
    ddl: tuple[str, str] | None = None

    def resource(self) -> dict[str, Any]:
        now = str(int(datetime.datetime.now(datetime.UTC).timestamp() * 1000))
        status: dict[str, Any] = {"state": "DONE"}
        if self.error is not None:
            status["errorResult"] = self.error
            status["errors"] = [self.error]
        query_stats: dict[str, Any] = {}
        if self.dml_rows is not None:
            query_stats["numDmlAffectedRows"] = str(self.dml_rows)
        if self.ddl is not None:
            query_stats["statementType"], query_stats["ddlOperationPerformed"] = self.ddl
        return {
            "kind": "bigquery#job",
            "id": f"{self.reference['projectId']}:{self.reference['jobId']}",
            "jobReference": self.reference,
            "configuration": {"query": {"query": self.query, "useLegacySql": False}},
            "status": status,
            "statistics": {
                "creationTime": now,
                "startTime": now,
                "endTime": now,
                "query": query_stats,
            },
        }

    def query_results(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "kind": "bigquery#getQueryResultsResponse",
            "jobReference": self.reference,
            "jobComplete": True,
            "schema": {"fields": self.fields},
            "totalRows": str(len(self.rows)),
            "rows": [
                {"f": [{"v": _cell(v, f["type"])} for v, f in zip(row, self.fields, strict=True)]}
                for row in self.rows
            ],
        }
        if self.dml_rows is not None:
            result["numDmlAffectedRows"] = str(self.dml_rows)
        return result


class FakeBigQuery:
    """The service behind the HTTP handler; tests seed it with :meth:`sql`."""

    def __init__(self) -> None:
        self.db = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
        self.lock = threading.Lock()
        self.jobs: dict[str, _Job] = {}
        self.queries: list[str] = []
        self._failures: list[tuple[str, re.Pattern[str], Reply, int]] = []
        self._job_failures: list[tuple[str, dict[str, Any]]] = []
        #: What ``/token`` answers; None: a fresh access token.
        self.token_reply: Reply | None = None
        #: Grants ``/token`` answers before it refuses every later one echoing it
        #: (:func:`echo_grant_refusal`); None: never.
        self.grants_before_echo: int | None = None
        self._grants = 0

    # -- test helpers --

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        with self.lock:
            return self.db.execute(statement).fetchall()

    def add_project(self, project: str) -> None:
        self.sql(f"ATTACH ':memory:' AS \"{project}\"")

    def fail(self, method: str, path_pattern: str, reply: Reply, times: int = 10_000) -> None:
        """Answer matching requests with ``reply`` (e.g. :func:`error_body`)."""
        self._failures.append((method, re.compile(path_pattern), reply, times))

    def fail_job(self, marker: str, reason: str, message: str = "job failed") -> None:
        """Queries containing ``marker`` end DONE with this ``errorResult``."""
        self._job_failures.append(
            (marker, {"reason": reason, "message": message, "location": "query"})
        )

    # -- the API --

    def handle(self, request: Request) -> Reply:
        for i, (method, pattern, reply, times) in enumerate(self._failures):
            if method == request.method and pattern.search(request.path) and times > 0:
                self._failures[i] = (method, pattern, reply, times - 1)
                return reply
        if request.path == "/token":
            with self.lock:
                self._grants += 1
                limit = self.grants_before_echo
                echo = limit is not None and self._grants > limit
            if echo:
                return echo_grant_refusal(request)
            return self.token_reply or Reply.json(
                {"access_token": "fake-token", "expires_in": 3600, "token_type": "Bearer"}
            )
        if not request.path.startswith(_API):
            return error_body(404, "notFound", f"no route {request.path}")
        parts = request.path[len(_API) :].split("/")
        project, rest = parts[0], parts[1:]
        route: Callable[..., Reply] | None = {
            ("POST", 1, "jobs"): self._jobs_insert,
            ("GET", 2, "jobs"): self._jobs_get,
            ("GET", 2, "queries"): self._get_query_results,
            ("POST", 1, "queries"): self._jobs_query,
            ("GET", 1, "datasets"): self._datasets_list,
            ("POST", 1, "datasets"): self._datasets_insert,
            ("GET", 2, "datasets"): self._datasets_get,
            ("GET", 3, "datasets"): self._tables_list,
            ("GET", 4, "datasets"): self._tables_get,
        }.get((request.method, len(rest), rest[0] if rest else ""))
        if route is None:
            return error_body(404, "notFound", f"no route {request.method} {request.path}")
        return route(request, project, *rest[1:])

    def _run(self, job: _Job) -> None:
        for marker, error in self._job_failures:
            if marker in job.query:
                job.error = error
                return
        try:
            tree = sqlglot.parse_one(job.query, read="bigquery")
            duck_sql = tree.sql(dialect="duckdb")
        except sqlglot.errors.ParseError as exc:
            job.error = {"reason": "invalidQuery", "message": f"Syntax error: {exc}"}
            return
        job.ddl = self._schema_ddl(tree, job.reference["projectId"])
        try:
            with self.lock:
                cursor = self.db.execute(duck_sql)
                described = cursor.description or []
                rows = cursor.fetchall() if described else []
        except duckdb.CatalogException as exc:
            job.error = {"reason": "notFound", "message": f"Not found: {exc}"}
            return
        except duckdb.Error as exc:
            job.error = {"reason": "invalidQuery", "message": str(exc).splitlines()[0]}
            return
        names = [d[0] for d in described]
        if names == ["Count"]:  # DML: BigQuery reports the count, not a result row
            job.dml_rows = int(rows[0][0]) if rows else 0
            return
        job.fields = [{"name": d[0], "mode": "NULLABLE", **_bq_type(str(d[1]))} for d in described]
        job.rows = rows

    def _schema_ddl(self, tree: sqlglot.exp.Expr, project: str) -> tuple[str, str] | None:
        """A ``CREATE SCHEMA`` job's statementType / ddlOperationPerformed, read before it
        runs: SKIP when ``IF NOT EXISTS`` finds the dataset, else CREATE."""
        if not (isinstance(tree, sqlglot.exp.Create) and str(tree.kind).upper() == "SCHEMA"):
            return None
        target = tree.this  # a schema parses as a Table with db (dataset) and catalog
        if not isinstance(target, sqlglot.exp.Table):
            return None
        dataset = target.db or target.name
        in_project = target.catalog or project
        exists = bool(tree.args.get("exists")) and dataset in self._schemas(in_project)
        return ("CREATE_SCHEMA", "SKIP" if exists else "CREATE")

    def _new_job(self, project: str, body: dict[str, Any]) -> _Job:
        reference = dict(body.get("jobReference") or {})
        reference.setdefault("projectId", project)
        reference.setdefault("jobId", uuid.uuid4().hex)
        reference.setdefault("location", "US")
        query = (
            body["configuration"]["query"]["query"] if "configuration" in body else body["query"]
        )
        self.queries.append(query)
        job = _Job(reference, query)
        self._run(job)
        self.jobs[reference["jobId"]] = job
        return job

    def _jobs_insert(self, request: Request, project: str) -> Reply:
        return Reply.json(self._new_job(project, request.json()).resource())

    def _jobs_query(self, request: Request, project: str) -> Reply:
        job = self._new_job(project, request.json())
        if job.error is not None:
            status = 404 if job.error["reason"] == "notFound" else 400
            return error_body(status, job.error["reason"], job.error["message"])
        return Reply.json(job.query_results())

    def _job(self, job_id: str) -> _Job | None:
        return self.jobs.get(job_id)

    def _jobs_get(self, request: Request, project: str, job_id: str) -> Reply:
        job = self._job(job_id)
        if job is None:
            return error_body(404, "notFound", f"Not found: Job {project}:{job_id}")
        return Reply.json(job.resource())

    def _get_query_results(self, request: Request, project: str, job_id: str) -> Reply:
        job = self._job(job_id)
        if job is None:
            return error_body(404, "notFound", f"Not found: Job {project}:{job_id}")
        if job.error is not None:
            status = 404 if job.error["reason"] == "notFound" else 400
            return error_body(status, job.error["reason"], job.error["message"])
        return Reply.json(job.query_results())

    def _schemas(self, project: str) -> list[str]:
        rows = self._query(
            "SELECT schema_name FROM duckdb_schemas() WHERE database_name = ? "
            "AND NOT internal ORDER BY schema_name",
            [project],
        )
        return [str(r[0]) for r in rows]

    def _query(self, statement: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with self.lock:
            return self.db.execute(statement, params).fetchall()

    def _datasets_list(self, request: Request, project: str) -> Reply:
        return Reply.json(
            {
                "kind": "bigquery#datasetList",
                "datasets": [
                    {
                        "kind": "bigquery#dataset",
                        "id": f"{project}:{name}",
                        "datasetReference": {"projectId": project, "datasetId": name},
                        "location": "US",
                    }
                    for name in self._schemas(project)
                ],
            }
        )

    def _dataset_resource(self, project: str, dataset: str) -> dict[str, Any]:
        return {
            "kind": "bigquery#dataset",
            "id": f"{project}:{dataset}",
            "datasetReference": {"projectId": project, "datasetId": dataset},
            "location": "US",
        }

    def _datasets_get(self, request: Request, project: str, dataset: str) -> Reply:
        if dataset not in self._schemas(project):
            return error_body(404, "notFound", f"Not found: Dataset {project}:{dataset}")
        return Reply.json(self._dataset_resource(project, dataset))

    def _datasets_insert(self, request: Request, project: str) -> Reply:
        dataset = request.json()["datasetReference"]["datasetId"]
        if dataset in self._schemas(project):
            return error_body(409, "duplicate", f"Already Exists: Dataset {project}:{dataset}")
        self.sql(f'CREATE SCHEMA "{project}"."{dataset}"')
        return Reply.json(self._dataset_resource(project, dataset))

    def _tables_list(self, request: Request, project: str, dataset: str, _tables: str) -> Reply:
        if dataset not in self._schemas(project):
            return error_body(404, "notFound", f"Not found: Dataset {project}:{dataset}")
        rows = self._query(
            "SELECT table_name, table_type FROM information_schema.tables "
            "WHERE table_catalog = ? AND table_schema = ? ORDER BY table_name",
            [project, dataset],
        )
        return Reply.json(
            {
                "kind": "bigquery#tableList",
                "tables": [
                    {
                        "kind": "bigquery#table",
                        "id": f"{project}:{dataset}.{name}",
                        "tableReference": {
                            "projectId": project,
                            "datasetId": dataset,
                            "tableId": name,
                        },
                        "type": "VIEW" if kind == "VIEW" else "TABLE",
                    }
                    for name, kind in rows
                ],
                "totalItems": len(rows),
            }
        )

    def _tables_get(
        self, request: Request, project: str, dataset: str, _tables: str, table: str
    ) -> Reply:
        rows = self._query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_catalog = ? AND table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [project, dataset, table],
        )
        if not rows:
            return error_body(404, "notFound", f"Not found: Table {project}:{dataset}.{table}")
        return Reply.json(
            {
                "kind": "bigquery#table",
                "id": f"{project}:{dataset}.{table}",
                "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
                "type": "TABLE",
                "schema": {
                    "fields": [
                        {"name": name, "mode": "NULLABLE", **_bq_type(str(kind))}
                        for name, kind in rows
                    ]
                },
                "numRows": "0",
            }
        )


@contextmanager
def bigquery_server(*projects: str) -> Iterator[tuple[RunningServer, FakeBigQuery]]:
    """The fake API on an HTTP port of 127.0.0.1, with ``projects`` attached."""
    service = FakeBigQuery()
    for project in projects:
        service.add_project(project)
    with serve(service.handle) as server:
        yield server, service
    service.db.close()


def service_account_info(token_uri: str, project: str = "rocky-test") -> dict[str, Any]:
    """A service account key (fresh RSA key) whose token endpoint is ``token_uri``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": f"rocky@{project}.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }


def service_account_json(token_uri: str, project: str = "rocky-test") -> str:
    return json.dumps(service_account_info(token_uri, project))
