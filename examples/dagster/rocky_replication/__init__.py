"""A Dagster asset that runs a RockyRun and branches on failure_kind (the seed's policy)."""

from rocky_replication.assets import (
    ALERT_KINDS,
    EXTENDED_RETRY_KINDS,
    RETRY_KINDS,
    RETRY_POLICY,
    Alerter,
    RockyRunResource,
    build_replication_asset,
)

__all__ = [
    "ALERT_KINDS",
    "EXTENDED_RETRY_KINDS",
    "RETRY_KINDS",
    "RETRY_POLICY",
    "Alerter",
    "RockyRunResource",
    "build_replication_asset",
]
