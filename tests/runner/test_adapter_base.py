"""The adapter layer's plumbing: credentials from env or files (never shown in repr),
adapter selection by type with lazy imports, and the DuckDB adapter's settings checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rocky_runner.adapters.base import CopyStats, Credentials, open_adapter
from rocky_runner.classify import classify_exception
from rocky_runner.contract import ENV_DATABRICKS_TOKEN, ENV_SNOWFLAKE_PRIVATE_KEY, FailureKind
from rocky_runner.drift import DriftAction
from rocky_runner.errors import AdapterConfigError, MissingCredentialError


def test_credentials_from_env_and_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_text("-----BEGIN KEY-----\nabc\n-----END KEY-----\n")
    creds = Credentials.from_env(
        {
            ENV_DATABRICKS_TOKEN: "dapi-123",
            ENV_SNOWFLAKE_PRIVATE_KEY + "_FILE": str(key_file),
            "UNRELATED": "x",
        }
    )
    assert creds.require(ENV_DATABRICKS_TOKEN) == "dapi-123"
    assert creds.get(ENV_SNOWFLAKE_PRIVATE_KEY) == "-----BEGIN KEY-----\nabc\n-----END KEY-----"
    assert sorted(creds.secret_values()) == sorted(
        ["dapi-123", "-----BEGIN KEY-----\nabc\n-----END KEY-----"]
    )
    assert "dapi-123" not in repr(creds)


def test_missing_credential_is_auth_failed(tmp_path: Path) -> None:
    with pytest.raises(MissingCredentialError) as info:
        Credentials.from_env({}).require(ENV_DATABRICKS_TOKEN)
    assert classify_exception(info.value) is FailureKind.AUTH_FAILED
    with pytest.raises(MissingCredentialError) as unreadable:
        Credentials.from_env({ENV_DATABRICKS_TOKEN + "_FILE": str(tmp_path / "absent")})
    assert str(tmp_path) not in str(unreadable.value)


@pytest.mark.parametrize(
    "settings",
    [
        {"type": "oracle", "oracle": {}},
        {"duckdb": {"path": "x"}},
        {"type": "duckdb"},
        {"type": "duckdb", "duckdb": {}},
        {"type": "duckdb", "duckdb": {"path": "x", "lockTimeoutSeconds": -1}},
        {"type": "duckdb", "duckdb": {"path": "x", "memoryLimit": 5}},
    ],
)
def test_unusable_adapter_settings_are_unknown(settings: dict[str, object]) -> None:
    with pytest.raises(AdapterConfigError) as info:
        open_adapter(settings, Credentials(), timeout_seconds=5)
    assert classify_exception(info.value) is FailureKind.UNKNOWN


def test_missing_database_file_is_connection_failed_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent.duckdb"
    with pytest.raises(Exception) as info:  # noqa: PT011 - the classifier decides
        open_adapter(
            {"type": "duckdb", "duckdb": {"path": str(path)}}, Credentials(), timeout_seconds=5
        )
    assert classify_exception(info.value) is FailureKind.CONNECTION_FAILED
    assert not path.exists()


def test_memory_limit_is_applied(warehouse: Path) -> None:
    adapter = open_adapter(
        {"type": "duckdb", "duckdb": {"path": str(warehouse), "memoryLimit": "123MB"}},
        Credentials(),
        timeout_seconds=5,
    )
    try:
        limit = adapter._conn.execute("SELECT current_setting('memory_limit')").fetchone()  # type: ignore[attr-defined]
        autoload = adapter._conn.execute(  # type: ignore[attr-defined]
            "SELECT current_setting('autoload_known_extensions')"
        ).fetchone()
    finally:
        adapter.close()
    assert limit == ("117.3 MiB",)  # 123 MB in DuckDB's binary units
    assert autoload == (False,)


def test_base_import_loads_no_adapter_or_client_library() -> None:
    code = (
        "import sys, rocky_runner.adapters.base, rocky_runner.classify as c;"
        "import duckdb; c.classify_exception(ValueError());"
        "heavy=[m for m in sys.modules if m.split('.')[0] in "
        "('snowflake','databricks','google','pyarrow','kopf','kubernetes','sqlglot')];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_copy_stats_metadata() -> None:
    stats = CopyStats(
        rows_copied=3,
        target_table_full_name="wh.s.t",
        column_count=4,
        watermark="2024-01-01T00:00:00",
        write_mode="append",
        reason="incremental",
        drift=(DriftAction("add_column", "c", None, "DOUBLE"),),
    )
    assert stats.metadata("incremental") == {
        "strategy": "incremental",
        "write_mode": "append",
        "target_table_full_name": "wh.s.t",
        "column_count": 4,
        "watermark": "2024-01-01T00:00:00",
        "reason": "incremental",
        "drift": ["add_column c DOUBLE"],
    }
