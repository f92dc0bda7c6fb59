"""``rocky-operator crd``: print the RockyRun CustomResourceDefinition."""

from __future__ import annotations

import argparse
import sys

HELP = "print the RockyRun CustomResourceDefinition (YAML)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: the CRD is fully determined by the models."""


def run(args: argparse.Namespace) -> int:
    from rocky_operator.api.crd import render_crd_yaml

    sys.stdout.write(render_crd_yaml())
    return 0
