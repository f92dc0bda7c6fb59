"""A Python client for RockyRuns: submit, wait, and read the result as rocky-sdk's RunResult.

Two backends with one shape (``run(manifest, timeout=...) -> RunOutcome``):

* :class:`ClusterClient` creates RockyRun objects with the Kubernetes client and waits for their
  ``Complete`` condition;
* :class:`LocalClient` runs them with ``rocky-operator local`` on this machine, so consumers
  (Dagster assets, scripts) can be tested without a cluster.

``RunOutcome.exit_code`` has ``rocky run``'s meaning (0 / 2 / 1) and ``RunOutcome.result.errors``
carries ``failure_kind``; :mod:`rocky_operator.client.policy` maps kinds to the seed's actions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rocky_operator.client.manifest import build_manifest, load_manifest, validate_manifest
from rocky_operator.client.policy import Action, TableFailure, Triage, action_for, triage
from rocky_operator.client.result import (
    ManifestError,
    RockyClientError,
    RunNotFoundError,
    RunOutcome,
    RunOutputUnavailableError,
    RunTimeoutError,
    exit_code_of,
    outcome_from_output,
)

if TYPE_CHECKING:
    from rocky_operator.client.cluster import ClusterClient, RunConflictError
    from rocky_operator.client.local import LocalClient

__all__ = [
    "Action",
    "ClusterClient",
    "LocalClient",
    "ManifestError",
    "RockyClientError",
    "RunConflictError",
    "RunNotFoundError",
    "RunOutcome",
    "RunOutputUnavailableError",
    "RunTimeoutError",
    "TableFailure",
    "Triage",
    "action_for",
    "build_manifest",
    "exit_code_of",
    "load_manifest",
    "outcome_from_output",
    "triage",
    "validate_manifest",
]


def __getattr__(name: str) -> object:
    # The backends import the Kubernetes client / subprocess machinery only when used.
    if name == "ClusterClient":
        from rocky_operator.client.cluster import ClusterClient

        return ClusterClient
    if name == "RunConflictError":
        from rocky_operator.client.cluster import RunConflictError

        return RunConflictError
    if name == "LocalClient":
        from rocky_operator.client.local import LocalClient

        return LocalClient
    raise AttributeError(name)
