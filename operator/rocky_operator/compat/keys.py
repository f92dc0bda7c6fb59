"""Every rocky.toml key of a replication pipeline, and what rocky-operator does with it.

One entry per key: ``translate`` (it becomes the RockyRun field named), ``ignore`` (one warning
line, the run goes on without it) or ``refuse`` (one error line, exit 1, nothing printed). The
translator looks each key up here, so a key is treated exactly as docs/rocky-compat.md says
(a test compares the two).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Treatment = Literal["translate", "ignore", "refuse"]


@dataclass(frozen=True)
class Key:
    treatment: Treatment
    becomes: str
    """What the key becomes in the RockyRun, or why it is ignored / refused."""


T: Treatment = "translate"
IGNORE: Treatment = "ignore"
REFUSE: Treatment = "refuse"

#: Adapter keys, by ``adapter.NAME.<key>`` (the same for every adapter type unless noted).
ADAPTER_KEYS: dict[str, Key] = {
    "type": Key(
        T,
        "`spec.adapter.type` (duckdb, databricks, snowflake, bigquery); "
        "fivetran / airbyte / manual only as a source, see `source.adapter`; others refused",
    ),
    "kind": Key(T, "checked: `data` (or unset) for the warehouse; `discovery` only as a source"),
    "path": Key(
        T,
        "duckdb: `spec.adapter.duckdb.path` (relative to rocky.toml's directory); "
        "unset (in-memory) is refused: one process per table cannot share memory",
    ),
    "host": Key(T, "databricks: `spec.adapter.databricks.host` (`https://` removed)"),
    "http_path": Key(T, "databricks: `spec.adapter.databricks.httpPath`"),
    "token": Key(T, "databricks: `spec.adapter.databricks.tokenSecretRef` (never inlined)"),
    "client_id": Key(REFUSE, "databricks OAuth M2M: the runner authenticates with a token only"),
    "client_secret": Key(REFUSE, "databricks OAuth M2M: the runner authenticates with a token"),
    "timeout_secs": Key(
        IGNORE,
        "statement timeout: runner pods are bounded by `spec.runner.activeDeadlineSeconds` instead",
    ),
    "account": Key(T, "snowflake: `spec.adapter.snowflake.account`"),
    "warehouse": Key(T, "snowflake: `spec.adapter.snowflake.warehouse`"),
    "username": Key(T, "snowflake: `spec.adapter.snowflake.user`"),
    "password": Key(T, "snowflake: `spec.adapter.snowflake.passwordSecretRef` (never inlined)"),
    "private_key_path": Key(
        T,
        "snowflake: `spec.adapter.snowflake.privateKeySecretRef`; the "
        "Secret holds the PEM file's content",
    ),
    "oauth_token": Key(REFUSE, "snowflake OAuth: the runner supports password and key-pair"),
    "pat": Key(
        REFUSE, "snowflake programmatic access token: the runner supports password and key-pair"
    ),
    "role": Key(T, "snowflake: `spec.adapter.snowflake.role`"),
    "database": Key(T, "snowflake: `spec.adapter.snowflake.database`"),
    "schema": Key(IGNORE, "snowflake default schema: every statement names its schema"),
    "project_id": Key(
        T,
        "bigquery: `spec.adapter.bigquery.project`; credentials: "
        "`credentialsSecretRef` key `GOOGLE_APPLICATION_CREDENTIALS`",
    ),
    "location": Key(T, "bigquery: `spec.adapter.bigquery.location`"),
    "retry": Key(
        T,
        "`max_retries`, `initial_backoff_ms`, `max_backoff_ms` -> "
        "`spec.retry.transient` (whole-table re-attempts); its other keys ignored",
    ),
    "extra": Key(IGNORE, "adapter-specific pass-through keys have no reader here"),
    "destination_id": Key(IGNORE, "fivetran source only; see `source.adapter`"),
    "api_key": Key(IGNORE, "fivetran source only (never copied); see `source.adapter`"),
    "api_secret": Key(IGNORE, "fivetran source only (never copied); see `source.adapter`"),
    "cache": Key(IGNORE, "fivetran cache: no Fivetran API calls are made"),
    "ratelimit": Key(IGNORE, "fivetran rate limit: no Fivetran API calls are made"),
    "stampede": Key(IGNORE, "fivetran stampede lock: no Fivetran API calls are made"),
    "circuit_breaker": Key(IGNORE, "fivetran circuit breaker: no Fivetran API calls are made"),
}

#: ``adapter.NAME.retry.<key>``
RETRY_KEYS: dict[str, Key] = {
    "max_retries": Key(T, "`spec.retry.transient.maxRetries` (at most 20)"),
    "initial_backoff_ms": Key(T, "`spec.retry.transient.backoffSeconds`"),
    "max_backoff_ms": Key(T, "`spec.retry.transient.maxBackoffSeconds`"),
    "backoff_multiplier": Key(IGNORE, "the backoff doubles"),
    "jitter": Key(IGNORE, "no jitter between table attempts"),
    "circuit_breaker_threshold": Key(
        IGNORE, "the breaker of `spec.circuitBreaker` counts auth-failed tables"
    ),
    "circuit_breaker_recovery_timeout_secs": Key(IGNORE, "see circuit_breaker_threshold"),
    "max_retries_per_run": Key(IGNORE, "retries are bounded per table and kind"),
}

#: Pipeline keys, by their path below ``pipeline.NAME``.
PIPELINE_KEYS: dict[str, Key] = {
    "type": Key(T, "must be `replication` (the default); other pipeline types are refused"),
    "strategy": Key(
        T,
        "`spec.strategy` (`incremental`, `full_refresh`); `merge`, `view`, "
        "`materialized_view`, `dynamic_table` refused",
    ),
    "timestamp_column": Key(T, "`spec.timestampColumn`"),
    "metadata_columns": Key(T, "`spec.metadataColumns` (`name`, `type`, `value`)"),
    "merge_keys": Key(IGNORE, 'only used by `strategy = "merge"`, which is refused'),
    "merge_keys_fallback": Key(IGNORE, 'only used by `strategy = "merge"`'),
    "source.adapter": Key(
        T,
        "the adapter whose schemas are discovered; a fivetran / airbyte / "
        "manual source is ignored with a warning (schemas are discovered in "
        "the target warehouse); another warehouse than the target is refused",
    ),
    "source.catalog": Key(T, "`spec.source.catalog`"),
    "source.schema_pattern.prefix": Key(T, "`spec.source.schemaPattern.prefix`"),
    "source.schema_pattern.separator": Key(T, "`spec.source.schemaPattern.separator`"),
    "source.schema_pattern.components": Key(
        T, "`spec.source.schemaPattern.components`; a multi-valued `name...` component is refused"
    ),
    "source.discovery": Key(IGNORE, "schemas are discovered through the warehouse adapter"),
    "target.adapter": Key(T, "`spec.adapter` (the warehouse the runners write)"),
    "target.catalog_template": Key(T, "`spec.target.catalogTemplate` (`{c:SEP}` refused)"),
    "target.schema_template": Key(T, "`spec.target.schemaTemplate` (`{c:SEP}` refused)"),
    "target.separator": Key(IGNORE, "only joins multi-valued components, which are refused"),
    "target.governance": Key(
        IGNORE,
        "catalogs / schemas are created as needed; tags, grants "
        "and workspace isolation are not applied",
    ),
    "checks": Key(IGNORE, "data quality checks are not run (`check_results` is empty)"),
    "execution.concurrency": Key(
        T,
        "`spec.concurrency` (runner pods at once, at most 1000); "
        "`adaptive` becomes 32, Rocky's adaptive maximum",
    ),
    "execution.fail_fast": Key(T, "`spec.failFast`"),
    "execution.error_rate_abort_pct": Key(
        IGNORE, "a run never aborts on its error rate; `spec.circuitBreaker` stops on auth failures"
    ),
    "execution.table_retries": Key(
        IGNORE, "tables are retried per failure_kind (`spec.retry` and its defaults)"
    ),
    "depends_on": Key(IGNORE, "chain runs with a RockySchedule or the orchestrator"),
    "schedule": Key(IGNORE, "use a RockySchedule"),
    "table_overrides": Key(REFUSE, "per-table overrides would change what some tables do"),
    "prune_unchanged": Key(
        IGNORE,
        "every selected table is copied (incremental copies of an unchanged table copy no rows)",
    ),
}

#: Top-level sections other than ``adapter`` and ``pipeline``.
TOP_LEVEL_KEYS: dict[str, Key] = {
    "state": Key(IGNORE, "run records live in the RockyRun (cluster) or `--state-path` (local)"),
}
#: What any other top-level section (hooks, cost, ai, ...) gets.
OTHER_TOP_LEVEL = Key(IGNORE, "not part of a replication run")
