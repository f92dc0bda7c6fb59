"""The outcomes of one :class:`~rocky_operator.logic.decide_incremental.IncrementalDecider`
decision: a read-only view of the decider's state plus the pass's starts, with what a halt
(cancellation, fail-fast) or the open circuit breaker makes of the pending and waiting
tables, computed when an outcome is read.

The view is O(1) to make; reading it after the decider's next ``observe`` raises
``RuntimeError`` (it would mix two passes). Pure: no I/O, no logging.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from rocky_operator.logic import decide as _decide
from rocky_operator.logic.decide import TableOutcome, TableState, _give_up
from rocky_runner.contract import FailureKind

if TYPE_CHECKING:
    from rocky_operator.logic.decide_incremental import IncrementalDecider


def _never_started(outcome: TableOutcome, note: str, blocked: tuple[str, ...]) -> TableOutcome:
    """A pending table a halting run will not start (``decide`` before stopped attempts)."""
    return TableOutcome(
        table=outcome.table,
        state=TableState.NOT_ATTEMPTED,
        attempts=0,
        error=note,
        blocked_by=blocked,
    )


#: What a pending table becomes when the run halts: ``decide``'s own rule where it has
#: one (``not_attempted``, which also covers tables whose attempt the run stopped).
not_attempted: Callable[[TableOutcome, str, tuple[str, ...]], TableOutcome] = getattr(
    _decide, "not_attempted", _never_started
)


def halted(note: str, blocked: tuple[str, ...]) -> Callable[[TableOutcome], TableOutcome]:
    """What pending tables become when the run halts (cancellation, fail-fast)."""

    def replace_pending(outcome: TableOutcome) -> TableOutcome:
        return not_attempted(outcome, note, blocked)

    return replace_pending


def breaker_failed(outcome: TableOutcome, note: str) -> TableOutcome:
    """A pending table the open circuit breaker keeps from starting (as ``decide``)."""
    return TableOutcome(
        table=outcome.table,
        state=TableState.FAILED,
        attempts=0,
        failure_kind=FailureKind.AUTH_FAILED,
        error=note,
    )


class DecisionOutcomes(Mapping[str, TableOutcome]):
    """Every table's outcome of one decision: the decider's state, this pass's starts, and
    the halt's replacements, computed when read (O(1) to make)."""

    def __init__(
        self,
        decider: IncrementalDecider,
        overrides: Mapping[str, TableOutcome],
        pending_as: Callable[[TableOutcome], TableOutcome] | None,
        give_up_waiting: bool,
    ) -> None:
        self._decider = decider
        self._version = decider._version
        self._overrides = overrides
        self._pending_as = pending_as
        self._give_up_waiting = give_up_waiting

    def __getitem__(self, key: str) -> TableOutcome:
        decider = self._decider
        if decider._version != self._version:
            raise RuntimeError("a decision of an IncrementalDecider read after a later observe()")
        found = self._overrides.get(key)
        if found is not None:
            return found
        outcome = decider._outcomes[key]
        if outcome.state is TableState.PENDING and self._pending_as is not None:
            return self._pending_as(outcome)
        if outcome.state is TableState.WAITING_RETRY and self._give_up_waiting:
            return _give_up(outcome)
        return outcome

    def tally(self) -> tuple[Counter[TableState], Counter[str]] | None:
        """Tables by state, final failures by kind: O(starts + failures); None if halting."""
        decider = self._decider
        if decider._version != self._version:
            raise RuntimeError("a decision of an IncrementalDecider read after a later observe()")
        if self._pending_as is not None or self._give_up_waiting:
            return None  # the pending tables change: read them all
        states = Counter(decider._counts)
        for key, outcome in self._overrides.items():
            states[decider._outcomes[key].state] -= 1
            states[outcome.state] += 1
        failed = (self[key] for key in decider._final_failures)
        kinds = Counter((o.failure_kind or FailureKind.UNKNOWN).value for o in failed)
        return states, kinds

    def __iter__(self) -> Iterator[str]:
        return iter(self._decider.order)

    def __len__(self) -> int:
        return len(self._decider.order)

    def __contains__(self, key: object) -> bool:
        return key in self._decider.position


__all__ = ["DecisionOutcomes", "breaker_failed", "halted", "not_attempted"]
