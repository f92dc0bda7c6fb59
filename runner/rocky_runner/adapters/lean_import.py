"""Import a client library without the optional extras it would load on its own.

Two of the connectors import heavy optional packages at their own import time, only
because they are installed, whether or not a caller ever uses them (issue 15 goal 3):

- ``snowflake.connector`` imports pandas, pyarrow, boto3 and botocore from
  ``snowflake.connector.options`` (imported by ``constants``, which every submodule
  imports, ``connection`` included: no submodule avoids it), and numpy from
  ``compat``. They serve ``fetch_pandas_*`` / ``fetch_arrow_*`` / ``write_pandas``,
  AWS platform detection and workload-identity logins, and binding numpy values.
  Plain ``execute`` / ``fetchall`` read Arrow result chunks with the connector's own
  nanoarrow extension, which needs none of them.
- ``google.cloud.bigquery`` imports pandas (and so pyarrow and numpy) from
  ``_versions_helpers`` to decide whether ``RANGE`` columns can go to a DataFrame,
  and ``google.api_core.exceptions`` imports grpc and grpc_status to map gRPC status
  codes. A client on the REST transport (the only one ``google.cloud.bigquery.Client``
  has; grpc would serve the BigQuery Storage read API) reads query results as JSON.

Each of those imports is guarded by ``try: import x / except ImportError``: the
libraries are written to run without these packages. :func:`without_modules` makes
them look absent while the client library is imported, the way they are in an image
that does not install them, and leaves them importable afterwards.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def without_modules(*names: str) -> Iterator[tuple[str, ...]]:
    """While the block runs, ``import name`` raises ``ModuleNotFoundError`` for each of
    ``names`` (top-level packages) that is not imported yet; yields those names.

    A name already imported is left alone (the library then finds it, as it would
    anyway). Afterwards every name is importable again; the libraries imported in the
    block keep the "not installed" answer they got. Only the adapter modules use this,
    at their import, on the importing thread (an import elsewhere in the process during
    the block would see the same absence).
    """
    blocked = tuple(name for name in names if name not in sys.modules)
    for name in blocked:
        # None in sys.modules: the import system raises ModuleNotFoundError.
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield blocked
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


@contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Drop the warnings logger ``name`` emits while the block runs (a library that
    announces at import that an optional package is missing)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
