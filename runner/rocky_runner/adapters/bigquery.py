"""The BigQuery adapter, through ``google-cloud-bigquery``.

Names: a task's catalog is the Google Cloud project (default: ``bigquery.project``),
its schema the dataset. BigQuery compares dataset and table names case-sensitively,
so they are used exactly as given, quoted with backticks by sqlglot's BigQuery
dialect (:mod:`.sql_dialect`). Discovery uses the client's listing API
(``datasets.list``, ``tables.list``); columns come from ``tables.get``.

Credentials are only the service account key from the contract's variable (or the
file it names): the client never falls back to application-default credentials,
so it never looks for a metadata server. The client's retry budgets (10 minutes per
call, 40 minutes per job, no per-request timeout) are replaced by
:class:`BigQueryLimits`.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rocky_runner.adapters import sql_dialect as sql
from rocky_runner.adapters.base import (
    CopyStats,
    Credentials,
    Relation,
    SchemaName,
    relation_kind,
    table_names,
)
from rocky_runner.adapters.lean_import import without_modules
from rocky_runner.contract import ENV_BIGQUERY_CREDENTIALS, FailureKind, TableTask
from rocky_runner.drift import Column
from rocky_runner.errors import AdapterConfigError, ClassifiedError
from rocky_runner.replication import WriteMode

#: What the client library imports only because it is installed: grpc / grpc_status
#: (``google.api_core.exceptions`` maps gRPC codes; the client speaks REST) and pandas /
#: pyarrow / numpy / db_dtypes (DataFrame support; query results come as JSON). See
#: :mod:`.lean_import`.
UNUSED_EXTRAS = ("grpc", "grpc_status", "pandas", "pyarrow", "numpy", "db_dtypes")

with without_modules(*UNUSED_EXTRAS):
    from google.api_core import exceptions as api_exceptions
    from google.cloud import bigquery
    from google.cloud.bigquery import retry as bq_retry
    from google.oauth2 import service_account

DIALECT: sql.DialectName = "bigquery"
SCOPES = ("https://www.googleapis.com/auth/bigquery",)

#: Legacy API type names -> GoogleSQL DDL names.
_DDL_TYPES = {
    "INTEGER": "INT64",
    "FLOAT": "FLOAT64",
    "BOOLEAN": "BOOL",
    "RECORD": "STRUCT",
}


@dataclass(frozen=True)
class BigQueryLimits:
    """Timeouts and retry budgets the adapter sets on the client.

    Each duration is also capped by the task's ``timeout_seconds``. The client's
    defaults are not used: 600 s of retries per call, 2400 s per job, and no
    timeout on a single HTTP request.
    """

    request_timeout_seconds: float = 60.0
    """One HTTP request (client default: none)."""
    retry_seconds: float = 120.0
    """Retries of one API call (429 / 5xx / connection errors) (client default 600 s)."""
    job_retry_seconds: float = 300.0
    """Re-running a query job that failed with a retryable reason (client default 2400 s)."""
    retry_initial_delay_seconds: float = 1.0
    """First pause between retries; doubles up to ``retry_max_delay_seconds``."""
    retry_max_delay_seconds: float = 30.0
    """Longest pause between retries."""


#: The limits in force; tests replace them with shorter ones.
LIMITS = BigQueryLimits()


def ddl_type(field: Any) -> str:
    """A schema field as GoogleSQL DDL spells its type (``NUMERIC(10, 2)``, ``ARRAY<..>``)."""
    kind = _DDL_TYPES.get(str(field.field_type).upper(), str(field.field_type).upper())
    if kind == "STRUCT":
        members = ", ".join(f"{sql.quote(f.name, DIALECT)} {ddl_type(f)}" for f in field.fields)
        kind = f"STRUCT<{members}>"
    elif kind in ("NUMERIC", "BIGNUMERIC") and field.precision is not None:
        scale = field.scale if field.scale is not None else 0
        kind = f"{kind}({field.precision}, {scale})"
    elif kind in ("STRING", "BYTES") and field.max_length is not None:
        kind = f"{kind}({field.max_length})"
    if str(field.mode).upper() == "REPEATED":
        kind = f"ARRAY<{kind}>"
    return kind


class BigQueryAdapter:
    """One BigQuery client for one project."""

    type_name = "bigquery"

    def __init__(
        self,
        client: Any,
        *,
        project: str,
        location: str,
        timeout_seconds: float,
        limits: BigQueryLimits,
    ) -> None:
        self._client = client
        self._project = project
        self._location = location
        cap = max(1.0, float(timeout_seconds))
        self._timeout = min(limits.request_timeout_seconds, cap)
        self._wait = cap
        self._retry = bq_retry.DEFAULT_RETRY.with_timeout(
            min(limits.retry_seconds, cap)
        ).with_delay(
            initial=limits.retry_initial_delay_seconds,
            maximum=limits.retry_max_delay_seconds,
        )
        self._job_retry = bq_retry.DEFAULT_JOB_RETRY.with_timeout(
            min(limits.job_retry_seconds, cap)
        ).with_delay(
            initial=limits.retry_initial_delay_seconds, maximum=limits.retry_max_delay_seconds
        )
        self._lock = threading.Lock()
        self._running: Any = None

    # --- plumbing ---------------------------------------------------------------------

    def _job(self, statement: str) -> Any:
        job = self._client.query(
            statement,
            location=self._location,
            retry=self._retry,
            job_retry=self._job_retry,
            timeout=self._timeout,
        )
        with self._lock:
            self._running = job
        try:
            job.result(retry=self._retry, timeout=self._wait)
        finally:
            with self._lock:
                self._running = None
        return job

    def _rows(self, statement: str) -> list[tuple[Any, ...]]:
        job = self._job(statement)
        return [tuple(row.values()) for row in job.result(retry=self._retry, timeout=self._wait)]

    def _project_of(self, catalog: str | None) -> str:
        return catalog or self._project

    # --- discovery --------------------------------------------------------------------

    def discover_schemas(self, catalog: str | None = None) -> list[SchemaName]:
        project = self._project_of(catalog)
        datasets = self._client.list_datasets(
            project=project, retry=self._retry, timeout=self._timeout
        )
        return sorted(SchemaName(project, d.dataset_id) for d in datasets)

    def list_tables(self, catalog: str | None, schema: str) -> list[str]:
        return table_names(self.list_relations(catalog, schema))

    def list_relations(self, catalog: str | None, schema: str) -> list[Relation]:
        dataset = bigquery.DatasetReference(self._project_of(catalog), schema)
        tables = self._client.list_tables(dataset, retry=self._retry, timeout=self._timeout)
        # TABLE is a table; VIEW and MATERIALIZED_VIEW are views; EXTERNAL and SNAPSHOT
        # are reported by their own type.
        return sorted(
            Relation(t.table_id, relation_kind(str(t.table_type or ""), tables={"TABLE"}))
            for t in tables
        )

    # --- the copy ---------------------------------------------------------------------

    def _columns(self, name: sql.QualifiedName) -> list[Column] | None:
        """The table's columns, or None when it does not exist."""
        reference = bigquery.TableReference(
            bigquery.DatasetReference(self._project_of(name.catalog), name.schema),
            name.table or "",
        )
        try:
            table = self._client.get_table(reference, retry=self._retry, timeout=self._timeout)
        except api_exceptions.NotFound:
            return None
        return [Column(f.name, ddl_type(f)) for f in table.schema]

    def copy_table(self, task: TableTask) -> CopyStats:
        source = sql.QualifiedName(
            self._project_of(task.source.catalog), task.source.schema_, task.source.table
        )
        target = sql.QualifiedName(
            self._project_of(task.target.catalog), task.target.schema_, task.target.table
        )
        source_columns = self._columns(source)
        if source_columns is None:
            # Let BigQuery say it: the query fails with its own notFound error.
            self._rows(f"SELECT * FROM {sql.table_sql(source, DIALECT)} LIMIT 0")
            raise ClassifiedError(
                f"source table {source.dotted()} does not exist", kind=FailureKind.NOT_FOUND
            )
        target_columns = self._columns(target)
        plan, statements, timestamp, not_copied = sql.plan_copy(
            task,
            source=source,
            target=target,
            source_columns=source_columns,
            target_columns=target_columns,
            rows=self._rows,
            dialect=DIALECT,
        )
        # CREATE SCHEMA IF NOT EXISTS: the job's ddlOperationPerformed says CREATE when it
        # created the dataset, SKIP when the dataset was there.
        created = {"CREATE": True, "SKIP": False}.get(
            str(self._job(statements[0]).ddl_operation_performed or "")
        )
        for statement in statements[1:-1]:
            self._job(statement)
        job = self._job(statements[-1])
        if plan.mode is WriteMode.REPLACE:
            rows = int(self._rows(sql.count_sql(target, DIALECT))[0][0])
        else:
            rows = int(job.num_dml_affected_rows or 0)
        return sql.copy_stats(
            plan,
            target=target,
            rows=rows,
            final_columns=[c.name for c in self._columns(target) or []],
            timestamp_column=timestamp,
            scalar=lambda query: self._rows(query)[0][0],
            dialect=DIALECT,
            not_copied=not_copied,
            schema_created=created,
        )

    # --- lifecycle --------------------------------------------------------------------

    def cancel(self) -> None:
        with self._lock:
            job = self._running
        if job is not None:
            with contextlib.suppress(Exception):
                job.cancel(timeout=self._timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


def load_credentials(credentials: Credentials) -> Any:
    """Service account credentials from the key JSON; never application defaults."""
    text = credentials.require(ENV_BIGQUERY_CREDENTIALS)
    try:
        info = json.loads(text)
        # google-auth leaves this factory unannotated.
        from_info: Any = service_account.Credentials.from_service_account_info
        return from_info(info, scopes=SCOPES)
    except (ValueError, KeyError, TypeError) as exc:
        # Never echo the key: only what kind of problem it has.
        raise ClassifiedError(
            f"{ENV_BIGQUERY_CREDENTIALS} is not a service account key ({type(exc).__name__})",
            kind=FailureKind.AUTH_FAILED,
        ) from None


def open_adapter(
    settings: Mapping[str, Any],
    credentials: Credentials,
    *,
    timeout_seconds: float,
    google_credentials: Any = None,
    limits: BigQueryLimits | None = None,
) -> BigQueryAdapter:
    """A client for the ``bigquery`` block (camelCase keys) with the service account key.

    ``google_credentials`` replaces the key (tests: ``AnonymousCredentials``).
    """
    project = settings.get("project")
    if not isinstance(project, str) or not project:
        raise AdapterConfigError("adapter.bigquery.project must be a non-empty string")
    location = settings.get("location") or "US"
    endpoint = settings.get("apiEndpoint")
    creds = google_credentials if google_credentials is not None else load_credentials(credentials)
    options: dict[str, Any] = {"api_endpoint": endpoint} if endpoint else {}
    client = bigquery.Client(
        project=project, credentials=creds, location=location, client_options=options or None
    )
    return BigQueryAdapter(
        client,
        project=project,
        location=location,
        timeout_seconds=timeout_seconds,
        limits=limits or LIMITS,
    )
