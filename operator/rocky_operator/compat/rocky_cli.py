"""``rocky-operator-rocky``: the part of Rocky's CLI that rocky-sdk / dagster-rocky call.

``RockyResource(config_path="rocky.toml", binary_path="rocky-operator-rocky")`` runs, per
call, ``rocky-operator-rocky --config rocky.toml [--state-path P | --state-namespace N]
--output json run --filter K=V [--pipeline P] [--parallel N]`` (or ``run --resume-latest`` /
``--resume RUN``). This command translates the pipeline (:mod:`.rocky_toml`), runs it on the
cluster or the local executor (:mod:`.backends`), prints Rocky's RunOutput JSON on stdout and
exits as ``rocky run`` does: 0 every table copied, non-zero (2) with the JSON still on stdout
for a partial success, 1 with a line on stderr when nothing could run. Any other subcommand is
one line naming the real Rocky, exit 1.

Backend: ``ROCKY_OPERATOR_BACKEND`` = ``cluster`` | ``local``; unset, the cluster when
``ROCKY_OPERATOR_NAMESPACE`` (or ``--namespace``) is set or the command runs in a pod, else
local. docs/rocky-compat.md has the rest.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from rocky_operator import __version__

PROG = "rocky-operator-rocky"
#: The Rocky release whose ``rocky run`` contract (flags, RunOutput with typed failure_kind,
#: partial-success exit) this command implements. rocky-sdk's version gate reads the first
#: token after "rocky"; the rest says honestly what answers.
CONTRACT_VERSION = "1.35.0"
ROCKY_URL = "https://github.com/rocky-data/rocky"
DEFAULT_TIMEOUT = 86400.0
#: Global flags that take a value (as Rocky spells them) and their short forms.
_GLOBAL_VALUES = {
    "--config": "config",
    "-c": "config",
    "--state-path": "state_path",
    "--state-namespace": "state_namespace",
    "--output": "output",
    "-o": "output",
    "--namespace": "namespace",
    "--cache-ttl": "cache_ttl",
}


class UsageError(ValueError):
    """A command line this command does not serve (one line, exit 1)."""


def version_line() -> str:
    return (
        f"rocky {CONTRACT_VERSION} (rocky-operator {__version__}: not the Rocky engine; it "
        f"implements the `rocky run` replication contract of Rocky {CONTRACT_VERSION} with one "
        "pod per table)"
    )


def split_globals(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Global flags (anywhere before or after the subcommand) and the remaining words."""
    found: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        flag, eq, inline = word.partition("=")
        if (flag in _GLOBAL_VALUES and flag.startswith("--")) or word in _GLOBAL_VALUES:
            if eq:
                value = inline
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise UsageError(f"{flag} needs a value")
            found[_GLOBAL_VALUES[flag]] = value
        else:
            rest.append(word)
        i += 1
    return found, rest


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"{PROG} run", add_help=False, exit_on_error=False)
    parser.add_argument("--filter", default="")
    parser.add_argument("--pipeline")
    parser.add_argument("--parallel", type=int)
    parser.add_argument("--fail-fast", action="store_true")
    parser.add_argument("--resume-latest", action="store_true")
    parser.add_argument("--resume", metavar="RUN_ID")
    return parser


def parse_run(words: Sequence[str]) -> argparse.Namespace:
    try:
        args, unknown = _run_parser().parse_known_args(list(words))
    except argparse.ArgumentError as exc:
        raise UsageError(f"run: {exc}") from None
    if unknown:
        flag = next((w for w in unknown if w.startswith("-")), unknown[0])
        raise UsageError(
            f"`rocky run {flag}` is not implemented by rocky-operator (it implements run "
            f"--filter/--pipeline/--parallel/--fail-fast/--resume-latest/--resume); use the "
            f"real Rocky for it: {ROCKY_URL}"
        )
    if args.resume and args.resume_latest:
        raise UsageError("run: --resume and --resume-latest exclude each other")
    if args.parallel is not None and args.parallel < 1:
        raise UsageError("run: --parallel must be at least 1")
    return args


def choose_backend(env: Mapping[str, str], namespace_flag: str | None) -> str:
    chosen = env.get("ROCKY_OPERATOR_BACKEND", "").strip().lower()
    if chosen in ("cluster", "local"):
        return chosen
    if chosen:
        raise UsageError(f"ROCKY_OPERATOR_BACKEND={chosen!r}: expected cluster or local")
    if namespace_flag or env.get("ROCKY_OPERATOR_NAMESPACE") or env.get("KUBERNETES_SERVICE_HOST"):
        return "cluster"
    return "local"


def cluster_namespace(env: Mapping[str, str], namespace_flag: str | None) -> str:
    if namespace_flag:
        return namespace_flag
    if env.get("ROCKY_OPERATOR_NAMESPACE"):
        return env["ROCKY_OPERATOR_NAMESPACE"]
    in_pod = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if in_pod.is_file():
        return in_pod.read_text().strip()
    return "default"


def _seconds(env: Mapping[str, str], name: str, default: float = 0.0) -> float:
    raw = env.get(name) or ""
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r}: expected a number of seconds") from None
    if value < 0:
        raise UsageError(f"{name}={raw!r}: expected a number of seconds >= 0")
    return value


def _run(globals_: dict[str, str], words: Sequence[str], stdout: TextIO, stderr: TextIO) -> int:
    from rocky_operator.compat import backends, state
    from rocky_operator.compat.rocky_toml import load_overlay, translate_file
    from rocky_operator.compat.toml_reader import DEFAULT_SECRET, Options

    env = os.environ
    args = parse_run(words)
    if globals_.get("output", "json") not in ("json", "table", "md"):
        raise UsageError(f"--output {globals_['output']!r}: expected json or table")
    config = Path(globals_.get("config", "rocky.toml"))
    translation = translate_file(
        config,
        env,
        Options(
            pipeline=args.pipeline,
            filter=args.filter or None,
            secret_name=env.get("ROCKY_OPERATOR_SECRET") or DEFAULT_SECRET,
            duckdb_storage_version=env.get("ROCKY_OPERATOR_DUCKDB_STORAGE_VERSION") or None,
        ),
    )
    if env.get("ROCKY_OPERATOR_OVERLAY"):
        translation = load_overlay(translation, env["ROCKY_OPERATOR_OVERLAY"])
    for line in translation.warnings:
        stderr.write(f"{PROG}: {line}\n")
    directory = state.state_dir(config, globals_.get("state_path"), globals_.get("state_namespace"))
    resume = None
    if args.resume_latest:
        resume = state.latest(directory, translation.pipeline)
    elif args.resume:
        resume = state.find(directory, translation.pipeline, args.resume)
    elif env.get("ROCKY_OPERATOR_AUTO_RESUME_SECONDS"):
        within = _seconds(env, "ROCKY_OPERATOR_AUTO_RESUME_SECONDS")
        resume = state.recent_failure(
            directory, translation.pipeline, args.filter, time.time(), within
        )
        if resume is not None:
            stderr.write(
                f"{PROG}: resuming {resume.name} ({resume.status}, "
                "ROCKY_OPERATOR_AUTO_RESUME_SECONDS): only its failed tables run\n"
            )
    request = backends.RunRequest(
        translation, directory, resume, concurrency=args.parallel, fail_fast=args.fail_fast
    )
    backend = choose_backend(env, globals_.get("namespace"))
    if resume is not None and resume.backend != backend:
        raise UsageError(
            f"resume: {resume.name} ran on the {resume.backend} backend, not {backend}"
        )
    namespace = None
    if backend == "cluster":
        namespace = cluster_namespace(env, globals_.get("namespace"))
        timeout = _seconds(env, "ROCKY_OPERATOR_TIMEOUT", DEFAULT_TIMEOUT)
        code, output, name = backends.run_cluster(
            request, namespace=namespace, timeout=timeout, stderr=stderr
        )
    else:
        code, output, name = backends.run_local(request, stderr=stderr)
    if output is None:
        return code or 1
    record = state.RunRecord(
        name,
        translation.pipeline,
        backend,
        namespace,
        str(output.get("status")),
        args.filter,
        time.time(),
    )
    state.save(directory, record, output)
    import json

    stdout.write(json.dumps(output, indent=2, ensure_ascii=False) + "\n")
    stdout.flush()
    return code


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    words = list(sys.argv[1:] if argv is None else argv)
    if "--version" in words or "-V" in words:
        out.write(version_line() + "\n")
        return 0
    from rocky_operator.compat.backends import BackendError
    from rocky_operator.compat.state import StateError
    from rocky_operator.compat.toml_reader import RockyTomlError

    try:
        globals_, rest = split_globals(words)
        if not rest or rest[0] in ("-h", "--help", "help"):
            out.write(
                f"usage: {PROG} [--config rocky.toml] [--state-path DIR] "
                "[--output json] run [--filter K=V] [--pipeline P] [--parallel N] "
                "[--resume-latest]\n(docs/rocky-compat.md)\n"
            )
            return 0 if rest else 1
        command = rest[0]
        if command != "run":
            raise UsageError(
                f"`rocky {command}` is not implemented by rocky-operator, which implements "
                f"`rocky run` for replication pipelines; use the real Rocky for it: {ROCKY_URL}"
            )
        return _run(globals_, rest[1:], out, err)
    except (UsageError, RockyTomlError, StateError, BackendError) as exc:
        err.write(f"{PROG}: {exc}\n")
        err.flush()
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
