"""``rocky-operator from-rocky-toml rocky.toml``: print the RockyRun of a replication pipeline.

The RockyRun YAML goes to stdout; one ``rocky-operator: KEY: ...`` line per ignored key and the
Secret keys the run refers to go to stderr. A refused key is one line on stderr and exit 1.
``${VAR}`` references take their values from this environment, except credentials, which
become Secret references (docs/rocky-compat.md).
"""

from __future__ import annotations

import argparse
import os
import sys

HELP = "print the RockyRun of a replication pipeline of a rocky.toml (docs/rocky-compat.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from rocky_operator.compat.toml_reader import DEFAULT_SECRET

    parser.add_argument("config", metavar="rocky.toml", help="Rocky's configuration file")
    parser.add_argument("--pipeline", metavar="P", help="the pipeline (when there are several)")
    parser.add_argument("--filter", metavar="F", help="component=value, as `rocky run --filter`")
    parser.add_argument("--name", metavar="NAME", help="metadata.name (default: the pipeline's)")
    parser.add_argument(
        "--secret",
        metavar="NAME",
        default=DEFAULT_SECRET,
        help=f"the Secret credentials are read from (default: {DEFAULT_SECRET})",
    )
    parser.add_argument(
        "--overlay",
        metavar="FILE.yaml",
        help="a partial RockyRun spec merged over the translation (runner volumes, "
        "adapter.duckdb.memoryLimit, retry, ...)",
    )
    parser.add_argument(
        "--duckdb-storage-version",
        metavar="VERSION",
        help="DuckDB storage version of new target files, e.g. v1.5.0 (readable by Rocky's "
        "DuckDB 1.5)",
    )


def run(args: argparse.Namespace) -> int:
    import yaml

    from rocky_operator.compat.rocky_toml import load_overlay, translate_file
    from rocky_operator.compat.toml_reader import Options, RockyTomlError

    options = Options(
        pipeline=args.pipeline,
        filter=args.filter,
        name=args.name,
        secret_name=args.secret,
        duckdb_storage_version=args.duckdb_storage_version,
    )
    try:
        translation = translate_file(args.config, os.environ, options)
        if args.overlay:
            translation = load_overlay(translation, args.overlay)
    except RockyTomlError as exc:
        sys.stderr.write(f"rocky-operator: {exc}\n")
        return 1
    for line in translation.warnings:
        sys.stderr.write(f"rocky-operator: {line}\n")
    if translation.credentials:
        keys = ", ".join(c.secret_key for c in translation.credentials)
        sys.stderr.write(
            f"rocky-operator: credentials: the run reads Secret {translation.secret_name} "
            f"(keys: {keys}); create it with kubectl create secret generic "
            f"{translation.secret_name} --from-literal=KEY=VALUE ... (docs/rocky-compat.md)\n"
        )
    sys.stdout.write(yaml.safe_dump(translation.manifest, sort_keys=False))
    return 0
