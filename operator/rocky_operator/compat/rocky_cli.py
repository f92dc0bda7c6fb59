"""``rocky-operator-rocky``: the part of Rocky's CLI that rocky-sdk / dagster-rocky call.

``RockyResource(config_path="rocky.toml", binary_path="rocky-operator-rocky")`` runs, per
call, ``rocky-operator-rocky --config rocky.toml [--state-path P | --state-namespace N]
--output json run --filter K=V [--pipeline P] [--parallel N]`` (``resume_run()``: ``run
--resume-latest`` / ``run --resume RUN_ID``). This command translates the pipeline
(:mod:`.rocky_toml`), runs it on the cluster or the local executor (:mod:`.backends`), prints
Rocky's RunOutput JSON on stdout and exits as ``rocky run`` does: 0 every table copied, 2 with
the JSON on stdout for a partial success, 1 (JSON on stdout too) when every table failed, 1 with
a line on stderr when nothing could run, 130 when interrupted. Any other subcommand or flag of
Rocky's is one line naming the real Rocky, exit 1.

Backend: ``ROCKY_OPERATOR_BACKEND`` = ``cluster`` | ``local``; unset, the cluster when
``ROCKY_OPERATOR_NAMESPACE`` (or ``--namespace``) is set or the command runs in a pod, else
local. docs/rocky-compat.md has the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from rocky_operator import __version__

PROG = "rocky-operator-rocky"
#: The Rocky release whose ``rocky run`` contract (flags, RunOutput with typed failure_kind,
#: partial-success exit) this command implements. rocky-sdk's version gate reads the first
#: token after "rocky"; the rest says honestly what answers.
CONTRACT_VERSION = "1.35.0"
ROCKY_URL = "https://github.com/rocky-data/rocky"
DEFAULT_TIMEOUT = 86400.0
EXIT_INTERRUPTED = 130
#: Global flags that take a value (as Rocky spells them) and their short forms;
#: ``--namespace`` is this command's own (the cluster namespace).
_GLOBAL_VALUES = {
    "--config": "config",
    "-c": "config",
    "--state-path": "state_path",
    "--state-namespace": "state_namespace",
    "--output": "output",
    "-o": "output",
    "--cache-ttl": "cache_ttl",
    "--principal": "principal",
    "--namespace": "namespace",
}
#: ``rocky run`` flags of Rocky that this command does not implement (one line, exit 1).
_ROCKY_RUN_FLAGS = [
    "--model",
    "--governance-override",
    "--models",
    "--all",
    "--shadow",
    "--shadow-suffix",
    "--shadow-schema",
    "--branch",
    "--partition",
    "--from",
    "--to",
    "--latest",
    "--missing",
    "--lookback",
    "--dag",
    "--idempotency-key",
    "--env",
    "--watch",
    "--defer",
    "--defer-to",
    "--skip-unchanged",
    "--force-rebuild",
    "--no-reuse",
    "--no-prune",
    "--var",
]


class UsageError(ValueError):
    """A command line this command does not serve (one line, exit 1)."""


def version_line() -> str:
    return (
        f"rocky {CONTRACT_VERSION} (rocky-operator {__version__}: not the Rocky engine; it "
        f"implements the `rocky run` replication contract of Rocky {CONTRACT_VERSION} with one "
        "pod per table)"
    )


def split_globals(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Global flags (before or after the subcommand) and the remaining words."""
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
    parser = argparse.ArgumentParser(
        prog=f"{PROG} run", add_help=False, exit_on_error=False, allow_abbrev=False
    )
    parser.add_argument("--filter", default="")
    parser.add_argument("--pipeline")
    parser.add_argument("--parallel", type=int)
    parser.add_argument("--resume-latest", action="store_true")
    parser.add_argument("--resume", metavar="RUN_ID")
    return parser


def parse_run(words: Sequence[str]) -> argparse.Namespace:
    try:
        args, unknown = _run_parser().parse_known_args(list(words))
    except argparse.ArgumentError as exc:
        raise UsageError(f"run: {exc}") from None
    if unknown:
        word = next((w for w in unknown if w.startswith("-")), unknown[0])
        flag = word.partition("=")[0]
        what = "a flag of rocky run" if flag in _ROCKY_RUN_FLAGS else "a rocky run flag it knows"
        raise UsageError(
            f"`rocky run {flag}` is not implemented by rocky-operator ({what}; it implements "
            f"--filter/--pipeline/--parallel/--resume-latest/--resume); use the real Rocky for "
            f"it: {ROCKY_URL}"
        )
    if args.resume and args.resume_latest:
        raise UsageError("run: --resume and --resume-latest exclude each other")
    if args.parallel is not None and args.parallel < 0:
        raise UsageError("run: --parallel must be a number >= 0")
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


def output_format(globals_: Mapping[str, str], stdout: TextIO) -> str:
    """Rocky's rule: ``--output`` wins; unset, ``table`` on a terminal and ``json`` otherwise."""
    chosen = globals_.get("output")
    if chosen is None:
        return "table" if stdout.isatty() else "json"
    if chosen not in ("json", "table", "md"):
        raise UsageError(f"--output {chosen!r}: expected json or table")
    return "json" if chosen == "json" else "table"


def _table(output: Mapping[str, Any]) -> str:
    lines = [
        f"rocky run ({PROG}): {output.get('status')}: {output.get('tables_copied', 0)} copied, "
        f"{output.get('tables_failed', 0)} failed"
    ]
    for err in output.get("errors") or []:
        lines.append(f"  {err['failure_kind']:<17} {'/'.join(err['asset_key'])}: {err['error']}")
    return "\n".join(lines) + "\n"


def _run(globals_: dict[str, str], words: Sequence[str], stdout: TextIO, stderr: TextIO) -> int:
    from rocky_operator.compat import backends, state
    from rocky_operator.compat.resume import choose_resume
    from rocky_operator.compat.rocky_toml import load_overlay, translate_file
    from rocky_operator.compat.toml_reader import DEFAULT_SECRET, Options

    env = os.environ
    args = parse_run(words)
    if env.get("ROCKY_IDEMPOTENCY_KEY"):  # Rocky reads it as --idempotency-key
        raise UsageError(
            "ROCKY_IDEMPOTENCY_KEY is set: Rocky reads it as `rocky run --idempotency-key`, "
            f"which rocky-operator does not implement (unset it, or use the real Rocky: "
            f"{ROCKY_URL})"
        )
    fmt = output_format(globals_, stdout)
    config = Path(globals_.get("config", "rocky.toml"))
    state_ns = None if globals_.get("state_path") else globals_.get("state_namespace")
    if state_ns:
        state.check_namespace(state_ns)
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
    if args.parallel is not None:
        stderr.write(
            f"{PROG}: --parallel {args.parallel}: as in Rocky, it does not bound a replication "
            f"pipeline's table fan-out; [pipeline.{translation.pipeline}.execution] concurrency "
            "does\n"
        )
    directory = state.state_dir(config, globals_.get("state_path"), globals_.get("state_namespace"))
    backend = choose_backend(env, globals_.get("namespace"))
    auto = _seconds(env, "ROCKY_OPERATOR_AUTO_RESUME_SECONDS") or None
    client = None
    namespace = None
    try:
        if backend == "cluster":
            namespace = cluster_namespace(env, globals_.get("namespace"))
            client = _cluster_client(namespace)
        resume = choose_resume(
            args, translation.pipeline, directory, client, state_ns, auto, time.time(), stderr
        )
        request = backends.RunRequest(translation, directory, resume, args.filter, state_ns)
        if client is not None:
            timeout = _seconds(env, "ROCKY_OPERATOR_TIMEOUT", DEFAULT_TIMEOUT)
            code, output, name = backends.run_cluster(
                request, client, timeout=timeout, stderr=stderr
            )
        else:
            code, output, name = backends.run_local(request, stderr=stderr)
    finally:
        if client is not None:
            client.close()
    if output is None:
        return code or 1
    if resume is not None and output.get("resumed_from"):
        output["resumed_from"] = resume.name  # Rocky's: the run id resumed (not a file)
    record = state.RunRecord(
        name,
        translation.pipeline,
        backend,
        namespace,
        str(output.get("status")),
        args.filter,
        time.time(),
        journal=str(state.journal_path(directory, name)) if client is None else None,
    )
    state.save(directory, record, output)
    if output.get("interrupted"):
        code = EXIT_INTERRUPTED
    stdout.write(
        json.dumps(output, indent=2, ensure_ascii=False) + "\n" if fmt == "json" else _table(output)
    )
    stdout.flush()
    if code == 2:  # Rocky's PartialFailure line
        stderr.write(
            f"{PROG}: {output.get('tables_failed', 0)} table(s) failed (run_id: {name}, use "
            f"--resume {name} to retry)\n"
        )
    return code


def _cluster_client(namespace: str) -> Any:
    from rocky_operator.client.cluster import ClusterClient
    from rocky_operator.compat.backends import BackendError

    try:
        return ClusterClient(namespace)
    except Exception as exc:  # a missing or unusable kubeconfig: one line
        raise BackendError(f"cluster: {exc}") from None


def _sigterm_as_sigint(_sig: int, _frame: object) -> None:
    """SIGTERM (a Dagster run stopped, a pod deleted) stops the run like Ctrl-C."""
    signal.raise_signal(signal.SIGINT)


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    words = list(sys.argv[1:] if argv is None else argv)
    if "--version" in words or "-V" in words:
        out.write(version_line() + "\n")
        return 0
    from rocky_operator.compat.backends import BackendError, RunInterruptedError
    from rocky_operator.compat.state import StateError
    from rocky_operator.compat.toml_reader import RockyTomlError

    try:
        globals_, rest = split_globals(words)
        if not rest or rest[0] in ("-h", "--help", "help"):
            out.write(
                f"usage: {PROG} [--config rocky.toml] [--state-path DIR | --state-namespace KEY] "
                "[--output json] run [--filter K=V] [--pipeline P] [--parallel N] "
                "[--resume-latest | --resume RUN_ID]\n(docs/rocky-compat.md)\n"
            )
            return 0 if rest else 1
        command = rest[0]
        if command != "run":
            raise UsageError(
                f"`rocky {command}` is not implemented by rocky-operator, which implements "
                f"`rocky run` for replication pipelines; use the real Rocky for it: {ROCKY_URL}"
            )
        if argv is None:
            signal.signal(signal.SIGTERM, _sigterm_as_sigint)
        return _run(globals_, rest[1:], out, err)
    except (UsageError, RockyTomlError, StateError, BackendError) as exc:
        err.write(f"{PROG}: {exc}\n")
        err.flush()
        return 1
    except (RunInterruptedError, KeyboardInterrupt) as exc:
        err.write(f"{PROG}: {exc or 'interrupted'}\n")
        err.flush()
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
