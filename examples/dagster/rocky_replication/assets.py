"""Run a replication as a RockyRun and act on each failed table by its failure_kind.

The seed's "Recommended consumer policy", action by action:

* ``transient``, ``connection-failed``: retry with backoff. The asset raises ``dg.Failure``;
  the asset's ``dg.RetryPolicy`` (exponential backoff) runs it again.
* ``quota-exceeded``: retry with extended backoff and alert. The asset alerts once and raises
  ``dg.RetryRequested`` with a longer, doubling wait (it takes precedence over the policy).
* ``auth-failed``, ``query-rejected``, ``not-found``: no retry; alert the model owner.
* ``unknown`` (and any kind this code does not know, e.g. Rocky's ``compile-error``): surface
  the raw error for triage: an alert carrying the raw error, logged in full and put in the
  metadata, never retried.

Beyond the per-table branches, the run as a whole decides the outcome, by ``rocky run``'s exit
code: exit code 1 (nothing copied, or the run was rejected before any table, e.g. a missing
Secret) fails the asset with the cause once no retry can help; a run that planned zero tables
alerts (an empty replication is a misconfiguration, never a quiet success), and so does a
requested table the source does not have (``excluded_tables`` with reason
``missing_from_source``; views excluded by default are only recorded). Exit code 2
(partial success) materializes what copied, after the alerts above.

A retry resumes from the previous attempt's RockyRun with ``resumeKinds`` set to the retryable
kinds, so only the tables a retry can fix run again, and alerts are not sent twice. Every
attempt records which action each failed table took (``branches`` in the metadata of the
materialization, or of the failure when it retries).
"""

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from rocky_operator.client import (
    Action,
    ClusterClient,
    LocalClient,
    RunOutcome,
    TableFailure,
    load_manifest,
    triage,
)

RETRY_KINDS = frozenset({"transient", "connection-failed"})
EXTENDED_RETRY_KINDS = frozenset({"quota-exceeded"})
ALERT_KINDS = frozenset({"auth-failed", "query-rejected", "not-found"})

#: Backoff for transient failures (the policy of the seed's example): 30 s, 60 s, 120 s, each
#: moved by up to its own length either way (jitter), so the assets a warehouse outage failed
#: together do not all retry at the same moment.
RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def jittered(seconds: float, rng: random.Random | None = None) -> float:
    """``seconds`` moved by up to half of it either way (the quota path's extended backoff)."""
    return seconds * (rng or random).uniform(0.5, 1.5)


class RockyRunResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where RockyRuns run: on a cluster (``backend: cluster``) or locally (``local``)."""

    manifest_path: str
    """The RockyRun manifest (the one a user would ``kubectl apply``)."""
    backend: str = "cluster"
    """``cluster``: create RockyRun objects; ``local``: ``rocky-operator local`` subprocesses."""
    namespace: str = "default"
    state_dir: str = ".rocky-runs"
    """Local backend: where manifests, outputs and logs of runs are kept."""
    mounts: dict[str, str] = {}
    """Local backend: pod path -> local directory (the runner pods' volume mounts)."""
    timeout_seconds: float = 3600.0
    kubeconfig: str | None = None
    """Cluster backend: a kubeconfig file (default: in-cluster, else ``KUBECONFIG``)."""

    def run(
        self, *, name: str, resume_from: str | None, resume_kinds: list[str] | None
    ) -> RunOutcome:
        manifest = load_manifest(self.manifest_path)
        if self.backend == "local":
            return LocalClient(self.state_dir, mounts=self.mounts).run(
                manifest,
                name=name,
                timeout=self.timeout_seconds,
                resume_from=resume_from,
                resume_kinds=resume_kinds,
            )
        with ClusterClient(self.namespace, kubeconfig=self.kubeconfig) as client:
            return client.run(
                manifest,
                name=name,
                timeout=self.timeout_seconds,
                resume_from=resume_from,
                resume_kinds=resume_kinds,
            )


class Alerter(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Hand-off to the alerting layer (PagerDuty, Slack, Sentry...). This one logs, and
    appends one JSON line per alert to ``log_path`` when set."""

    log_path: str | None = None

    def alert(self, context: dg.AssetExecutionContext, severity: str, **fields: Any) -> None:
        record = {"severity": severity, **fields}
        context.log.error(f"alert: {json.dumps(record, sort_keys=True)}")
        if self.log_path:
            with Path(self.log_path).open("a") as fh:
                fh.write(json.dumps(record, sort_keys=True) + "\n")


def _rows(failures: tuple[TableFailure, ...]) -> list[dict[str, str]]:
    return [{"target": f.target, "kind": f.failure_kind} for f in failures]


def _cause(outcome: RunOutcome, failures: tuple[TableFailure, ...]) -> str:
    """Why a run copied nothing: the run-level error (a rejected run's RunOutput carries one
    error with an empty asset key), else the failed tables by kind and the first raw error."""
    run_level = [f for f in failures if not f.target]
    if run_level:
        return f"RockyRun {outcome.name} was rejected before any table: {run_level[0].error}"
    if not failures:
        return f"RockyRun {outcome.name} exited 1 with no table listed"
    kinds: dict[str, int] = {}
    for f in failures:
        kinds[f.failure_kind] = kinds.get(f.failure_kind, 0) + 1
    by_kind = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    return (
        f"RockyRun {outcome.name} copied nothing: {len(failures)} table(s) failed ({by_kind}); "
        f"first: {failures[0].target}: {failures[0].error}"
    )


def build_replication_asset(
    *,
    name: str = "replicated_tables",
    run_prefix: str = "replication",
    retry_policy: dg.RetryPolicy = RETRY_POLICY,
    extended_backoff_seconds: float = 300.0,
    max_quota_retries: int = 2,
) -> dg.AssetsDefinition:
    """The asset, with its retry policy; tests pass short delays."""

    @dg.asset(name=name, retry_policy=retry_policy)
    def replicated_tables(
        context: dg.AssetExecutionContext, rocky: RockyRunResource, alerter: Alerter
    ) -> Iterator[dg.AssetObservation | dg.MaterializeResult]:  # type: ignore[type-arg]
        attempt = context.retry_number
        base = f"{run_prefix}-{context.run_id[:8]}"
        previous = f"{base}-{attempt - 1}" if attempt else None
        outcome = rocky.run(
            name=f"{base}-{attempt}",
            resume_from=previous,
            resume_kinds=sorted(RETRY_KINDS | EXTENDED_RETRY_KINDS) if previous else None,
        )
        result = outcome.result
        found = triage(result.errors)
        retry = found.of(Action.RETRY)
        extended = found.of(Action.RETRY_EXTENDED_AND_ALERT)
        owner = found.of(Action.ALERT)
        surface = found.of(Action.SURFACE)

        for f in owner:
            alerter.alert(
                context,
                "error",
                action="alert-owner",
                target=f.target,
                kind=f.failure_kind,
                error=f.error,
                run=outcome.name,
            )
        for f in extended:
            alerter.alert(
                context,
                "warning",
                action="retry-extended",
                target=f.target,
                kind=f.failure_kind,
                error=f.error,
                run=outcome.name,
            )
        for f in surface:
            # The raw error is the only signal: alert with it, log it whole, keep it in the
            # metadata. Never retried.
            context.log.warning(f"unclassified failure on {f.target or 'the run'}: {f.error}")
            alerter.alert(
                context,
                "error",
                action="surface-for-triage",
                target=f.target,
                kind=f.failure_kind,
                error=f.error,
                run=outcome.name,
            )
        planned = result.tables_copied + result.tables_failed + (result.tables_skipped or 0)
        if planned == 0 and not any(not f.target for f in found.failures):
            alerter.alert(context, "warning", action="empty-run", run=outcome.name)
        # Requested tables that never ran: names the source does not have are a gap to flag
        # (a typo, a connector that has not synced yet); views skipped by default are not.
        excluded = {
            "/".join(e.asset_key): e.reason
            for e in (getattr(result, "excluded_tables", None) or [])
        }
        missing = sorted(k for k, reason in excluded.items() if reason == "missing_from_source")
        if missing:
            alerter.alert(
                context, "warning", action="tables-missing", tables=missing, run=outcome.name
            )

        metadata: dict[str, Any] = {
            "rocky_run": outcome.name,
            "exit_code": outcome.exit_code,
            "tables_copied": result.tables_copied,
            "tables_failed": result.tables_failed,
            "excluded_tables": dg.MetadataValue.json(excluded),
            "attempt": attempt,
            "branches": dg.MetadataValue.json(
                {
                    f.target: {"kind": f.failure_kind, "action": f.action.value}
                    for f in found.failures
                }
            ),
            "alerted": dg.MetadataValue.json(_rows(owner + extended)),
            "unclassified": dg.MetadataValue.json(
                [{"target": f.target, "kind": f.failure_kind, "error": f.error} for f in surface]
            ),
        }
        # One observation per attempt: what each failed table's branch was, even when the
        # attempt ends in a retry (which carries no materialization). Yielded, not logged:
        # events logged with context.log_event are dropped when the step then raises.
        yield dg.AssetObservation(asset_key=context.asset_key, metadata=metadata)
        if extended:
            if attempt >= max_quota_retries:
                alerter.alert(
                    context,
                    "error",
                    action="retries-exhausted",
                    kinds=sorted({f.failure_kind for f in extended + retry}),
                    run=outcome.name,
                )
                raise dg.Failure(
                    description=f"{len(extended)} table(s) still over quota after "
                    f"{attempt} retries",
                    metadata=metadata,
                    allow_retries=False,
                )
            raise dg.RetryRequested(
                max_retries=max_quota_retries,
                seconds_to_wait=jittered(extended_backoff_seconds * 2**attempt),
            )
        if retry:
            if attempt >= retry_policy.max_retries:
                alerter.alert(
                    context,
                    "error",
                    action="retries-exhausted",
                    kinds=sorted({f.failure_kind for f in retry}),
                    run=outcome.name,
                )
                raise dg.Failure(
                    description=f"{len(retry)} table(s) still failing after {attempt} retries",
                    metadata=metadata,
                    allow_retries=False,
                )
            # A Failure the RetryPolicy picks up: run again after its backoff.
            raise dg.Failure(
                description=f"{len(retry)} table(s) failed transiently; retrying.",
                metadata={**metadata, "retryable": dg.MetadataValue.json(_rows(retry))},
            )
        if outcome.exit_code == 1:
            # Nothing copied (every table failed for good, or the run never started): the
            # asset fails with the cause; no retry, none of the failures is retryable.
            cause = _cause(outcome, found.failures)
            alerter.alert(context, "error", action="run-failed", cause=cause, run=outcome.name)
            raise dg.Failure(description=cause, metadata=metadata, allow_retries=False)
        yield dg.MaterializeResult(metadata=metadata)

    return replicated_tables
