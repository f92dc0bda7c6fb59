"""kopf, imported without the synchronous ``kubernetes`` package (issue 13 goal 6).

kopf imports ``kubernetes.client`` at its own import time when that package is installed,
only to recognise its model objects in ``kopf.adopt()`` and friends
(``kopf/_cogs/helpers/thirdparty.py``, guarded by ``except ImportError``); its default
registry, made by the first ``@kopf.on`` decorator, imports it again to offer a fallback
login through it (``piggybacking.has_sync_client``; the operator has its own
``@kopf.on.login``). The operator never hands kopf such objects, and the package is
installed only for the user's side (``rocky_operator.client.cluster``), so
``rocky-operator run`` imports kopf with it hidden: the process then loads one API client
library, ``kubernetes_asyncio``, and nothing of the synchronous one.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

SYNC_CLIENT = "kubernetes"


def import_kopf() -> ModuleType:
    """``import kopf`` with the synchronous client hidden while kopf's modules load.

    A process that already imported ``kubernetes`` (or kopf) keeps what it has."""
    if "kopf" in sys.modules or SYNC_CLIENT in sys.modules:
        return importlib.import_module("kopf")
    sys.modules[SYNC_CLIENT] = None  # type: ignore[assignment]  # "not installed" for importers
    try:
        kopf = importlib.import_module("kopf")
        kopf.get_default_registry()  # made now, while the synchronous client is hidden
        return kopf
    finally:
        del sys.modules[SYNC_CLIENT]
