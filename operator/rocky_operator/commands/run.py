"""``rocky-operator run``: start the Kubernetes controller (kopf)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from rocky_operator.logic.pod_manifest import DEFAULT_RUNNER_IMAGE, RunnerDefaults
from rocky_operator.logic.runner_policy import (
    DEFAULT_ENV_SOURCES,
    DEFAULT_MOUNT_PATHS,
    ENV_SOURCES,
    SAFE_VOLUME_TYPES,
    RunnerPolicy,
)

HELP = "start the Kubernetes controller"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="watch this namespace (repeatable); default: all namespaces",
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=8080,
        help="port of /metrics and /healthz (default 8080; 0 disables)",
    )
    parser.add_argument("--metrics-host", default="0.0.0.0", help="address to serve metrics on")
    parser.add_argument(
        "--keep-failed-pods",
        action="store_true",
        help="keep the pods of failed attempts (results are recorded anyway)",
    )
    parser.add_argument(
        "--stuck-grace-seconds",
        type=float,
        default=120.0,
        help="how long a pod may wait on an image pull or missing Secret",
    )
    parser.add_argument(
        "--status-interval-seconds",
        type=float,
        default=5.0,
        help="at most one status write per run per interval, except on transitions",
    )
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=1.0,
        help="coalesce pod events for this long before a pass",
    )
    parser.add_argument(
        "--runner-image",
        default=os.environ.get("ROCKY_RUNNER_IMAGE") or DEFAULT_RUNNER_IMAGE,
        help="runner image for runs whose spec.runner.image is unset "
        f"(env ROCKY_RUNNER_IMAGE; default {DEFAULT_RUNNER_IMAGE})",
    )
    parser.add_argument(
        "--runner-service-account",
        default=os.environ.get("ROCKY_RUNNER_SERVICE_ACCOUNT") or None,
        help="ServiceAccount of runner pods whose spec.runner.serviceAccountName is unset "
        "(env ROCKY_RUNNER_SERVICE_ACCOUNT; default: the namespace's default)",
    )
    parser.add_argument(
        "--runner-image-pull-secrets",
        type=default_list,
        default=_list("ROCKY_RUNNER_IMAGE_PULL_SECRETS"),
        help="comma-separated Secrets for pulling the runner image, set on every runner pod "
        "(env ROCKY_RUNNER_IMAGE_PULL_SECRETS; the chart sets them from imagePullSecrets)",
    )
    add_policy_arguments(parser)
    parser.add_argument("--context", default=None, help="kubeconfig context (outside a cluster)")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def _list(env_name: str, default: tuple[str, ...] = ()) -> list[str]:
    raw = os.environ.get(env_name)
    return default_list(raw) if raw is not None else list(default)


def default_list(raw: str) -> list[str]:
    """A comma-separated option value as a list (blank items dropped)."""
    return [item.strip() for item in raw.split(",") if item.strip()]


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """The runner policy (logic/runner_policy.py): what a RockyRun may choose about its
    pods. Each list is comma-separated; the chart sets them from ``runnerPolicy``."""
    group = parser.add_argument_group("runner policy (set by the cluster admin)")
    group.add_argument(
        "--runner-allowed-images",
        type=default_list,
        default=_list("ROCKY_RUNNER_ALLOWED_IMAGES"),
        help="images a run may name besides --runner-image: repositories (any tag), "
        "prefixes ending in '/', exact images with @sha256:, or '*' "
        "(env ROCKY_RUNNER_ALLOWED_IMAGES; default: none)",
    )
    group.add_argument(
        "--runner-allowed-service-accounts",
        type=default_list,
        default=_list("ROCKY_RUNNER_ALLOWED_SERVICE_ACCOUNTS"),
        help="ServiceAccounts a run may name besides --runner-service-account, or '*' "
        "(env ROCKY_RUNNER_ALLOWED_SERVICE_ACCOUNTS; default: none)",
    )
    group.add_argument(
        "--runner-allow-command-override",
        action="store_true",
        default=os.environ.get("ROCKY_RUNNER_ALLOW_COMMAND_OVERRIDE", "").lower() == "true",
        help="let runs replace the runner command and set code-changing variables "
        "(PYTHON*, LD_*, PATH) (env ROCKY_RUNNER_ALLOW_COMMAND_OVERRIDE=true)",
    )
    group.add_argument(
        "--runner-allowed-volume-types",
        type=default_list,
        default=_list("ROCKY_RUNNER_ALLOWED_VOLUME_TYPES", SAFE_VOLUME_TYPES),
        help="volume sources a run may declare "
        f"(env ROCKY_RUNNER_ALLOWED_VOLUME_TYPES; default {','.join(SAFE_VOLUME_TYPES)})",
    )
    group.add_argument(
        "--runner-allowed-mount-paths",
        type=default_list,
        default=_list("ROCKY_RUNNER_ALLOWED_MOUNT_PATHS", DEFAULT_MOUNT_PATHS),
        help="roots under which a run may mount volumes, or '*' "
        f"(env ROCKY_RUNNER_ALLOWED_MOUNT_PATHS; default {','.join(DEFAULT_MOUNT_PATHS)})",
    )
    group.add_argument(
        "--runner-allowed-env-sources",
        type=default_list,
        default=_list("ROCKY_RUNNER_ALLOWED_ENV_SOURCES", DEFAULT_ENV_SOURCES),
        help=f"sources of extra runner variables, of {','.join(ENV_SOURCES)} "
        f"(env ROCKY_RUNNER_ALLOWED_ENV_SOURCES; default {','.join(DEFAULT_ENV_SOURCES)})",
    )


def runner_defaults(args: argparse.Namespace) -> RunnerDefaults:
    """What runner pods get where their run's ``spec.runner`` says nothing."""
    return RunnerDefaults(
        image=args.runner_image,
        service_account_name=args.runner_service_account,
        image_pull_secrets=tuple(dict.fromkeys(args.runner_image_pull_secrets)),
    )


def runner_policy(args: argparse.Namespace) -> RunnerPolicy:
    return RunnerPolicy(
        images=tuple(args.runner_allowed_images),
        service_accounts=tuple(args.runner_allowed_service_accounts),
        allow_command_override=bool(args.runner_allow_command_override),
        volume_types=tuple(args.runner_allowed_volume_types),
        mount_paths=tuple(args.runner_allowed_mount_paths),
        env_sources=tuple(args.runner_allowed_env_sources),
    )


def run(args: argparse.Namespace) -> int:
    import kopf

    # Importing these modules registers their kopf handlers (RockyRun, RockySchedule).
    import rocky_operator.handlers
    import rocky_operator.schedule_handlers  # noqa: F401
    from rocky_operator.kube.client import ConfigurationError, load_configuration
    from rocky_operator.kube.controller import ControllerSettings
    from rocky_operator.kube.runtime import Runtime

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        configuration = load_configuration(args.context)
    except ConfigurationError as exc:
        print(f"rocky-operator run: {exc}", file=sys.stderr)
        return 1
    runtime = Runtime(
        configuration=configuration,
        settings=ControllerSettings(
            keep_failed_pods=args.keep_failed_pods,
            stuck_grace_seconds=args.stuck_grace_seconds,
            status_interval_seconds=args.status_interval_seconds,
            batch_seconds=args.batch_seconds,
            runner_defaults=runner_defaults(args),
            runner_policy=runner_policy(args),
        ),
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port or None,
    )
    namespaces = list(args.namespace)
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            memo=kopf.Memo(runtime=runtime),
        )
    )
    return 0
