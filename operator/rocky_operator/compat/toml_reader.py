"""Reading a rocky.toml document: key checks, ``${ENV}`` interpolation, warnings and errors.

The translation (:mod:`.rocky_toml`) and the adapter translators (:mod:`.rocky_toml_adapters`)
share this reader. Pure: the caller passes the document and the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rocky_operator.compat import keys
from rocky_operator.compat.interpolate import InterpolationError, interpolate

DEFAULT_SECRET = "rocky-credentials"


class RockyTomlError(ValueError):
    """A rocky.toml that cannot become a RockyRun; the message names the key."""


@dataclass(frozen=True)
class Credential:
    """One Secret key the RockyRun refers to, and where its value comes from locally."""

    secret_key: str
    runner_env: str
    """The runner's environment variable that receives it (``ROCKY_DATABRICKS_TOKEN``)."""
    env: str | None
    """The environment variable rocky.toml names, or None for a value written in the file."""
    is_file: bool = False
    """The variable / value is a path and the Secret holds the file's content."""
    literal: str | None = field(default=None, repr=False)
    """A value written in rocky.toml (used by the local backend only, never printed)."""


@dataclass(frozen=True)
class Options:
    pipeline: str | None = None
    filter: str | None = None
    name: str | None = None
    secret_name: str = DEFAULT_SECRET
    base_dir: Path | None = None
    """rocky.toml's directory: relative DuckDB paths are resolved against it."""
    duckdb_storage_version: str | None = None


class TomlReader:
    def __init__(self, doc: Mapping[str, Any], env: Mapping[str, str], options: Options) -> None:
        self.doc, self.env, self.options = doc, env, options
        self.warnings: list[str] = []
        self.credentials: list[Credential] = []

    # --- helpers -------------------------------------------------------------------

    def warn(self, where: str, key: keys.Key) -> None:
        self.warnings.append(f"{where}: ignored: {key.becomes}")

    def refuse(self, where: str, why: str) -> RockyTomlError:
        return RockyTomlError(f"{where}: {why}")

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.refuse(where, f"expected a string, got {value!r}")
        try:
            return interpolate(value, self.env, where)
        except InterpolationError as exc:
            raise RockyTomlError(str(exc)) from None

    def table(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.refuse(where, "expected a table")
        return value

    def check_keys(
        self, table: Mapping[str, Any], where: str, known: Mapping[str, keys.Key], prefix: str = ""
    ) -> None:
        """Refuse unknown and refused keys; warn about ignored ones that are set."""
        for name in table:
            key = known.get(prefix + name)
            if key is None:
                if any(k.startswith(f"{prefix}{name}.") for k in known):
                    continue  # a sub-table, checked by its own handler
                raise self.refuse(
                    f"{where}.{name}",
                    "not a rocky.toml key of a replication "
                    "pipeline (Rocky rejects unknown keys too)",
                )
            if key.treatment == "refuse":
                raise self.refuse(f"{where}.{name}", f"not supported: {key.becomes}")
            if key.treatment == "ignore":
                self.warn(f"{where}.{name}", key)
