"""On PYTHONPATH, makes the synchronous ``kubernetes`` package unimportable in that process
(tests/e2e/test_one_client.py): the operator must work with ``kubernetes_asyncio`` alone. kopf
imports ``kubernetes`` only to recognise its objects when it is installed, and tolerates it
missing."""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder
from typing import Any


class _NoSyncClient(MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname == "kubernetes" or fullname.startswith("kubernetes."):
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked by the test)")
        return None


sys.meta_path.insert(0, _NoSyncClient())
