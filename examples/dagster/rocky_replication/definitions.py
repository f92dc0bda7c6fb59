"""``dagster dev -m rocky_replication.definitions``: the asset with its resources.

Environment: ``ROCKY_MANIFEST`` (default: the rockyrun.yaml next to this package),
``ROCKY_BACKEND`` (``cluster`` or ``local``), ``ROCKY_NAMESPACE``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from rocky_replication.assets import Alerter, RockyRunResource, build_replication_asset

MANIFEST = os.environ.get("ROCKY_MANIFEST", str(Path(__file__).parents[1] / "rockyrun.yaml"))

defs = dg.Definitions(
    assets=[build_replication_asset()],
    resources={
        "rocky": RockyRunResource(
            manifest_path=MANIFEST,
            backend=os.environ.get("ROCKY_BACKEND", "cluster"),
            namespace=os.environ.get("ROCKY_NAMESPACE", "default"),
        ),
        "alerter": Alerter(),
    },
)
