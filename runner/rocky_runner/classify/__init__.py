"""Failure classification: exception chain -> failure_kind.

The classifier walks the chain (``__cause__`` first, then ``__context__``, and the
connector-specific links such as ``RetryError.cause``) and asks each connector's
classifier about every exception on it. The first typed answer wins, starting from
the outermost exception. An error that reached us only as a string (no typed
exception anywhere on the chain) is ``unknown``.

Connector classifiers live in sibling modules and must not import their client
library at module import time: they look at ``type(exc).__module__`` first, so a
DuckDB runner never pays for the Google SDK.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from rocky_runner.contract import FailureKind

#: A connector classifier: a failure_kind when it recognises the exception, else None.
Classifier = Callable[[BaseException], FailureKind | None]

#: Extra links to follow besides __cause__ / __context__ (e.g. google's RetryError.cause).
LinkFinder = Callable[[BaseException], BaseException | None]

MAX_CHAIN = 32


def _classifiers() -> list[Classifier]:
    # Imported here so each module stays cheap and the list is in one place.
    from rocky_runner.classify import builtin, duckdb_errors

    found: list[Classifier] = [duckdb_errors.classify]
    for name in ("snowflake_errors", "bigquery_errors", "databricks_errors"):
        try:
            module = __import__(f"rocky_runner.classify.{name}", fromlist=["classify"])
        except ImportError:  # module not written yet / optional
            continue
        found.append(module.classify)
    found.append(builtin.classify)
    return found


def _links() -> list[LinkFinder]:
    from rocky_runner.classify import builtin

    return [builtin.extra_link]


def walk_chain(exc: BaseException) -> Iterator[BaseException]:
    """Every exception on the chain, outermost first, each once, bounded."""
    seen: set[int] = set()
    stack = [exc]
    links = _links()
    while stack and len(seen) < MAX_CHAIN:
        current = stack.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nexts: list[BaseException | None] = [current.__cause__]
        nexts.extend(link(current) for link in links)
        if not current.__suppress_context__:
            nexts.append(current.__context__)
        stack.extend(n for n in nexts if n is not None)


def classify_exception(exc: BaseException) -> FailureKind:
    """The failure_kind of an exception, by walking its chain to a typed connector error."""
    classifiers = _classifiers()
    for link in walk_chain(exc):
        for classifier in classifiers:
            kind = classifier(link)
            if kind is not None:
                return kind
    return FailureKind.UNKNOWN
