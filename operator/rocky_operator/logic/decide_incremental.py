"""The decision core, incrementally: a pass costs O(changed tables), not O(all tables).

:func:`rocky_operator.logic.decide.decide` recomputes every table's outcome from every
observed attempt on each call, which is quadratic over a run of many tables. An
:class:`IncrementalDecider` keeps the same answer up to date instead:

- :meth:`IncrementalDecider.observe` merges observed attempts (any order, repeats
  allowed, the furthest state of an attempt wins, exactly like ``decide``) and
  recomputes the outcome of the tables they belong to only;
- :meth:`IncrementalDecider.decide` answers what ``decide(tables, <every attempt
  observed so far>, policy, now, cancelled=..., files=...)`` would answer, from indexes
  kept by ``observe``: the running attempts, the tables waiting for a retry (sorted by
  retry time), the pending tables (per write group, in start order), the final
  failures and the auth-failed count.

The contract stays level-based: the decider remembers what it *observed*, never what it
answered. A start it asks for becomes part of its state only when the caller observes
the started attempt (as the journal records it), so deciding twice without observing
anything asks for the same starts, as ``decide`` does.

Cost of a pass: ``observe`` is O(attempts given, plus their tables' histories);
``decide`` is O((running + starts + skipped busy write groups) * log tables). Passes that
stop the run (cancellation, fail-fast) and the circuit breaker turn every pending table
into a final outcome; those are computed lazily, when an outcome is read.

The :class:`~rocky_operator.logic.decide.Decision` returned reads the decider's state
(its outcomes are a :class:`~rocky_operator.logic.incremental_outcomes.DecisionOutcomes`
view): use it before the next ``observe`` (reading it afterwards raises ``RuntimeError``).

Pure: the clock is the ``now`` argument; no I/O, no logging.
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import partial

from rocky_operator.logic.decide import (
    _STATE_RANK,
    TERMINAL_STATES,
    Attempt,
    AttemptState,
    Decision,
    TableOutcome,
    TableState,
    _kind,
    _observed_outcome,
)
from rocky_operator.logic.incremental_outcomes import DecisionOutcomes, breaker_failed, halted
from rocky_operator.logic.policy import RunPolicy
from rocky_operator.logic.write_groups import FileAccess, FileLocks
from rocky_runner.contract import FailureKind


class IncrementalDecider:
    """``decide()`` for one run, kept up to date from the attempts observed (see module)."""

    def __init__(
        self,
        tables: Sequence[str],
        policy: RunPolicy,
        *,
        files: Mapping[str, FileAccess] | None = None,
    ) -> None:
        self.policy = policy
        self.order: list[str] = list(dict.fromkeys(tables))
        self.position: dict[str, int] = {key: i for i, key in enumerate(self.order)}
        self.files: Mapping[str, FileAccess] = files or {}
        self._attempts: dict[str, dict[int, Attempt]] = {}
        self._outcomes: dict[str, TableOutcome] = {
            key: TableOutcome(table=key, state=TableState.PENDING, attempts=0) for key in self.order
        }
        self._counts: Counter[TableState] = Counter({TableState.PENDING: len(self.order)})
        self._running: set[tuple[str, int]] = set()
        self._auth_failures = 0
        self._final_failures: set[str] = set()
        # Tables waiting for a retry, sorted by (retry_at, position): due ones first.
        self._waiting: list[tuple[datetime, int, str]] = []
        # Pending tables by write group (tables with the same file access: at most one of a
        # group starts per pass), each group's positions sorted. A table without file
        # access is a group of its own.
        self._pending: list[list[int]] = []
        self._group_of: list[int] = []
        by_access: dict[FileAccess, int] = {}
        for pos, key in enumerate(self.order):
            access = self.files.get(key)
            if access is not None and access.writes:
                gid = by_access.setdefault(access, len(self._pending))
            else:
                gid = len(self._pending)  # never blocked by its own kind: a group of its own
            if gid == len(self._pending):
                self._pending.append([])
            self._pending[gid].append(pos)
            self._group_of.append(gid)
        # (first pending position, group) per group with a pending table; entries whose
        # group has moved on since are skipped when met (lazy deletion).
        self._heads: list[tuple[int, int]] = [(g[0], gid) for gid, g in enumerate(self._pending)]
        heapq.heapify(self._heads)
        self._version = 0

    # --- observation ---------------------------------------------------------------------

    def observe(self, attempts: Iterable[Attempt]) -> set[str]:
        """Merge observed attempts; attempts of tables not in the run are ignored.

        Returns the tables whose observed outcome was recomputed.
        """
        self._version += 1
        touched: set[str] = set()
        for attempt in attempts:
            if attempt.table not in self.position:
                continue
            numbers = self._attempts.setdefault(attempt.table, {})
            seen = numbers.get(attempt.number)
            if seen is not None and _STATE_RANK[attempt.state] <= _STATE_RANK[seen.state]:
                continue
            if seen is not None:
                self._count_attempt(seen, -1)
            numbers[attempt.number] = attempt
            self._count_attempt(attempt, +1)
            touched.add(attempt.table)
        for key in touched:
            self._recompute(key)
        return touched

    def _count_attempt(self, attempt: Attempt, sign: int) -> None:
        ident = (attempt.table, attempt.number)
        if attempt.state is AttemptState.RUNNING:
            if sign > 0:
                self._running.add(ident)
            else:
                self._running.discard(ident)
        elif attempt.state is AttemptState.FAILED and _kind(attempt) is FailureKind.AUTH_FAILED:
            self._auth_failures += sign

    def _recompute(self, key: str) -> None:
        numbers = self._attempts[key]
        history = tuple(numbers[n] for n in sorted(numbers))
        old = self._outcomes[key]
        new = _observed_outcome(key, history, self.policy)
        self._outcomes[key] = new
        pos = self.position[key]
        self._counts[old.state] -= 1
        self._counts[new.state] += 1
        if old.state is TableState.WAITING_RETRY and old.retry_at is not None:
            entry = (old.retry_at, pos, key)
            index = bisect.bisect_left(self._waiting, entry)
            if index < len(self._waiting) and self._waiting[index] == entry:
                del self._waiting[index]
        if new.state is TableState.WAITING_RETRY and new.retry_at is not None:
            bisect.insort(self._waiting, (new.retry_at, pos, key))
        if new.state is TableState.FAILED:
            self._final_failures.add(key)
        else:
            self._final_failures.discard(key)
        if (old.state is TableState.PENDING) != (new.state is TableState.PENDING):
            self._move_pending(pos, entering=new.state is TableState.PENDING)

    def _move_pending(self, pos: int, *, entering: bool) -> None:
        """A table entered or left pending (a stopped attempt makes it pending again)."""
        gid = self._group_of[pos]
        members = self._pending[gid]
        head = members[0] if members else None
        index = bisect.bisect_left(members, pos)
        if entering:
            members.insert(index, pos)
        elif index < len(members) and members[index] == pos:
            del members[index]
        if members and members[0] != head:
            heapq.heappush(self._heads, (members[0], gid))

    # --- decision ------------------------------------------------------------------------

    def decide(
        self, now: datetime, *, cancelled: bool = False, halt: str | None = None
    ) -> Decision:
        """What ``decide()`` answers for every attempt observed so far (module docstring)."""
        policy = self.policy
        running = sorted(self._running, key=lambda ident: (self.position[ident[0]], ident[1]))
        reason: str | None = None
        pending_as: Callable[[TableOutcome], TableOutcome] | None = None
        give_up_waiting = False
        start: list[tuple[str, int]] = []
        abort: tuple[tuple[str, int], ...] = ()
        overrides: dict[str, TableOutcome] = {}
        breaker_open = 0 < policy.auth_failed_threshold <= self._auth_failures

        if cancelled or halt:
            reason = halt or "cancelled"
            pending_as = halted(f"not attempted: {halt or 'the run was cancelled'}", ())
        elif policy.fail_fast and self._final_failures:
            final = sorted(
                (self._outcomes[key] for key in self._final_failures),
                key=lambda o: (o.finished_at or o.started_at or now, self.position[o.table]),
            )
            first = final[0]
            reason = f"fail-fast: {first.table} failed ({first.failure_kind})"
            note = f"not attempted: fail-fast after table {first.table} failed"
            note += f" ({first.failure_kind})"
            pending_as = halted(note, tuple(o.table for o in final))
        if pending_as is not None:
            abort = tuple(running)
            give_up_waiting = True
        else:
            if breaker_open:
                threshold = policy.auth_failed_threshold
                reason = (
                    f"circuit breaker open: {self._auth_failures} auth-failed results "
                    f"(threshold {threshold})"
                )
                note = (
                    "not attempted: the circuit breaker opened after "
                    f"{self._auth_failures} auth-failed results against the warehouse "
                    f"(threshold {threshold})"
                )
                pending_as = partial(breaker_failed, note=note)
            start = self._starts(now, running, fresh=not breaker_open)
            for key, number in start:
                overrides[key] = TableOutcome(
                    table=key,
                    state=TableState.RUNNING,
                    attempts=number,
                    started_at=now,
                    history=self._outcomes[key].history,
                )

        requeue_at: datetime | None = None
        if not give_up_waiting:
            index = bisect.bisect_right(self._waiting, (now, len(self.order), ""))
            if index < len(self._waiting):
                requeue_at = self._waiting[index][0]
        if running or start:
            finished = False
        elif give_up_waiting:
            finished = True  # pending and waiting tables all became final
        else:
            pending_left = 0 if pending_as is not None else self._counts[TableState.PENDING]
            finished = (
                pending_left == 0
                and self._counts[TableState.RUNNING] == 0
                and self._counts[TableState.WAITING_RETRY] == 0
            )
        view = DecisionOutcomes(self, overrides, pending_as, give_up_waiting)
        return Decision(
            start=tuple(start),
            abort=abort,
            outcomes=view,
            finished=finished,
            requeue_at=requeue_at,
            reason=reason,
        )

    def _starts(
        self, now: datetime, running: Sequence[tuple[str, int]], *, fresh: bool
    ) -> list[tuple[str, int]]:
        """Due retries by (retry time, position), then pending tables in start order, as
        many as free slots, never two conflicting writers of a file (as ``decide``)."""
        slots = max(self.policy.concurrency - len(running), 0)
        start: list[tuple[str, int]] = []
        if slots == 0:
            return start
        locks = FileLocks()
        for key, _number in running:
            locks.take(self.files.get(key))
        due_end = bisect.bisect_right(self._waiting, (now, len(self.order), ""))
        for _retry_at, _pos, key in self._waiting[:due_end]:
            if len(start) >= slots:
                return start
            access = self.files.get(key)
            if not locks.is_free_for(access):
                continue
            locks.take(access)
            start.append((key, self._outcomes[key].attempts + 1))
        if not fresh:
            return start
        # Group heads in position order. Within a group only the head can start: the others
        # share its files, so they are blocked by it (taken) or by what blocks it.
        popped: list[tuple[int, int]] = []
        considered: set[int] = set()
        while self._heads and len(start) < slots:
            entry = heapq.heappop(self._heads)
            pos, gid = entry
            members = self._pending[gid]
            if not members or members[0] != pos or gid in considered:
                continue  # stale or repeated: the group's valid entry is elsewhere
            considered.add(gid)
            popped.append(entry)
            key = self.order[pos]
            access = self.files.get(key)
            if not locks.is_free_for(access):
                continue
            locks.take(access)
            start.append((key, self._outcomes[key].attempts + 1))
        for entry in popped:
            heapq.heappush(self._heads, entry)
        return start

    def outcome(self, key: str) -> TableOutcome:
        """The observed outcome of one table (before this pass's starts and halts)."""
        return self._outcomes[key]


__all__ = ["TERMINAL_STATES", "IncrementalDecider"]
