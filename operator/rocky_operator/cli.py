"""The ``rocky-operator`` command: one subcommand per module in ``rocky_operator.commands``.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int`` (the process exit code). Modules are imported only when their
subcommand runs, so ``rocky-operator local`` does not import kopf.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: subcommand -> module under rocky_operator.commands
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "local": "local",
    "run": "run",
    "crd": "crd",
    "output": "output",
    "from-rocky-toml": "from_rocky_toml",
}

COMMAND_HELP: dict[str, str] = {
    "demo": "build a demo DuckDB warehouse and run examples/demo/rockyrun.yaml on it locally",
    "local": "run a RockyRun manifest on this machine, one runner subprocess per table",
    "run": "start the Kubernetes controller",
    "crd": "print the RockyRun CustomResourceDefinition (YAML)",
    "output": "print the complete RunOutput of a RockyRun; exit 0 / 2 / 1 like rocky run",
    "from-rocky-toml": "print the RockyRun of a replication pipeline of a rocky.toml",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rocky-operator",
        description="Rocky's per-table error containment on Kubernetes, one pod per table.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        sub.add_parser(name, help=COMMAND_HELP[name], description=COMMAND_HELP[name])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse just the command name first, then let its module add its own arguments.
    if not args_list or args_list[0] not in COMMANDS:
        parser.parse_args(args_list)  # prints usage / error and exits
        return 2
    name = args_list[0]
    module = importlib.import_module(f"rocky_operator.commands.{COMMANDS[name]}")
    sub_parser = argparse.ArgumentParser(
        prog=f"rocky-operator {name}", description=COMMAND_HELP[name]
    )
    module.add_arguments(sub_parser)
    args = sub_parser.parse_args(args_list[1:])
    code: int = module.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
