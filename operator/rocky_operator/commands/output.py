"""``rocky-operator output NAME``: print a run's complete RunOutput; exit like ``rocky run``.

The complete output lives in ConfigMaps owned by the run (``status.output``); the
status itself holds a bounded copy. Exit code: 0 success, 2 partial failure, 1
failure; 1 as well (with a message on stderr) when the run has not finished.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

HELP = "print the complete RunOutput of a RockyRun; exit 0 / 2 / 1 like rocky run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="RockyRun name")
    parser.add_argument("--namespace", "-n", default=None, help="namespace (default: context's)")
    parser.add_argument("--context", default=None, help="kubeconfig context")
    parser.add_argument(
        "--wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wait up to SECONDS for the run to finish (default: fail if it has not)",
    )


async def fetch_output(configuration: Any, namespace: str, name: str) -> dict[str, Any] | None:
    """The complete RunOutput of a finished run, or None when there is none (yet), through
    the operator's own client (``configuration``: a ``kubernetes_asyncio`` one)."""
    from rocky_operator.kube.client import KubeClient
    from rocky_operator.kube.store import RunStore

    client = KubeClient(configuration, connections=4)
    try:
        return await RunStore(client, namespace, name, "").load_output()
    finally:
        await client.close()


def _default_namespace(context: str | None) -> str:
    from kubernetes import config as k8s_config

    config_file = os.environ.get("KUBECONFIG") or None
    try:
        contexts, active = k8s_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=config_file
        )
        if context:
            active = next(c for c in contexts if c["name"] == context)
        return str(active.get("context", {}).get("namespace") or "default")
    except (k8s_config.ConfigException, StopIteration, OSError):
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as fh:
                return fh.read().strip()
        except OSError:
            return "default"


def run(args: argparse.Namespace) -> int:
    """Read the run through the Python client, the same path consumers use."""
    from rocky_operator.client.cluster import ClusterClient, is_complete, read_complete_output
    from rocky_operator.client.result import RockyClientError, exit_code_of
    from rocky_operator.kube.configuration import ConfigurationError

    namespace = args.namespace or _default_namespace(args.context)
    try:
        with ClusterClient(namespace, context=args.context) as client:
            if args.wait is not None:
                outcome = client.wait(args.name, timeout=args.wait)
                doc = outcome.output
            else:
                obj = client.get(args.name)
                if not is_complete(obj):
                    phase = (obj.get("status") or {}).get("phase") or "Pending"
                    print(
                        f"rocky-operator output: RockyRun {namespace}/{args.name} has not "
                        f"finished (phase {phase}); use --wait SECONDS to wait for it",
                        file=sys.stderr,
                    )
                    return 1
                doc = read_complete_output(client.api_client, namespace, obj)
    except (RockyClientError, ConfigurationError) as exc:
        print(f"rocky-operator output: {exc}", file=sys.stderr)
        return 1
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return exit_code_of(doc)
