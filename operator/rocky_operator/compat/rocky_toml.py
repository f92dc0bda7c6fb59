"""A replication pipeline of a ``rocky.toml`` -> a RockyRun manifest.

Pure: the caller passes the parsed document and the environment; nothing is read or
written here. Every key is looked up in :mod:`.keys` and translated, ignored with one warning
line, or refused with one error line (:class:`RockyTomlError`). Credentials are never
inlined: each becomes a ``SecretKeyRef`` into one Secret (default ``rocky-credentials``) whose
key is the environment variable rocky.toml names (``token = "${DATABRICKS_TOKEN}"`` -> key
``DATABRICKS_TOKEN``), or ``<ADAPTER>_<FIELD>`` for a value written in the file itself.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rocky_operator.api.spec import API_GROUP, API_VERSION, KIND, RockyRunSpec
from rocky_operator.compat import keys
from rocky_operator.compat.rocky_toml_adapters import (
    METADATA_SOURCES,
    AdapterTranslator,
)
from rocky_operator.compat.toml_reader import (
    Credential,
    Options,
    RockyTomlError,
)

ADAPTIVE_CONCURRENCY = 32


@dataclass(frozen=True)
class Translation:
    pipeline: str
    manifest: dict[str, Any]
    warnings: tuple[str, ...]
    credentials: tuple[Credential, ...]
    secret_name: str


def parse(text: str, source: str = "rocky.toml") -> dict[str, Any]:
    """TOML text -> document; one line naming the position when it is not TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        hint = " (write ${VAR} references inside quotes)" if "${" in text else ""
        raise RockyTomlError(f"{source}: not valid TOML: {exc}{hint}") from None


class _Translator(AdapterTranslator):
    # --- pipeline and adapters -----------------------------------------------------

    def adapters(self) -> dict[str, Mapping[str, Any]]:
        raw = self.doc.get("adapter") or {}
        raw = self.table(raw, "adapter")
        if isinstance(raw.get("type"), str):  # an unnamed [adapter] is adapter.default
            return {"default": raw}
        return {name: self.table(v, f"adapter.{name}") for name, v in raw.items()}

    def choose_pipeline(self) -> tuple[str, Mapping[str, Any]]:
        pipelines = self.table(self.doc.get("pipeline") or {}, "pipeline")
        wanted = self.options.pipeline
        if wanted is not None:
            if wanted not in pipelines:
                raise RockyTomlError(
                    f"pipeline.{wanted}: no such pipeline (rocky.toml has: "
                    f"{', '.join(sorted(pipelines)) or 'none'})"
                )
            return wanted, self.table(pipelines[wanted], f"pipeline.{wanted}")
        replication = [
            n
            for n, p in pipelines.items()
            if isinstance(p, Mapping) and p.get("type", "replication") == "replication"
        ]
        if len(replication) == 1 or (not replication and len(pipelines) == 1):
            name = replication[0] if replication else next(iter(pipelines))
            return name, self.table(pipelines[name], f"pipeline.{name}")
        if not replication:
            raise RockyTomlError("pipeline: rocky.toml has no replication pipeline")
        raise RockyTomlError(
            f"pipeline: rocky.toml has several replication pipelines "
            f"({', '.join(sorted(replication))}); pass --pipeline NAME"
        )

    def resolve(
        self, adapters: Mapping[str, Mapping[str, Any]], ref: Any, where: str
    ) -> tuple[str, Mapping[str, Any]]:
        name = self.text(ref, where) if ref is not None else "default"
        if name in adapters:
            return name, adapters[name]
        if name == "default" and len(adapters) == 1:
            return next(iter(adapters.items()))
        raise self.refuse(where, f"names adapter {name!r}, which rocky.toml does not define")

    def translate(self) -> Translation:
        for section in self.doc:
            if section in ("adapter", "pipeline"):
                continue
            self.warn(section, keys.TOP_LEVEL_KEYS.get(section, keys.OTHER_TOP_LEVEL))
        name, pipe = self.choose_pipeline()
        where = f"pipeline.{name}"
        kind = pipe.get("type", "replication")
        if kind != "replication":
            raise self.refuse(
                f"{where}.type",
                f"{kind!r} pipelines are not supported: "
                "rocky-operator runs replication pipelines; use the real Rocky",
            )
        self.check_keys(pipe, where, keys.PIPELINE_KEYS)
        adapters = self.adapters()
        source = self.table(pipe.get("source"), f"{where}.source")
        target = self.table(pipe.get("target"), f"{where}.target")
        self.check_keys(source, f"{where}.source", keys.PIPELINE_KEYS, "source.")
        self.check_keys(target, f"{where}.target", keys.PIPELINE_KEYS, "target.")
        t_name, t_adapter = self.resolve(adapters, target.get("adapter"), f"{where}.target.adapter")
        s_name, s_adapter = self.resolve(adapters, source.get("adapter"), f"{where}.source.adapter")
        self.check_source(s_name, s_adapter, t_name, t_adapter, where)
        spec: dict[str, Any] = {
            "adapter": self.adapter(t_name, t_adapter),
            "source": self.source(source, f"{where}.source"),
            "target": self.target(target, f"{where}.target"),
            "strategy": self.strategy(pipe.get("strategy", "incremental"), f"{where}.strategy"),
        }
        if "timestamp_column" in pipe:
            spec["timestampColumn"] = self.text(
                pipe["timestamp_column"], f"{where}.timestamp_column"
            )
        if "metadata_columns" in pipe:
            spec["metadataColumns"] = self.metadata_columns(
                pipe["metadata_columns"], f"{where}.metadata_columns"
            )
        if "execution" in pipe:
            spec.update(
                self.execution(
                    self.table(pipe["execution"], f"{where}.execution"), f"{where}.execution"
                )
            )
        retry = self.retry(t_adapter.get("retry"), f"adapter.{t_name}.retry")
        if retry:
            spec["retry"] = {"transient": retry}
        if self.options.filter:
            spec["filter"] = self.options.filter
        run_name = self.options.name or kube_name(name)
        try:
            RockyRunSpec.model_validate(spec)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in err["loc"]) or "spec"
            raise RockyTomlError(
                f"{where}: the RockyRun would be invalid: spec.{loc}: "
                f"{str(err['msg']).removeprefix('Value error, ')}"
            ) from None
        manifest = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "metadata": {"name": run_name},
            "spec": spec,
        }
        return Translation(
            name, manifest, tuple(self.warnings), tuple(self.credentials), self.options.secret_name
        )

    def check_source(
        self,
        s_name: str,
        s_adapter: Mapping[str, Any],
        t_name: str,
        t_adapter: Mapping[str, Any],
        where: str,
    ) -> None:
        if s_name == t_name:
            return
        s_type = s_adapter.get("type")
        if s_type in METADATA_SOURCES:
            self.warnings.append(
                f"{where}.source.adapter: ignored: {s_type} adapter {s_name!r} only lists "
                f"schemas; they are discovered in the target warehouse {t_name!r} with "
                "schema_pattern instead (its keys, credentials included, are not read)"
            )
            return
        if dict(s_adapter) == dict(t_adapter):
            return
        raise self.refuse(
            f"{where}.source.adapter",
            f"adapter {s_name!r} differs from the "
            f"target adapter {t_name!r}: rocky-operator copies within one warehouse",
        )

    # --- source, target, strategy, execution ------------------------------------------

    def source(self, source: Mapping[str, Any], where: str) -> dict[str, Any]:
        pattern = self.table(source.get("schema_pattern"), f"{where}.schema_pattern")
        self.check_keys(
            pattern, f"{where}.schema_pattern", keys.PIPELINE_KEYS, "source.schema_pattern."
        )
        out_pattern: dict[str, Any] = {}
        for key in ("prefix", "separator"):
            if key not in pattern:
                raise self.refuse(f"{where}.schema_pattern.{key}", "required")
            out_pattern[key] = self.text(pattern[key], f"{where}.schema_pattern.{key}")
        components = pattern.get("components")
        if not isinstance(components, list) or not components:
            raise self.refuse(f"{where}.schema_pattern.components", "required: a list of names")
        names = [self.text(c, f"{where}.schema_pattern.components") for c in components]
        for c in names:
            if c.endswith("..."):
                raise self.refuse(
                    f"{where}.schema_pattern.components",
                    f"multi-valued component {c!r} is not supported (one value per component)",
                )
        out_pattern["components"] = names
        out: dict[str, Any] = {"schemaPattern": out_pattern}
        if "catalog" in source:
            out["catalog"] = self.text(source["catalog"], f"{where}.catalog")
        return out

    def target(self, target: Mapping[str, Any], where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, field_name in (
            ("catalog_template", "catalogTemplate"),
            ("schema_template", "schemaTemplate"),
        ):
            if key not in target:
                raise self.refuse(f"{where}.{key}", "required")
            template = self.text(target[key], f"{where}.{key}")
            if re.search(r"\{[^{}]*:[^{}]*\}", template):
                raise self.refuse(
                    f"{where}.{key}",
                    "{component:SEP} joins multi-valued components, which are not supported",
                )
            out[field_name] = template
        return out

    def strategy(self, value: Any, where: str) -> str:
        strategy = self.text(value, where)
        if strategy not in ("incremental", "full_refresh"):
            raise self.refuse(
                where,
                f"{strategy!r} is not supported (incremental, "
                "full_refresh); use the real Rocky for it",
            )
        return strategy

    def metadata_columns(self, value: Any, where: str) -> list[dict[str, str]]:
        if not isinstance(value, list):
            raise self.refuse(where, "expected a list of {name, type, value}")
        columns = []
        for i, item in enumerate(value):
            col = self.table(item, f"{where}[{i}]")
            extra = sorted(set(col) - {"name", "type", "value"})
            if extra:
                raise self.refuse(f"{where}[{i}].{extra[0]}", "not a metadata column key")
            columns.append(
                {k: self.text(col.get(k), f"{where}[{i}].{k}") for k in ("name", "type", "value")}
            )
        return columns

    def execution(self, execution: Mapping[str, Any], where: str) -> dict[str, Any]:
        self.check_keys(execution, where, keys.PIPELINE_KEYS, "execution.")
        out: dict[str, Any] = {}
        if "concurrency" in execution:
            raw = execution["concurrency"]
            value = self.text(raw, f"{where}.concurrency") if isinstance(raw, str) else raw
            if isinstance(value, str) and value.strip().lower() == "adaptive":
                self.warnings.append(
                    f'{where}.concurrency: "adaptive" becomes a fixed '
                    f"{ADAPTIVE_CONCURRENCY} runner pods at once"
                )
                value = ADAPTIVE_CONCURRENCY
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise self.refuse(
                    f"{where}.concurrency", f'expected "adaptive" or an integer, got {raw!r}'
                ) from None
            if number > 1000:
                self.warnings.append(f"{where}.concurrency: {number} is capped at 1000 pods")
            out["concurrency"] = min(max(number, 1), 1000)
        if "fail_fast" in execution:
            if not isinstance(execution["fail_fast"], bool):
                raise self.refuse(f"{where}.fail_fast", "expected true or false")
            out["failFast"] = execution["fail_fast"]
        return out

    def retry(self, value: Any, where: str) -> dict[str, Any]:
        if value is None:
            return {}
        retry = self.table(value, where)
        self.check_keys(retry, where, keys.RETRY_KEYS)
        out: dict[str, Any] = {}
        for key, field_name, scale, bound in (
            ("max_retries", "maxRetries", 1, 20),
            ("initial_backoff_ms", "backoffSeconds", 1000, None),
            ("max_backoff_ms", "maxBackoffSeconds", 1000, None),
        ):
            if key in retry:
                raw = retry[key]
                if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
                    raise self.refuse(f"{where}.{key}", "expected a non-negative integer")
                if bound is not None and raw > bound:
                    self.warnings.append(f"{where}.{key}: {raw} is capped at {bound}")
                    raw = bound
                out[field_name] = raw if scale == 1 else raw / scale
        return out


def kube_name(pipeline: str) -> str:
    """A pipeline name as a Kubernetes object name (``bronze_raw`` -> ``bronze-raw``)."""
    name = re.sub(r"[^a-z0-9.-]+", "-", pipeline.lower()).strip("-.")
    return name[:253] or "rocky-run"


def translate(doc: Mapping[str, Any], env: Mapping[str, str], options: Options) -> Translation:
    """The RockyRun of one replication pipeline; :class:`RockyTomlError` names a refused key."""
    return _Translator(doc, env, options).translate()


def translate_file(path: str | Path, env: Mapping[str, str], options: Options) -> Translation:
    """Read ``path`` and translate it; relative DuckDB paths resolve against its directory."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise RockyTomlError(f"{file}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RockyTomlError(f"{file}: not UTF-8 text") from None
    if options.base_dir is None:
        from dataclasses import replace

        options = replace(options, base_dir=file.resolve().parent)
    return translate(parse(text, str(file)), env, options)


def merge(base: Any, overlay: Any) -> Any:
    """``overlay`` deep-merged over ``base``: mappings merge, anything else replaces."""
    if isinstance(base, Mapping) and isinstance(overlay, Mapping):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = merge(base.get(key), value) if key in base else value
        return out
    return overlay


def with_overlay(translation: Translation, overlay: Any, source: str) -> Translation:
    """The translation with a partial RockyRun spec (camelCase, e.g. ``runner.volumes`` or
    ``adapter.duckdb.memoryLimit``) merged over its spec, validated again."""
    if not isinstance(overlay, Mapping):
        raise RockyTomlError(f"{source}: expected a mapping of RockyRun spec fields")
    manifest = dict(translation.manifest)
    manifest["spec"] = merge(manifest["spec"], overlay)
    try:
        RockyRunSpec.model_validate(manifest["spec"])
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        raise RockyTomlError(
            f"{source}: spec.{loc}: {str(err['msg']).removeprefix('Value error, ')}"
        ) from None
    from dataclasses import replace

    return replace(translation, manifest=manifest)


def load_overlay(translation: Translation, path: str | Path) -> Translation:
    """:func:`with_overlay` with the overlay read from a YAML file."""
    import yaml

    file = Path(path)
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RockyTomlError(f"{file}: cannot read the overlay: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise RockyTomlError(f"{file}: the overlay is not YAML: {exc}".splitlines()[0]) from None
    return with_overlay(translation, doc, str(file))
