"""The runner policy: what a RockyRun author may choose about the pods the operator makes.

The operator creates runner pods with its own ``pods create``; whatever ``spec.runner``
may set, anyone who may create a RockyRun may set in a pod. So the cluster admin, not
the RockyRun author, bounds what changes *who* runs (ServiceAccount) and *what* runs
(image, command, code-changing environment, volumes mounted over code, volume types
that reach the node or mint tokens). By default a run may set resources, nodeSelector,
tolerations, its deadline, plain and Secret/ConfigMap-sourced environment variables,
and volumes of the safe kinds (PVC, ConfigMap, Secret, emptyDir) mounted under the
data roots; everything else is the admin's to allow (``rocky-operator run
--runner-*`` options, set by the chart's ``runner.policy`` values).

:func:`check_runner_policy` is pure: a spec in, the violations out, each naming the
field and the rule. A run with any violation ends Failed before any pod exists.

The check is made by every operator process before it creates any pod of a run, on
the spec the run uses: the copy frozen with its plan (``logic/spec_change.py``), not
the live one. So an edit of the spec cannot bring a pod out of policy, and a policy
the admin tightened between two operator lives applies to runs already in flight: such
a run *halts* (:func:`note_policy_halt`) — no new pod, its running attempts stopped,
its remaining tables not attempted naming the violation, the tables already copied
kept in its RunOutput (the exit code stays the contract's: 1 when nothing was copied,
2 when some tables were).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rocky_operator.api.spec import RunnerSpec
from rocky_operator.api.status import CONDITION_ACCEPTED, RockyRunStatus
from rocky_operator.logic.pod_manifest import RunnerDefaults
from rocky_operator.logic.status import set_condition

#: Matches every image / ServiceAccount in an allow list.
ANY = "*"
#: The runner command every run gets unless the admin allows overrides.
RUNNER_COMMAND = ("rocky-runner",)
SAFE_VOLUME_TYPES = ("persistentVolumeClaim", "configMap", "secret", "emptyDir")
#: ``value`` is a literal; the others are the keys of ``valueFrom``.
ENV_SOURCES = ("value", "secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef")
DEFAULT_ENV_SOURCES = ("value", "secretKeyRef", "configMapKeyRef")
#: Mount roots that hold no code of the image (the venv is /opt/venv, HOME is /tmp).
DEFAULT_MOUNT_PATHS = ("/data", "/mnt", "/srv", "/var/lib/rocky")
#: Variables the operator sets itself (the task, the result path, credentials, HOME).
RESERVED_ENV_PREFIXES = ("ROCKY_",)
RESERVED_ENV_NAMES = frozenset({"HOME", "TMPDIR"})
#: Variables that make the runner load other code: allowed only with command overrides.
CODE_ENV_PREFIXES = ("PYTHON", "LD_", "DYLD_")
CODE_ENV_NAMES = frozenset({"PATH", "BASH_ENV", "ENV", "VIRTUAL_ENV"})

#: Where the admin widens each rule (chart value / operator option), for messages.
_WHERE = {
    "images": "runner.policy.images (--runner-allowed-images)",
    "serviceAccounts": "runner.policy.serviceAccounts (--runner-allowed-service-accounts)",
    "command": "runner.policy.allowCommandOverride (--runner-allow-command-override)",
    "volumeTypes": "runner.policy.volumeTypes (--runner-allowed-volume-types)",
    "mountPaths": "runner.policy.mountPaths (--runner-allowed-mount-paths)",
    "envSources": "runner.policy.envSources (--runner-allowed-env-sources)",
}


@dataclass(frozen=True)
class RunnerPolicy:
    """What the cluster admin lets a RockyRun choose; the defaults change no identity
    and no code."""

    images: tuple[str, ...] = ()
    """Images allowed besides the operator's runner image: a repository
    (``ghcr.io/acme/rocky``, any tag or digest of it), a prefix ending in ``/``
    (``registry.acme.com/``), an exact image with ``@sha256:`` (that digest only), or
    ``*``."""
    service_accounts: tuple[str, ...] = ()
    """ServiceAccounts allowed besides the operator's runner ServiceAccount, or ``*``."""
    allow_command_override: bool = False
    """Whether a run may replace the runner command or set code-changing variables."""
    volume_types: tuple[str, ...] = SAFE_VOLUME_TYPES
    """Volume sources a run may declare (``hostPath``, ``projected``, ``csi``... are not
    safe: they reach the node or mint ServiceAccount tokens)."""
    mount_paths: tuple[str, ...] = DEFAULT_MOUNT_PATHS
    """Roots under which a run may mount volumes (never over the image's code), or ``*``."""
    env_sources: tuple[str, ...] = DEFAULT_ENV_SOURCES
    """Sources of extra environment variables (:data:`ENV_SOURCES`)."""


@dataclass(frozen=True)
class PolicyViolation:
    """One field of ``spec.runner`` outside the policy."""

    field: str
    """The field, e.g. ``spec.runner.volumes[0].hostPath``."""
    rule: str
    """The rule's name: images, serviceAccounts, command, volumeTypes, mountPaths,
    envSources, reservedEnv."""
    message: str
    """One line naming the field, the value and how the admin would allow it."""


def image_repository(image: str) -> str:
    """``registry/path/name`` of an image reference, without tag or digest."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def is_allowed_image(image: str, allowed: Iterable[str]) -> bool:
    for entry in allowed:
        if entry == ANY or image == entry:
            return True
        if "@" in entry:  # a digest pins exactly one image
            continue
        if entry.endswith("/"):
            if image.startswith(entry):
                return True
        elif entry == image_repository(entry) == image_repository(image):
            return True  # a bare repository allows every tag and digest of it
    return False


def _is_under(path: str, roots: Iterable[str]) -> bool:
    if not path.startswith("/") or ".." in path.split("/"):
        return False
    normal = posixpath.normpath(path)
    for root in roots:
        if root == ANY:
            return True
        base = posixpath.normpath(root)
        if normal == base or normal.startswith(base.rstrip("/") + "/"):
            return True
    return False


def _volume_type(volume: Mapping[str, Any]) -> str:
    kinds = [k for k in volume if k != "name"]
    return kinds[0] if len(kinds) == 1 else ",".join(sorted(kinds)) or "none"


def _env_source(item: Mapping[str, Any]) -> str:
    source = item.get("valueFrom")
    if isinstance(source, Mapping) and source:
        return ",".join(sorted(source))
    return "value"


def _is_code_env(name: str) -> bool:
    return name in CODE_ENV_NAMES or name.startswith(CODE_ENV_PREFIXES)


def check_runner_policy(
    runner: RunnerSpec, policy: RunnerPolicy, defaults: RunnerDefaults
) -> list[PolicyViolation]:
    """Every field of ``runner`` outside ``policy`` (empty: the run may start)."""
    found: list[PolicyViolation] = []

    def refuse(field: str, rule: str, what: str) -> None:
        found.append(
            PolicyViolation(
                field,
                rule,
                f"{field}: {what} (runner policy: the cluster "
                f"admin allows it with {_WHERE.get(rule, rule)})",
            )
        )

    if runner.image and not is_allowed_image(runner.image, (defaults.image, *policy.images)):
        refuse("spec.runner.image", "images", f"image {runner.image!r} is not allowed")
    account = runner.service_account_name
    if (
        account
        and account != defaults.service_account_name
        and ANY not in policy.service_accounts
        and account not in policy.service_accounts
    ):
        refuse(
            "spec.runner.serviceAccountName",
            "serviceAccounts",
            f"ServiceAccount {account!r} is not allowed",
        )
    if tuple(runner.command) != RUNNER_COMMAND and not policy.allow_command_override:
        refuse("spec.runner.command", "command", "the runner command may not be replaced")
    for index, volume in enumerate(runner.volumes or []):
        kind = _volume_type(volume)
        if ANY not in policy.volume_types and kind not in policy.volume_types:
            refuse(
                f"spec.runner.volumes[{index}].{kind}",
                "volumeTypes",
                f"volumes of type {kind} are not allowed",
            )
    for index, mount in enumerate(runner.volume_mounts or []):
        path = str(mount.get("mountPath", ""))
        if not _is_under(path, policy.mount_paths):
            refuse(
                f"spec.runner.volumeMounts[{index}].mountPath",
                "mountPaths",
                f"{path!r} is not under an allowed mount root ({', '.join(policy.mount_paths)})",
            )
    for index, item in enumerate(runner.env or []):
        name = str(item.get("name", ""))
        field = f"spec.runner.env[{index}]"
        if name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIXES):
            found.append(
                PolicyViolation(
                    field,
                    "reservedEnv",
                    f"{field}: {name} is set by the operator and may not be overridden",
                )
            )
        elif _is_code_env(name) and not policy.allow_command_override:
            refuse(field, "command", f"{name} changes the code the runner loads")
        source = _env_source(item)
        if ANY not in policy.env_sources and source not in policy.env_sources:
            refuse(
                f"{field}.{'value' if source == 'value' else 'valueFrom.' + source}",
                "envSources",
                f"environment from {source} is not allowed",
            )
    return found


def policy_message(violations: list[PolicyViolation], limit: int = 5) -> str:
    """The condition message of a refused run: its violations, one clause each."""
    shown = "; ".join(v.message for v in violations[:limit])
    more = len(violations) - limit
    return f"{shown}; and {more} more" if more > 0 else shown


#: Condition reason (and Event reason) of a run outside the runner policy.
REASON_POLICY_VIOLATION = "RunnerPolicyViolation"


def note_policy_halt(
    status: RockyRunStatus, message: str, *, now: datetime, generation: int | None
) -> RockyRunStatus:
    """``status`` of a run halted because its frozen spec is outside the policy now:
    ``Accepted=False`` with reason ``RunnerPolicyViolation`` and ``message`` (the
    violations, each naming the field and the rule)."""
    conditions = set_condition(
        status.conditions,
        type=CONDITION_ACCEPTED,
        status=False,
        reason=REASON_POLICY_VIOLATION,
        message=message,
        now=now,
        generation=generation,
    )
    return status.model_copy(update={"conditions": conditions})
