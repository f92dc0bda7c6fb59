"""The controller's knobs and the discovery callable it is given."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.logic.pod_manifest import RunnerDefaults
from rocky_operator.logic.runner_policy import RunnerPolicy

#: Discovery: (spec, credentials by env name) -> a ``rocky_runner.discovery.Discovery``
#: (tables and exclusions), or a bare list of discovered tables (DiscoveredTable-like).
Discover = Callable[[RockyRunSpec, Mapping[str, str]], Any]


@dataclass(frozen=True)
class ControllerSettings:
    """Knobs of the controller; the defaults suit a cluster, tests shrink the times."""

    batch_seconds: float = 1.0
    """After a pod event, wait this long for more before a pass (coalescing)."""
    status_interval_seconds: float = 5.0
    """At most one status write per run per interval, except on transitions."""
    resync_seconds: float = 30.0
    """A pass at least this often, even without events (stuck pods, missed events)."""
    keep_failed_pods: bool = False
    """Keep the pods of failed attempts for debugging (their results are recorded)."""
    stuck_grace_seconds: float = 120.0
    """How long a pod may wait on an image pull or a missing Secret before it fails."""
    discovery_in_pod: bool = True
    """Discover tables in a pod of the run (the operator reads no Secret, loads no
    connector). False: in this process with the injected ``discover`` (the in-process
    test API has no kubelet to run the pod)."""
    discovery_timeout_seconds: float = 300.0
    """Upper bound of table discovery; beyond it the run fails (exit code 1)."""
    create_parallelism: int = 16
    """Pod creations in flight at once."""
    error_backoff_seconds: float = 5.0
    """Delay before a pass is retried after an API error."""
    runner_defaults: RunnerDefaults = field(default_factory=RunnerDefaults)
    """Runner image and ServiceAccount for runs whose spec.runner names none."""
    runner_policy: RunnerPolicy = field(default_factory=RunnerPolicy)
    """What a RockyRun may choose about its pods (image, ServiceAccount, command,
    volumes, env); a run outside it fails before any pod. Default: nothing that changes
    identity or code."""
