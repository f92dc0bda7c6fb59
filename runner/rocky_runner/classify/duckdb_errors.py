"""DuckDB's exceptions -> failure_kind, by class (DuckDB has no SQLSTATE or error codes).

The mapping, with the reason for each choice, is the DuckDB table in
``docs/classification-duckdb.md``; every row has a test that triggers it through the real
engine (``tests/runner/test_classify_duckdb.py``).
"""

from __future__ import annotations

import sys

from rocky_runner.contract import FailureKind

#: Class names (DuckDB's Python module) whose errors are the SQL's fault.
_QUERY_REJECTED = frozenset(
    {
        "ParserException",
        "SyntaxException",
        "BinderException",
        "ConversionException",
        "ConstraintException",
        "InvalidInputException",  # includes writes to a read-only database
        "PermissionException",  # the engine's configuration forbids the operation
        "TypeMismatchException",
        "InvalidTypeException",
        "OutOfRangeException",
        "DependencyException",
        "NotImplementedException",
        "SequenceException",
    }
)
#: Catalog errors about a missing *function* or *type* name a typo in SQL the user wrote
#: (a metadata column's value or type), not a missing table.
_FUNCTION_WORDS = (
    "Function with name",
    "Macro with name",
    "Function Macro with name",
    "Type with name",
)


def _is_duckdb(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module in ("_duckdb", "duckdb") or module.startswith("duckdb.")


def is_lock_conflict_message(message: str) -> bool:
    """DuckDB's IOException text when another process holds the file lock."""
    return "Could not set lock" in message or "Conflicting lock" in message


def classify(exc: BaseException) -> FailureKind | None:
    if not _is_duckdb(exc):
        return None
    duckdb = sys.modules.get("duckdb")
    if duckdb is None:  # an exception of a module that is not loaded: cannot be DuckDB's
        return None
    message = str(exc)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, duckdb.CatalogException):
        if any(word in message for word in _FUNCTION_WORDS):
            return FailureKind.QUERY_REJECTED
        if "does not exist" in message:
            return FailureKind.NOT_FOUND
        return FailureKind.QUERY_REJECTED  # e.g. "already exists"
    if names & _QUERY_REJECTED:
        return FailureKind.QUERY_REJECTED
    if isinstance(exc, duckdb.InterruptException):
        return FailureKind.TRANSIENT
    if isinstance(exc, duckdb.TransactionException):
        return FailureKind.TRANSIENT if "onflict" in message else FailureKind.UNKNOWN
    if isinstance(exc, duckdb.OutOfMemoryException):
        return FailureKind.QUOTA_EXCEEDED
    if isinstance(exc, duckdb.IOException):
        if is_lock_conflict_message(message):
            return FailureKind.TRANSIENT
        return FailureKind.CONNECTION_FAILED
    if isinstance(exc, duckdb.ConnectionException):
        return FailureKind.UNKNOWN
    return None
