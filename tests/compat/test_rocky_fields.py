"""docs/rocky-compat.md against Rocky's own config: a row for every replication field."""

from __future__ import annotations

from pathlib import Path

#: The fields of Rocky's replication config structs (engine/crates/rocky-core/src/config.rs at
#: rocky-data/rocky 98e7d385: AdapterConfig, RetryConfig, ReplicationPipelineConfig,
#: PipelineSourceConfig, SchemaPatternConfig, PipelineTargetConfig, ExecutionConfig), as
#: rocky.toml spells them. A key Rocky adds must get a row before it is silently refused.
ROCKY_FIELDS = {
    "adapter.NAME": (
        "type kind host http_path token client_id client_secret timeout_secs destination_id "
        "api_key api_secret account warehouse username password oauth_token private_key_path "
        "pat role database project_id location path retry cache ratelimit stampede "
        "circuit_breaker extra"
    ),
    "adapter.NAME.retry": (
        "max_retries initial_backoff_ms max_backoff_ms backoff_multiplier jitter "
        "circuit_breaker_threshold circuit_breaker_recovery_timeout_secs max_retries_per_run"
    ),
    "pipeline.NAME": (
        "type strategy timestamp_column merge_keys merge_keys_fallback metadata_columns checks "
        "depends_on schedule table_overrides prune_unchanged"
    ),
    "pipeline.NAME.source": "adapter catalog discovery",
    "pipeline.NAME.source.schema_pattern": "prefix separator components",
    "pipeline.NAME.target": "adapter catalog_template schema_template separator governance",
    "pipeline.NAME.execution": "concurrency fail_fast error_rate_abort_pct table_retries",
}


def test_every_field_of_rockys_replication_config_has_a_row() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "rocky-compat.md").read_text()
    rows = {
        cells[0].strip("`")
        for line in doc.splitlines()
        if len(cells := [c.strip() for c in line.strip().strip("|").split("|")]) >= 3
    }
    missing = [
        f"{table}.{field}"
        for table, fields in ROCKY_FIELDS.items()
        for field in fields.split()
        if f"{table}.{field}" not in rows
    ]
    assert not missing, f"docs/rocky-compat.md lacks rows for {missing}"
