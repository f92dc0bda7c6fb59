"""rocky.toml -> RockyRun: each key translated, ignored with a warning, or refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from rocky_operator.compat.rocky_toml import parse, translate
from rocky_operator.compat.toml_reader import Options, RockyTomlError
from rocky_operator.local.manifest import parse_manifest

# Rocky's own "At a glance" example (docs/reference/configuration.md), with a file path.
AT_A_GLANCE = """
[adapter.local]
type = "duckdb"
path = "warehouse.duckdb"

[pipeline.replication]
type = "replication"
strategy = "full_refresh"

[pipeline.replication.source]
adapter = "local"

[pipeline.replication.source.schema_pattern]
prefix = "raw__"
separator = "__"
components = ["source"]

[pipeline.replication.target]
adapter = "local"
catalog_template = "warehouse"
schema_template = "analytics"

[state]
backend = "local"
"""

DATABRICKS = """
[adapter.prod]
type = "databricks"
host = "${DATABRICKS_HOST}"
http_path = "${DATABRICKS_HTTP_PATH:-/sql/1.0/warehouses/default}"
token = "${DATABRICKS_TOKEN}"

[adapter.prod.retry]
max_retries = 5
initial_backoff_ms = 500
max_backoff_ms = 60000
jitter = true

[adapter.fivetran]
type = "fivetran"
kind = "discovery"
destination_id = "${FIVETRAN_DESTINATION_ID}"
api_key = "${FIVETRAN_API_KEY}"
api_secret = "${FIVETRAN_API_SECRET}"

[pipeline.bronze]
type = "replication"
strategy = "incremental"
timestamp_column = "_fivetran_synced"
metadata_columns = [
    { name = "_loaded_by", type = "STRING", value = "NULL" },
    { name = "_loaded_at", type = "TIMESTAMP", value = "CURRENT_TIMESTAMP()" },
]

[pipeline.bronze.source]
adapter = "fivetran"
catalog = "${SOURCE_CATALOG:-fivetran}"

[pipeline.bronze.source.schema_pattern]
prefix = "src__"
separator = "__"
components = ["tenant", "region", "source"]

[pipeline.bronze.target]
adapter = "prod"
catalog_template = "{tenant}_warehouse"
schema_template = "staging__{region}__{source}"

[pipeline.bronze.target.governance]
auto_create_schemas = true

[pipeline.bronze.execution]
concurrency = "adaptive"
fail_fast = true
table_retries = 2
"""

SECRET_VALUE = "dapi-0123456789-very-secret"
ENV = {"DATABRICKS_HOST": "https://adb-42.azuredatabricks.net/", "DATABRICKS_TOKEN": SECRET_VALUE}


def _translate(text: str, env: dict[str, str] | None = None, **options: Any) -> Any:
    return translate(parse(text), env or {}, Options(base_dir=Path("/srv/rocky"), **options))


def _refusal(text: str, env: dict[str, str] | None = None, **options: Any) -> str:
    with pytest.raises(RockyTomlError) as info:
        _translate(text, env, **options)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_rockys_at_a_glance_example_becomes_a_valid_rockyrun() -> None:
    result = _translate(AT_A_GLANCE, filter="source=shopify")
    spec = result.manifest["spec"]
    assert spec["adapter"] == {"type": "duckdb", "duckdb": {"path": "/srv/rocky/warehouse.duckdb"}}
    assert spec["source"]["schemaPattern"] == {
        "prefix": "raw__",
        "separator": "__",
        "components": ["source"],
    }
    assert spec["target"] == {"catalogTemplate": "warehouse", "schemaTemplate": "analytics"}
    assert spec["strategy"] == "full_refresh"
    assert spec["filter"] == "source=shopify"
    assert result.manifest["metadata"]["name"] == "replication"
    assert result.warnings == ("state: ignored: " + _becomes("state"),)
    parse_manifest(result.manifest, Path("rocky.toml"))  # what `rocky-operator local` accepts


def _becomes(section: str) -> str:
    from rocky_operator.compat.keys import TOP_LEVEL_KEYS

    return TOP_LEVEL_KEYS[section].becomes


def test_databricks_credentials_become_secret_references_never_values() -> None:
    result = _translate(DATABRICKS, ENV, secret_name="warehouse-creds")
    spec = result.manifest["spec"]
    assert spec["adapter"]["databricks"] == {
        "host": "adb-42.azuredatabricks.net",
        "httpPath": "/sql/1.0/warehouses/default",
        "tokenSecretRef": {"name": "warehouse-creds", "key": "DATABRICKS_TOKEN"},
    }
    assert SECRET_VALUE not in yaml.safe_dump(result.manifest)
    assert SECRET_VALUE not in " ".join(result.warnings)
    assert SECRET_VALUE not in repr(result)
    [cred] = result.credentials
    assert (cred.secret_key, cred.env, cred.runner_env) == (
        "DATABRICKS_TOKEN",
        "DATABRICKS_TOKEN",
        "ROCKY_DATABRICKS_TOKEN",
    )
    assert spec["source"]["catalog"] == "fivetran"
    assert spec["timestampColumn"] == "_fivetran_synced"
    assert spec["metadataColumns"][1] == {
        "name": "_loaded_at",
        "type": "TIMESTAMP",
        "value": "CURRENT_TIMESTAMP()",
    }
    assert spec["retry"] == {
        "transient": {"maxRetries": 5, "backoffSeconds": 0.5, "maxBackoffSeconds": 60.0}
    }
    assert spec["concurrency"] == 32
    assert spec["failFast"] is True
    warned = {line.split(":")[0] for line in result.warnings}
    assert warned == {
        "pipeline.bronze.source.adapter",  # fivetran: discovery in the warehouse instead
        "pipeline.bronze.target.governance",
        "pipeline.bronze.execution.table_retries",
        "pipeline.bronze.execution.concurrency",  # adaptive -> 32
        "adapter.prod.retry.jitter",
    }


def test_a_credential_written_in_the_file_is_not_copied() -> None:
    text = DATABRICKS.replace('"${DATABRICKS_TOKEN}"', f'"{SECRET_VALUE}"')
    result = _translate(text, ENV)
    ref = result.manifest["spec"]["adapter"]["databricks"]["tokenSecretRef"]
    assert ref == {"name": "rocky-credentials", "key": "PROD_TOKEN"}
    assert SECRET_VALUE not in yaml.safe_dump(result.manifest) + " ".join(result.warnings)
    assert any("put it in Secret rocky-credentials, key PROD_TOKEN" in w for w in result.warnings)
    assert result.credentials[0].literal == SECRET_VALUE  # for the local backend only


def test_environment_references_and_defaults() -> None:
    assert "DATABRICKS_HOST" in _refusal(DATABRICKS, {"DATABRICKS_TOKEN": "x"})
    env = {**ENV, "SOURCE_CATALOG": "raw", "DATABRICKS_HTTP_PATH": "/sql/2"}
    spec = _translate(DATABRICKS, env).manifest["spec"]
    assert spec["source"]["catalog"] == "raw"
    assert spec["adapter"]["databricks"]["httpPath"] == "/sql/2"
    empty = {**ENV, "SOURCE_CATALOG": ""}  # :- takes the default when set but empty
    assert _translate(DATABRICKS, empty).manifest["spec"]["source"]["catalog"] == "fivetran"


SNOWFLAKE = """
[adapter.snow]
type = "snowflake"
account = "${SNOWFLAKE_ACCOUNT}"
warehouse = "COMPUTE_WH"
username = "loader"
role = "LOADER"
database = "RAW"
{auth}

[pipeline.p.source.schema_pattern]
prefix = "src__"
separator = "__"
components = ["tenant", "source"]

[pipeline.p.target]
catalog_template = "ANALYTICS"
schema_template = "{tenant}__{source}"
"""


def _snowflake(auth: str) -> str:
    return SNOWFLAKE.replace("{auth}", auth)


def test_snowflake_key_pair_first_then_password_and_refusals() -> None:
    env = {"SNOWFLAKE_ACCOUNT": "org-acct"}
    both = _snowflake(
        'password = "${SNOWFLAKE_PASSWORD}"\nprivate_key_path = "${SNOWFLAKE_KEY_PATH}"'
    )
    result = _translate(both, env)
    snow = result.manifest["spec"]["adapter"]["snowflake"]
    assert snow["privateKeySecretRef"] == {"name": "rocky-credentials", "key": "SNOWFLAKE_KEY_PATH"}
    assert "passwordSecretRef" not in snow
    assert (snow["account"], snow["user"], snow["warehouse"]) == (
        "org-acct",
        "loader",
        "COMPUTE_WH",
    )
    assert result.credentials[0].is_file
    password = _translate(_snowflake('password = "${SNOWFLAKE_PASSWORD}"'), env)
    ref = password.manifest["spec"]["adapter"]["snowflake"]["passwordSecretRef"]
    assert ref["key"] == "SNOWFLAKE_PASSWORD"
    assert "pat" in _refusal(_snowflake('pat = "${SNOWFLAKE_PAT}"'), env)
    assert "no supported credential" in _refusal(_snowflake(""), env)


BIGQUERY = """
[adapter.bq]
type = "bigquery"
project_id = "${GCP_PROJECT_ID}"
location = "EU"

[pipeline.p.source.schema_pattern]
prefix = "src__"
separator = "__"
components = ["source"]

[pipeline.p.target]
catalog_template = "analytics"
schema_template = "raw_{source}"
"""


def test_bigquery_reads_the_service_account_key_from_a_secret() -> None:
    result = _translate(BIGQUERY, {"GCP_PROJECT_ID": "proj"})
    assert result.manifest["spec"]["adapter"]["bigquery"] == {
        "project": "proj",
        "location": "EU",
        "credentialsSecretRef": {
            "name": "rocky-credentials",
            "key": "GOOGLE_APPLICATION_CREDENTIALS",
        },
    }
    [cred] = result.credentials
    assert cred.is_file
    assert cred.runner_env == "ROCKY_BIGQUERY_CREDENTIALS_JSON"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (('strategy = "full_refresh"', 'strategy = "merge"'), "pipeline.replication.strategy"),
        (('type = "replication"', 'type = "transformation"'), "pipeline.replication.type"),
        (('components = ["source"]', 'components = ["regions..."]'), "components"),
        (('schema_template = "analytics"', 'schema_template = "{source:_}"'), "schema_template"),
        (('path = "warehouse.duckdb"', ""), "adapter.local.path"),
        (('type = "duckdb"', 'type = "trino"'), "adapter.local.type"),
        (('strategy = "full_refresh"', 'strategy = "full_refresh"\nretires = 3'), "retires"),
        (
            (
                'strategy = "full_refresh"',
                'strategy = "full_refresh"\n[[pipeline.replication.'
                'table_overrides]]\nmatch.table = "x"',
            ),
            "table_overrides",
        ),
        (
            (
                'adapter = "local"\n\n[pipeline.replication.source.schema',
                'adapter = "nope"\n\n[pipeline.replication.source.schema',
            ),
            "pipeline.replication.source.adapter",
        ),
    ],
)
def test_refused_keys_are_one_line_naming_the_key(change: tuple[str, str], named: str) -> None:
    assert change[0] in AT_A_GLANCE
    assert named in _refusal(AT_A_GLANCE.replace(change[0], change[1], 1))


SECOND = """
[pipeline.second.source.schema_pattern]
prefix = "x__"
separator = "__"
components = ["source"]

[pipeline.second.target]
catalog_template = "w"
schema_template = "s"
"""


def test_pipeline_choice() -> None:
    two = AT_A_GLANCE + SECOND
    assert "pass --pipeline" in _refusal(two)
    assert _translate(two, pipeline="second").pipeline == "second"
    assert "no such pipeline" in _refusal(AT_A_GLANCE, pipeline="nope")
    # A filter naming an unknown component is refused by the RockyRun's own validation.
    assert "tenant" in _refusal(AT_A_GLANCE, filter="tenant=acme")


def test_unnamed_adapter_is_the_default_and_refs_default_to_it() -> None:
    text = AT_A_GLANCE.replace("[adapter.local]", "[adapter]").replace('adapter = "local"\n', "")
    spec = _translate(text).manifest["spec"]
    assert spec["adapter"]["type"] == "duckdb"


def test_from_rocky_toml_command(tmp_path: Path) -> None:
    config = tmp_path / "rocky.toml"
    config.write_text(DATABRICKS)
    cmd = [sys.executable, "-m", "rocky_operator.cli", "from-rocky-toml", str(config)]
    env = {"PATH": "/usr/bin:/bin", **ENV}
    ok = subprocess.run(
        [*cmd, "--filter", "tenant=acme"], capture_output=True, text=True, env=env, check=False
    )
    assert ok.returncode == 0, ok.stderr
    manifest = yaml.safe_load(ok.stdout)
    assert manifest["spec"]["filter"] == "tenant=acme"
    assert SECRET_VALUE not in ok.stdout + ok.stderr
    assert "Secret rocky-credentials (keys: DATABRICKS_TOKEN)" in ok.stderr
    parse_manifest(manifest, config)
    config.write_text(DATABRICKS.replace('strategy = "incremental"', 'strategy = "view"'))
    bad = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert bad.stderr.count("\n") == 1
    assert "pipeline.bronze.strategy" in bad.stderr


def test_docs_table_lists_every_key_with_its_treatment() -> None:
    from rocky_operator.compat import keys

    doc = (Path(__file__).resolve().parents[2] / "docs" / "rocky-compat.md").read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[1]
    expected = {
        **{f"adapter.NAME.{k}": v for k, v in keys.ADAPTER_KEYS.items()},
        **{f"adapter.NAME.retry.{k}": v for k, v in keys.RETRY_KEYS.items()},
        **{f"pipeline.NAME.{k}": v for k, v in keys.PIPELINE_KEYS.items()},
        **{f"[{k}]": v for k, v in keys.TOP_LEVEL_KEYS.items()},
    }
    for name, key in expected.items():
        assert name in rows, f"docs/rocky-compat.md has no row for {name}"
        assert rows[name] == key.treatment, name
