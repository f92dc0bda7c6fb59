"""The demo: a DuckDB warehouse with planted problems and the manifest that runs on it.

``rockyrun.yaml`` here is the package-data copy of ``examples/demo/rockyrun.yaml``
(a test keeps the two identical), so ``rocky-operator demo`` works from an installed
wheel as well as from a clone.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

MANIFEST_NAME = "rockyrun.yaml"


def manifest_resource() -> Traversable:
    """The packaged demo manifest."""
    return files(__name__) / MANIFEST_NAME
