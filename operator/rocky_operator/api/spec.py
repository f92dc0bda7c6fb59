"""The RockyRun spec: what a user applies.

These models are the single source of truth: the CRD schema under ``crds/`` is
rendered from them, the operator and the local executor both validate manifests
with them, and attribute docstrings become the schema's descriptions.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from rocky_runner.contract import memory_limit_problem

API_GROUP = "rocky.dev"
API_VERSION = "v1alpha1"
KIND = "RockyRun"
PLURAL = "rockyruns"
SHORT_NAME = "rr"

AdapterType = Literal["duckdb", "databricks", "snowflake", "bigquery"]
Strategy = Literal["incremental", "full_refresh"]
#: The failure kinds a user may name in ``retry`` and ``resumeKinds``.
FailureKindName = Literal[
    "connection-failed",
    "auth-failed",
    "query-rejected",
    "transient",
    "quota-exceeded",
    "not-found",
    "unknown",
]

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
#: Largest manifest read (bytes): what Kubernetes stores per object (etcd's default
#: request limit, 1.5 MiB); anything bigger could never be applied, and YAML that size
#: takes tens of seconds to parse.
MAX_MANIFEST_BYTES = 1_572_864
#: Schema of a list of Kubernetes objects the operator passes through unchanged.
_FREE_FORM_ITEMS: dict[str, Any] = {
    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
}


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


class SecretKeyRef(_Model):
    """A key of a Secret in the RockyRun's namespace."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of the Secret."""
    key: Annotated[str, Field(min_length=1, max_length=253)]
    """Key within the Secret."""


class DuckDBSettings(_Model):
    path: Annotated[str, Field(min_length=1)]
    """Path of the DuckDB database file, as the runner pod sees it."""
    lock_timeout_seconds: Annotated[float, Field(ge=0, le=3600)] = 60.0
    """How long a runner waits for the database file's write lock before it gives up
    (the table then fails as transient). DuckDB allows one writing process per file."""
    memory_limit: str | None = None
    """DuckDB ``memory_limit`` for each runner (e.g. ``2GB``); unset: DuckDB's default."""

    @field_validator("memory_limit")
    @classmethod
    def _memory_size(cls, value: str | None) -> str | None:
        problem = memory_limit_problem(value) if value is not None else None
        if problem is not None:
            raise ValueError(problem)
        return value

    storage_version: Annotated[str, Field(pattern=r"^(v\d+\.\d+\.\d+|latest)$")] | None = None
    """Storage version of the target files a run creates (e.g. ``v1.5.0``, which DuckDB 1.5
    and so Rocky can open); unset: the warehouse file's own. Existing files keep theirs."""


class DatabricksSettings(_Model):
    host: Annotated[str, Field(min_length=1)]
    """Workspace host name, e.g. ``adb-123.azuredatabricks.net``."""
    http_path: Annotated[str, Field(min_length=1)]
    """HTTP path of the SQL warehouse."""
    catalog: str | None = None
    """Unity Catalog catalog that holds the source schemas."""
    port: Annotated[int, Field(ge=1, le=65535)] = 443
    """HTTPS port of the workspace."""
    token_secret_ref: SecretKeyRef
    """Secret key holding a personal access token or service principal token."""


class SnowflakeSettings(_Model):
    account: Annotated[str, Field(min_length=1)]
    """Account identifier, e.g. ``myorg-myaccount``."""
    user: Annotated[str, Field(min_length=1)]
    """Login name."""
    warehouse: str | None = None
    """Virtual warehouse that runs the queries."""
    role: str | None = None
    """Role to assume after login."""
    database: str | None = None
    """Database that holds the source schemas."""
    host: str | None = None
    """Override of the account's host name (private link, or a local test endpoint)."""
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """Override of the HTTPS port."""
    protocol: Literal["https", "http"] = "https"
    """Protocol to the host; ``http`` only for local test endpoints."""
    password_secret_ref: SecretKeyRef | None = None
    """Secret key holding the password."""
    private_key_secret_ref: SecretKeyRef | None = None
    """Secret key holding a PEM private key for key-pair authentication."""

    @model_validator(mode="after")
    def _one_credential(self) -> SnowflakeSettings:
        if (self.password_secret_ref is None) == (self.private_key_secret_ref is None):
            raise ValueError("set exactly one of passwordSecretRef and privateKeySecretRef")
        return self


class BigQuerySettings(_Model):
    project: Annotated[str, Field(min_length=1)]
    """Google Cloud project that runs the jobs and holds the datasets."""
    location: str = "US"
    """Location of the datasets and jobs."""
    credentials_secret_ref: SecretKeyRef
    """Secret key holding a service account key (JSON)."""
    api_endpoint: str | None = None
    """Override of the BigQuery API endpoint (private endpoints or local tests)."""


class AdapterSpec(_Model):
    """Exactly one warehouse: ``type`` names it and the block of that name configures it."""

    type: AdapterType
    """Which warehouse the tables live in."""
    duckdb: DuckDBSettings | None = None
    databricks: DatabricksSettings | None = None
    snowflake: SnowflakeSettings | None = None
    bigquery: BigQuerySettings | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AdapterSpec:
        given = [n for n in ("duckdb", "databricks", "snowflake", "bigquery") if getattr(self, n)]
        if given != [self.type]:
            raise ValueError(
                f"adapter.type is {self.type!r}: set adapter.{self.type} and no other "
                f"adapter block (found: {', '.join(given) or 'none'})"
            )
        return self

    def secret_refs(self) -> dict[str, SecretKeyRef]:
        """Credential Secret keys by the runner environment variable that receives them."""
        from rocky_runner import contract as c

        refs: dict[str, SecretKeyRef | None] = {}
        if self.databricks:
            refs[c.ENV_DATABRICKS_TOKEN] = self.databricks.token_secret_ref
        if self.snowflake:
            refs[c.ENV_SNOWFLAKE_PASSWORD] = self.snowflake.password_secret_ref
            refs[c.ENV_SNOWFLAKE_PRIVATE_KEY] = self.snowflake.private_key_secret_ref
        if self.bigquery:
            refs[c.ENV_BIGQUERY_CREDENTIALS] = self.bigquery.credentials_secret_ref
        return {k: v for k, v in refs.items() if v is not None}


class SchemaPattern(_Model):
    """How source schema names encode their components, as in Rocky's schema_pattern."""

    prefix: str = "src__"
    """Prefix every source schema starts with."""
    separator: Annotated[str, Field(min_length=1)] = "__"
    """Separator between components."""
    components: Annotated[list[str], Field(min_length=1, max_length=16)]
    """Names of the components after the prefix, e.g. ``[tenant, region, source]``."""

    @model_validator(mode="after")
    def _distinct(self) -> SchemaPattern:
        if len(set(self.components)) != len(self.components):
            raise ValueError("schemaPattern.components must be distinct")
        for c in self.components:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", c):
                raise ValueError(f"schemaPattern component {c!r} is not an identifier")
        return self


class SourceSpec(_Model):
    schema_pattern: SchemaPattern
    """Which schemas are sources and what their names mean."""
    catalog: str | None = None
    """Catalog (database) that holds the source schemas; default: the adapter's."""
    tables: list[Annotated[str, Field(min_length=1)]] | None = None
    """Copy only these tables (in every matching schema); unset: discover all tables. A
    listed name a matching schema does not have (or has as a view while ``includeViews``
    is false) is reported in the RunOutput's ``excluded_tables`` with its reason."""
    include_views: bool = False
    """Replicate views (and materialized views) like tables. Default false, as Rocky:
    views are skipped by discovery and listed in ``excluded_tables`` (reason ``view``).
    When true, a broken view fails its table with the kind the warehouse's error has
    (``not-found``, ``query-rejected``)."""


class TargetSpec(_Model):
    catalog_template: Annotated[str, Field(min_length=1)]
    """Target catalog; placeholders ``{component}`` take the source schema's values."""
    schema_template: Annotated[str, Field(min_length=1)]
    """Target schema; placeholders as for catalogTemplate."""


class MetadataColumnSpec(_Model):
    name: Annotated[str, Field(min_length=1)]
    """Column name."""
    type: Annotated[str, Field(min_length=1)]
    """SQL type in the warehouse's dialect."""
    value: Annotated[str, Field(min_length=1)]
    """SQL expression evaluated for every copied row."""


class RetryRule(_Model):
    """Retry rule for one failure kind; unset fields keep the default for that kind."""

    max_retries: Annotated[int, Field(ge=0, le=20)] | None = None
    """How many more attempts after the first failure."""
    backoff_seconds: Annotated[float, Field(ge=0, le=86400)] | None = None
    """Delay before the first retry; doubles with each further retry."""
    max_backoff_seconds: Annotated[float, Field(ge=0, le=86400)] | None = None
    """Upper bound of the delay."""


class RetrySpec(_Model):
    """Per failure_kind overrides of the default retry policy."""

    connection_failed: RetryRule | None = Field(default=None, alias="connection-failed")
    auth_failed: RetryRule | None = Field(default=None, alias="auth-failed")
    query_rejected: RetryRule | None = Field(default=None, alias="query-rejected")
    transient: RetryRule | None = Field(default=None, alias="transient")
    quota_exceeded: RetryRule | None = Field(default=None, alias="quota-exceeded")
    not_found: RetryRule | None = Field(default=None, alias="not-found")
    unknown: RetryRule | None = Field(default=None, alias="unknown")

    def rule_for(self, kind: str) -> RetryRule | None:
        rule: RetryRule | None = getattr(self, kind.replace("-", "_"), None)
        return rule


class CircuitBreakerSpec(_Model):
    auth_failed_threshold: Annotated[int, Field(ge=0, le=10000)] = 3
    """Stop launching new tables after this many auth-failed results; 0 disables."""


class RunnerSpec(_Model):
    """How runner pods are made."""

    image: str | None = None
    """Container image with the runner; unset: the operator's ``--runner-image`` (the Helm
    chart sets it to the operator's own image, so operator and runner stay in step)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    command: list[str] = Field(default_factory=lambda: ["rocky-runner"])
    """Container command that starts the runner."""
    service_account_name: str | None = None
    """ServiceAccount the runner pods use; unset: the operator's
    ``--runner-service-account`` (the chart's runner ServiceAccount), else the namespace's
    default."""
    resources: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Container resources (requests / limits)."""
    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = Field(
        default=None,
        json_schema_extra=_FREE_FORM_ITEMS,
    )
    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = 3600
    """Deadline of each runner pod; a pod that exceeds it fails as transient."""
    env: list[dict[str, Any]] | None = Field(
        default=None,
        json_schema_extra=_FREE_FORM_ITEMS,
    )
    """Extra environment variables for the runner container (no secret values here:
    use valueFrom)."""
    volumes: list[dict[str, Any]] | None = Field(
        default=None,
        json_schema_extra=_FREE_FORM_ITEMS,
    )
    """Extra pod volumes, e.g. the volume holding a DuckDB file."""
    volume_mounts: list[dict[str, Any]] | None = Field(
        default=None,
        json_schema_extra=_FREE_FORM_ITEMS,
    )
    """Mounts of those volumes in the runner container."""


class RockyRunSpec(_Model):
    """One replication run: which tables, from where to where, and how to treat failures."""

    adapter: AdapterSpec
    source: SourceSpec
    target: TargetSpec
    filter: str = ""
    """``component=value`` (comma-separated for several), as ``rocky run --filter``."""
    strategy: Strategy = "incremental"
    """``incremental`` appends rows newer than the target's watermark; ``full_refresh``
    replaces the target."""
    timestamp_column: Annotated[str, Field(min_length=1)] = "_fivetran_synced"
    """Column that orders rows for incremental copies."""
    metadata_columns: list[MetadataColumnSpec] = Field(default_factory=list)
    """Columns added to every copied row."""
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 8
    """Runner pods in flight at once."""
    fail_fast: bool = False
    """Abort the tables not yet finished on the first failure (``rocky run --fail-fast``)."""
    retry: RetrySpec = Field(default_factory=RetrySpec)
    circuit_breaker: CircuitBreakerSpec = Field(default_factory=CircuitBreakerSpec)
    resume_from: str | None = None
    """Name of an earlier RockyRun in this namespace: skip the tables it copied."""
    resume_kinds: list[FailureKindName] | None = None
    """With resumeFrom: re-run only the tables that failed with these kinds."""
    runner: RunnerSpec = Field(default_factory=RunnerSpec)

    @model_validator(mode="after")
    def _templates_and_filter(self) -> RockyRunSpec:
        known = set(self.source.schema_pattern.components)
        for field, template in (
            ("target.catalogTemplate", self.target.catalog_template),
            ("target.schemaTemplate", self.target.schema_template),
        ):
            _check_template(field, template)
            for name in _PLACEHOLDER.findall(template):
                if name not in known:
                    raise ValueError(
                        f"{field} {template!r} uses placeholder {{{name}}}, which "
                        f"source.schemaPattern.components {sorted(known)} does not have"
                    )
        for name in parse_filter(self.filter):
            if name not in known:
                raise ValueError(
                    f"filter {self.filter!r} names component {name!r}, which "
                    f"source.schemaPattern.components {sorted(known)} does not have"
                )
        if self.resume_kinds and not self.resume_from:
            raise ValueError("resumeKinds needs resumeFrom")
        return self


#: Characters a target name never contains: a path separator (a DuckDB catalog names the
#: file ``<catalog>.duckdb`` next to the warehouse) or a NUL.
_PATH_CHARACTERS = ("/", "\\", "\x00")


def _check_template(field: str, template: str) -> None:
    """Braces only as whole ``{component}`` placeholders, and nothing that could name a
    path outside the warehouse's directory (``../../tmp/evil_{tenant}``)."""
    rest = _PLACEHOLDER.sub("x", template)
    if "{" in rest or "}" in rest or "{}" in template:
        raise ValueError(
            f"{field} {template!r} has an unbalanced or empty brace: write placeholders "
            "as {component}"
        )
    bad = next((c for c in _PATH_CHARACTERS if c in template), None)
    if bad is not None or template.strip() in (".", ".."):
        what = f"contains {bad!r}" if bad is not None else "is a directory name"
        raise ValueError(
            f"{field} {template!r} {what}: a target name cannot be a path (it must stay "
            "inside the warehouse; a DuckDB catalog is the file <catalog>.duckdb next to it)"
        )


def parse_filter(text: str) -> dict[str, str]:
    """Parse ``tenant=acme,region=us_west`` into ``{component: value}``."""
    result: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"filter part {part!r} is not component=value")
        result[name.strip()] = value.strip()
    return result


def render_template(template: str, components: dict[str, str]) -> str:
    """Fill ``{component}`` placeholders; the spec validator guarantees they exist."""
    return _PLACEHOLDER.sub(lambda m: components[m.group(1)], template)
