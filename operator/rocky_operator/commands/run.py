"""``rocky-operator run``: start the Kubernetes controller (kopf)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from rocky_operator.logic.leader import LeaseTimings
from rocky_operator.logic.pod_manifest import DEFAULT_RUNNER_IMAGE, RunnerDefaults
from rocky_operator.logic.runner_policy import (
    DEFAULT_ENV_SOURCES,
    DEFAULT_MOUNT_PATHS,
    ENV_SOURCES,
    SAFE_VOLUME_TYPES,
    RunnerPolicy,
)

if TYPE_CHECKING:
    from kubernetes_asyncio.client import Configuration

    from rocky_operator.kube.runtime import Runtime

HELP = "start the Kubernetes controller"
#: Exit code of a leader that lost its Lease (the pod restarts as a standby).
LOST_LEADERSHIP_EXIT = 3


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
    add_leader_election_arguments(parser)
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


def add_leader_election_arguments(parser: argparse.ArgumentParser) -> None:
    """Two or more replicas: only the holder of one Lease runs kopf (kube/leader.py)."""
    defaults = LeaseTimings()
    group = parser.add_argument_group("leader election (several replicas, one acting)")
    group.add_argument(
        "--leader-election-lease",
        default=os.environ.get("ROCKY_LEADER_ELECTION_LEASE") or None,
        metavar="NAME",
        help="coordination.k8s.io Lease that decides which replica acts; unset: no election, "
        "this process acts at once (exactly one replica!) (env ROCKY_LEADER_ELECTION_LEASE)",
    )
    group.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE") or None,
        help="namespace of the Lease (default $POD_NAMESPACE, else the first --namespace)",
    )
    group.add_argument(
        "--leader-election-identity",
        default=None,
        help="this replica's holder identity (default: $POD_NAME or the host name, "
        "plus a random suffix, so a restarted process never mistakes the old lease for its own)",
    )
    group.add_argument(
        "--lease-duration-seconds",
        type=float,
        default=defaults.lease_duration,
        help="a standby takes over once the lease has not been renewed for this long "
        f"(default {defaults.lease_duration:g})",
    )
    group.add_argument(
        "--renew-deadline-seconds",
        type=float,
        default=defaults.renew_deadline,
        help="the leader exits when no renewal succeeded for this long; must be below the "
        f"lease duration (default {defaults.renew_deadline:g})",
    )
    group.add_argument(
        "--retry-period-seconds",
        type=float,
        default=defaults.retry_period,
        help=f"renewals and takeover attempts this often (default {defaults.retry_period:g})",
    )


def lease_timings(args: argparse.Namespace) -> LeaseTimings:
    return LeaseTimings(
        lease_duration=args.lease_duration_seconds,
        renew_deadline=args.renew_deadline_seconds,
        retry_period=args.retry_period_seconds,
    )


def leader_identity(args: argparse.Namespace) -> str:
    if args.leader_election_identity:
        return str(args.leader_election_identity)
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}-{secrets.token_hex(4)}"


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
    from rocky_operator.kube.kopf_import import import_kopf

    import_kopf()  # before the handlers import it: without the synchronous client
    # Importing these modules registers their kopf handlers (RockyRun, RockySchedule).
    import rocky_operator.handlers
    import rocky_operator.schedule_handlers  # noqa: F401

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(operate_process(args))


def build_runtime(args: argparse.Namespace, configuration: Configuration) -> Runtime:
    from rocky_operator.kube.controller import ControllerSettings
    from rocky_operator.kube.runtime import Runtime

    return Runtime(
        configuration=configuration,
        namespaces=tuple(args.namespace),
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


async def operate_process(args: argparse.Namespace) -> int:
    """Load the one API configuration (in this event loop: the library's loaders and exec
    plugins are asynchronous), then run kopf, behind the Lease when there is one."""
    import kopf

    from rocky_operator.kube.configuration import ConfigurationError, load_configuration

    patterns = [n for n in args.namespace if set(n) & set("*?[]!,")]
    if patterns:
        print(
            "rocky-operator run: --namespace takes a namespace name, not a pattern: "
            f"{patterns[0]!r}",
            file=sys.stderr,
        )
        return 1
    try:
        configuration = await load_configuration(args.context)
    except ConfigurationError as exc:
        print(f"rocky-operator run: {exc}", file=sys.stderr)
        return 1
    runtime = build_runtime(args, configuration)
    namespaces = list(args.namespace)

    def operate() -> Coroutine[Any, Any, None]:
        # standalone: no kopf peering; with --leader-election-lease, the Lease is the guard.
        return kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            memo=kopf.Memo(runtime=runtime),
        )

    if not args.leader_election_lease:
        await operate()
        return 0
    lease_namespace = args.leader_election_namespace or (namespaces[0] if namespaces else None)
    if not lease_namespace:
        print(
            "rocky-operator run: --leader-election-lease needs --leader-election-namespace "
            "(or $POD_NAMESPACE, or a --namespace)",
            file=sys.stderr,
        )
        return 1
    try:
        timings = lease_timings(args)
    except ValueError as exc:
        print(f"rocky-operator run: {exc}", file=sys.stderr)
        return 1
    return await lead_then_operate(
        runtime,
        operate,
        lease_namespace,
        args.leader_election_lease,
        leader_identity(args),
        timings,
    )


async def lead_then_operate(
    runtime: Runtime,
    operate: Callable[[], Coroutine[Any, Any, None]],
    namespace: str,
    name: str,
    identity: str,
    timings: LeaseTimings,
) -> int:
    """Serve /healthz as a standby, wait for the Lease, then run kopf while renewing it.

    Only the leader runs kopf, so a standby processes no event, starts no worker and no
    schedule daemon. A leader that cannot renew within the renew deadline (or finds the
    Lease taken) exits at once, without kopf's graceful shutdown, which could still act:
    the deadline is below the lease duration, so it is gone before a standby may take over.
    On a graceful stop (SIGTERM, handled by kopf) the Lease is released for a standby."""
    from rocky_operator.kube.leader import LeaderElector

    elector = LeaderElector(
        runtime.client, namespace, name, identity, timings, on_leading=runtime.metrics.leader.set
    )
    await runtime.start()
    await elector.acquire()

    def stand_down(reason: str) -> None:
        logging.getLogger(__name__).critical(
            "leader election: %s stands down: %s; exiting", identity, reason
        )
        logging.shutdown()
        os._exit(LOST_LEADERSHIP_EXIT)

    # Also from a thread: a blocked event loop must not keep an expired leader acting.
    elector.start_watchdog(stand_down)
    operator = asyncio.ensure_future(operate())
    holder = asyncio.ensure_future(elector.hold())
    await asyncio.wait({operator, holder}, return_when=asyncio.FIRST_COMPLETED)
    if holder.done():
        stand_down(holder.result())
    holder.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await holder
    await elector.release()
    await runtime.client.close()
    operator.result()
    return 0
