"""The seed's Dagster example (per-table-error-containment), verbatim but for ``binary_path=``.

``/work/shared/seed/per-table-error-containment.txt``, "Consuming from Dagster": the asset and
the Definitions with its RetryPolicy. The only change is ``binary_path="rocky-operator-rocky"``
on the resource (the one-line switch docs/rocky-compat.md describes).
"""

# ruff: noqa: E501
# fmt: off
import dagster as dg
from dagster_rocky import RockyResource

RETRY_KINDS = {"transient", "connection-failed", "quota-exceeded"}
ALERT_KINDS = {"auth-failed", "query-rejected", "not-found"}


@dg.asset
def replicated_tables(
    context: dg.AssetExecutionContext,
    rocky: RockyResource,
) -> dg.MaterializeResult:
    result = rocky.run(filter="tenant=acme")

    retryable: list[tuple[str, str, str]] = []
    alertable: list[tuple[str, str, str]] = []
    for err in result.errors:
        target = "/".join(err.asset_key)
        if err.failure_kind in RETRY_KINDS:
            retryable.append((target, err.failure_kind, err.error))
        elif err.failure_kind in ALERT_KINDS:
            alertable.append((target, err.failure_kind, err.error))
        else:
            context.log.warning(f"unclassified failure on {target}: {err.error}")

    if alertable:
        # Hand off to your alerting layer (PagerDuty, Slack, Sentry, ...).
        for target, kind, msg in alertable:
            context.log.error(f"alert: {target} -- {kind} -- {msg}")

    if retryable:
        # Surface as a non-fatal failure so Dagster's retry policy picks it up.
        raise dg.Failure(
            description=f"{len(retryable)} table(s) failed transiently; retrying.",
            metadata={
                "retryable": dg.MetadataValue.json(
                    [{"target": t, "kind": k} for t, k, _ in retryable]
                ),
            },
        )

    return dg.MaterializeResult(
        metadata={"tables_copied": result.tables_copied}
    )


# The seed writes ``replicated_tables.with_retry_policy(RetryPolicy(...))``, which Dagster
# (1.13) does not have; the same RetryPolicy is the asset job's ``op_retry_policy`` here.
RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL)
replicate = dg.define_asset_job("replicate", selection=[replicated_tables], op_retry_policy=RETRY_POLICY)

defs = dg.Definitions(
    assets=[replicated_tables],
    jobs=[replicate],
    resources={"rocky": RockyResource(config_path="rocky.toml", binary_path="rocky-operator-rocky")},
)
