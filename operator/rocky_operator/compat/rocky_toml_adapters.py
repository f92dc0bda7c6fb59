"""The ``[adapter.NAME]`` tables of a rocky.toml -> a RockyRun's ``spec.adapter``.

Credentials become Secret references (:meth:`AdapterTranslator.credential`), never values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rocky_operator.compat import keys
from rocky_operator.compat.interpolate import references, whole_reference
from rocky_operator.compat.toml_reader import Credential, TomlReader

WAREHOUSES = ("duckdb", "databricks", "snowflake", "bigquery")
#: Source adapter types that only list schemas; discovery runs in the warehouse instead.
METADATA_SOURCES = ("fivetran", "airbyte", "manual")
#: Keys each adapter type reads (the others are ignored with a warning on that type).
TYPE_KEYS: dict[str, frozenset[str]] = {
    "duckdb": frozenset({"path"}),
    "databricks": frozenset(
        {"host", "http_path", "token", "client_id", "client_secret", "timeout_secs"}
    ),
    "snowflake": frozenset(
        {
            "account",
            "warehouse",
            "username",
            "password",
            "private_key_path",
            "oauth_token",
            "pat",
            "role",
            "database",
            "schema",
        }
    ),
    "bigquery": frozenset({"project_id", "location"}),
}
COMMON_KEYS = frozenset({"type", "kind", "retry", "extra"})


class AdapterTranslator(TomlReader):
    def adapter(self, name: str, adapter: Mapping[str, Any]) -> dict[str, Any]:
        where = f"adapter.{name}"
        a_type = adapter.get("type")
        if a_type not in WAREHOUSES:
            raise self.refuse(
                f"{where}.type",
                f"{a_type!r} is not supported as the target "
                f"(rocky-operator writes to {', '.join(WAREHOUSES)})",
            )
        if adapter.get("kind", "data") != "data":
            raise self.refuse(f"{where}.kind", "the target adapter must be a data adapter")
        for key in adapter:
            known = keys.ADAPTER_KEYS.get(key)
            if known is None:
                raise self.refuse(
                    f"{where}.{key}",
                    "not a rocky.toml adapter key (Rocky rejects unknown keys too)",
                )
            if key in COMMON_KEYS:
                if known.treatment == "ignore":
                    self.warn(f"{where}.{key}", known)
                continue
            if key not in TYPE_KEYS[a_type]:
                self.warnings.append(f"{where}.{key}: ignored: not read by a {a_type} adapter")
            elif known.treatment == "refuse":
                raise self.refuse(f"{where}.{key}", f"not supported: {known.becomes}")
            elif known.treatment == "ignore":
                self.warn(f"{where}.{key}", known)
        build = {
            "duckdb": self.duckdb,
            "databricks": self.databricks,
            "snowflake": self.snowflake,
            "bigquery": self.bigquery,
        }[a_type]
        return {"type": a_type, a_type: build(name, adapter)}

    def credential(
        self, adapter: str, key: str, raw: Any, runner_env: str, *, is_file: bool = False
    ) -> dict[str, str]:
        where = f"adapter.{adapter}.{key}"
        if not isinstance(raw, str):
            raise self.refuse(where, "expected a string")
        env = whole_reference(raw)
        literal = None
        if env is None:
            secret_key = re.sub(r"[^A-Za-z0-9]", "_", f"{adapter}_{key}").upper()
            literal = self.text(raw, where)
            named = references(raw)
            origin = f"built from {', '.join(named)}" if named else "written in rocky.toml"
            self.warnings.append(
                f"{where}: {origin}; not copied into the RockyRun: put it in Secret "
                f"{self.options.secret_name}, key {secret_key}"
            )
        else:
            secret_key = env
        self.credentials.append(Credential(secret_key, runner_env, env, is_file, literal))
        return {"name": self.options.secret_name, "key": secret_key}

    def duckdb(self, name: str, adapter: Mapping[str, Any]) -> dict[str, Any]:
        if "path" not in adapter:
            raise self.refuse(
                f"adapter.{name}.path",
                "an in-memory DuckDB cannot be shared by "
                "one runner process per table: set path to a database file",
            )
        path = Path(self.text(adapter["path"], f"adapter.{name}.path"))
        if not path.is_absolute() and self.options.base_dir is not None:
            path = self.options.base_dir / path
        settings: dict[str, Any] = {"path": str(path)}
        if self.options.duckdb_storage_version:
            settings["storageVersion"] = self.options.duckdb_storage_version
        return settings

    def databricks(self, name: str, adapter: Mapping[str, Any]) -> dict[str, Any]:
        from rocky_runner import contract as c

        for key in ("host", "http_path", "token"):
            if key not in adapter:
                raise self.refuse(f"adapter.{name}.{key}", "required for a databricks target")
        host = self.text(adapter["host"], f"adapter.{name}.host")
        host = re.sub(r"^https?://", "", host).rstrip("/")
        return {
            "host": host,
            "httpPath": self.text(adapter["http_path"], f"adapter.{name}.http_path"),
            "tokenSecretRef": self.credential(
                name, "token", adapter["token"], c.ENV_DATABRICKS_TOKEN
            ),
        }

    def snowflake(self, name: str, adapter: Mapping[str, Any]) -> dict[str, Any]:
        from rocky_runner import contract as c

        for key in ("account", "username"):
            if key not in adapter:
                raise self.refuse(
                    f"adapter.{name}.{key}",
                    "required for a snowflake target (password or key-pair authentication)",
                )
        out: dict[str, Any] = {
            "account": self.text(adapter["account"], f"adapter.{name}.account"),
            "user": self.text(adapter["username"], f"adapter.{name}.username"),
        }
        for key, field_name in (
            ("warehouse", "warehouse"),
            ("role", "role"),
            ("database", "database"),
        ):
            if key in adapter:
                out[field_name] = self.text(adapter[key], f"adapter.{name}.{key}")
        # Rocky tries key-pair before password; so does this translation.
        if "private_key_path" in adapter:
            out["privateKeySecretRef"] = self.credential(
                name,
                "private_key_path",
                adapter["private_key_path"],
                c.ENV_SNOWFLAKE_PRIVATE_KEY,
                is_file=True,
            )
            if "password" in adapter:
                self.warnings.append(
                    f"adapter.{name}.password: ignored: key-pair "
                    "authentication is used first, as in Rocky"
                )
        elif "password" in adapter:
            out["passwordSecretRef"] = self.credential(
                name, "password", adapter["password"], c.ENV_SNOWFLAKE_PASSWORD
            )
        else:
            raise self.refuse(
                f"adapter.{name}", "no supported credential: set password or private_key_path"
            )
        return out

    def bigquery(self, name: str, adapter: Mapping[str, Any]) -> dict[str, Any]:
        from rocky_runner import contract as c

        if "project_id" not in adapter:
            raise self.refuse(f"adapter.{name}.project_id", "required for a bigquery target")
        out: dict[str, Any] = {
            "project": self.text(adapter["project_id"], f"adapter.{name}.project_id"),
        }
        if "location" in adapter:
            out["location"] = self.text(adapter["location"], f"adapter.{name}.location")
        # Rocky reads the service account key from GOOGLE_APPLICATION_CREDENTIALS (a path).
        env = "GOOGLE_APPLICATION_CREDENTIALS"
        self.credentials.append(Credential(env, c.ENV_BIGQUERY_CREDENTIALS, env, True))
        out["credentialsSecretRef"] = {"name": self.options.secret_name, "key": env}
        return out
