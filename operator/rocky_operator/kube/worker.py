"""One asyncio task per RockyRun, level-based: the pass that ties the phases together.

Each pass of a run's task (:meth:`RunWorker.reconcile`) observes the run's pods
(:mod:`~rocky_operator.kube.observe`), merges them with the run's journal (every
attempt started and every result recorded), asks the decision core what to do,
records what it is about to do in the journal, does it
(:mod:`~rocky_operator.kube.act`: create / delete pods), and reports
(:mod:`~rocky_operator.kube.report`: the status once, only when it changed). Before
the first pass, :mod:`~rocky_operator.kube.prepare` validates and plans the run.
Pod events only *wake* the task; a pass starts at most once per ``batch_seconds``
(a wake later than that after the latest pass began runs one at once, an earlier one
waits for the rest of the interval) so a burst of events becomes one pass, and
status writes are further limited to one per ``status_interval_seconds`` except on
transitions (phase or condition changes).

Restart safety comes from the order of writes: an attempt is journaled as started
before its pod is created (so an attempt number is never reused), and a result is
journaled before its pod is deleted (so no result is lost). A new operator process
loads the plan and journal, adopts the pods it finds, and carries on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.api.status import RockyRunStatus
from rocky_operator.kube.act import create_pods, delete_finished
from rocky_operator.kube.client import KubeClient, KubeError
from rocky_operator.kube.observe import JournalIndex, observe
from rocky_operator.kube.prepare import prepare
from rocky_operator.kube.report import (
    announce_failures,
    count,
    finish,
    monotonic,
    readable,
    write_status,
)
from rocky_operator.kube.settings import ControllerSettings
from rocky_operator.kube.store import RunStore
from rocky_operator.logic.decide import Attempt, AttemptState, Decision
from rocky_operator.logic.decide_incremental import IncrementalDecider
from rocky_operator.logic.pods import LABEL_RUN, PodSettings, aborted_attempt
from rocky_operator.logic.policy import RunPolicy
from rocky_operator.logic.spec_change import edit_to_acknowledge
from rocky_operator.logic.status import status_document
from rocky_operator.logic.tables import Exclusion, PlannedTable
from rocky_operator.logic.write_groups import FileAccess, write_groups

if TYPE_CHECKING:
    from rocky_operator.kube.controller import Controller

log = logging.getLogger(__name__)


@dataclass
class RunWorker:
    """The task that drives one RockyRun until it finishes."""

    controller: Controller
    namespace: str
    name: str
    wake_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    # set by prepare():
    uid: str = ""
    generation: int | None = None
    """The latest ``metadata.generation`` seen (what ``status.observedGeneration`` says)."""
    spec_generation: int | None = None
    """The generation of the spec frozen with the plan (the one the run uses)."""
    spec: RockyRunSpec | None = None
    policy: RunPolicy | None = None
    tables: list[PlannedTable] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)
    """Requested tables the plan left out (missing from the source, views)."""
    journal: dict[tuple[str, int], Attempt] = field(default_factory=dict)
    status: RockyRunStatus = field(default_factory=RockyRunStatus)
    start_time: datetime | None = None
    written: dict[str, Any] | None = None
    last_write: float = 0.0
    pass_started: float | None = None
    """When (monotonic) the latest pass began: the next waits until ``batch_seconds`` after."""
    pending_write: bool = False
    store: RunStore | None = None
    passes: int = 0
    requeue_at: datetime | None = None
    created: set[tuple[str, int]] = field(default_factory=set)
    """Attempts whose pods are known to have existed (seen, created, or so journaled)."""
    files: dict[str, FileAccess] | None = None
    """The DuckDB files each table locks (its write group), derived once from the plan."""
    decider: IncrementalDecider | None = None
    """The decision core for this run's plan, kept up to date pass by pass."""
    unobserved: list[Attempt] = field(default_factory=list)
    """Journaled after the last decision (starts, refused pods): observed next pass."""
    progress_at: float | None = None
    """Unix time of the run's last progress (planned, an attempt started or a result
    recorded) while it runs; None before and after (rocky_run_last_progress_timestamp_seconds)."""
    halt: str | None = None
    """Set by prepare() when the frozen spec is outside the runner policy of this
    operator process (tightened since the run was planned): the run stops, no new pod."""
    marks: set[tuple[str, int]] = field(default_factory=set)
    """Of :attr:`created`, those not yet written with a journal batch (they ride along)."""
    _keys: list[str] | None = None
    _planned_keys: set[str] | None = None
    _by_key: dict[str, PlannedTable] | None = None
    _index: JournalIndex | None = None
    _indexed: dict[tuple[str, int], Attempt] | None = None

    @property
    def keys(self) -> list[str]:
        """Table keys of the plan in start order (the plan is fixed once prepared)."""
        if self._keys is None:
            self._keys = [t.key for t in self.tables]
        return self._keys

    @property
    def planned_keys(self) -> set[str]:
        if self._planned_keys is None:
            self._planned_keys = set(self.keys)
        return self._planned_keys

    @property
    def by_key(self) -> dict[str, PlannedTable]:
        """The planned tables by key (made once: the plan is fixed once prepared)."""
        if self._by_key is None:
            self._by_key = {t.key: t for t in self.tables}
        return self._by_key

    @property
    def index(self) -> JournalIndex:
        """The journal's running attempts and retry counts (rebuilt if the journal is
        replaced, as prepare() does)."""
        if self._index is None or self._indexed is not self.journal:
            self._index, self._indexed = JournalIndex(self.journal), self.journal
        return self._index

    def record(self, attempts: Iterable[Attempt]) -> None:
        """Add journaled attempts to the journal in memory (after the store has them)."""
        self.index.record(self.journal, attempts)

    @property
    def client(self) -> KubeClient:
        return self.controller.client

    @property
    def settings(self) -> ControllerSettings:
        return self.controller.settings

    def wake(self) -> None:
        self.wake_event.set()

    def pods_created(self, *idents: tuple[str, int]) -> None:
        """These attempts' pods exist (or existed): if one goes missing, it was lost."""
        for ident in idents:
            if ident not in self.created:
                self.created.add(ident)
                self.marks.add(ident)

    # --- lifecycle -----------------------------------------------------------------

    async def main(self) -> None:
        delay = self.settings.error_backoff_seconds
        active = False
        metrics = self.controller.metrics
        metrics.init_namespace(self.namespace)
        try:
            while True:
                try:
                    if self.spec is None:
                        if not await prepare(self):
                            return
                        active = True
                        metrics.runs_active.labels(self.namespace).inc()
                        # A new operator process: the journal says when the run last moved.
                        moved = [a.finished_at or a.started_at for a in self.journal.values()]
                        self.progressed(max(moved, default=None))
                    self.pass_started = monotonic()
                    if await self.reconcile():
                        await self.note_late_edit()
                        return
                    delay = self.settings.error_backoff_seconds
                    await self.sleep()
                except KubeError as exc:
                    log.warning(
                        "run %s/%s: API error, retrying in %.0f s: %s",
                        self.namespace,
                        self.name,
                        delay,
                        exc,
                    )
                    metrics.worker_errors.labels(self.namespace, "api").inc()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 60.0)
                except Exception:  # the worker is a top level: never let a run stall silently
                    log.exception(
                        "run %s/%s: unexpected error, retrying in %.0f s",
                        self.namespace,
                        self.name,
                        delay,
                    )
                    self.controller.errors += 1
                    metrics.worker_errors.labels(self.namespace, "unexpected").inc()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 60.0)
        finally:
            if active:
                metrics.runs_active.labels(self.namespace).dec()
            self.progress_at = None
            self.controller.workers.pop((self.namespace, self.name), None)
            self.controller.report_progress(self.namespace)

    def progressed(self, when: datetime | None = None) -> None:
        """The run moved on (at ``when``, default now): the oldest of the namespace is exported."""
        self.progress_at = (when or self.controller.clock()).timestamp()
        self.controller.report_progress(self.namespace)

    async def note_late_edit(self) -> None:
        """An edit seen while the final status was being written: observe it too."""
        noted = edit_to_acknowledge(self.status, self.generation, self.controller.clock())
        if noted is not None:
            await self.client.patch_run_status(self.namespace, self.name, status_document(noted))
            self.status = noted

    async def clean_up(
        self, pod_names: Mapping[tuple[str, int], str], new: Iterable[Attempt], decision: Decision
    ) -> None:
        """After the final status: delete the finished pods, announce this pass's failures.

        Never retried by this worker (the run is finished: a retried pass would write the
        final status again); pods left by an API error or a stop in between are deleted by
        the controller's sweep of a finished run
        (:func:`~rocky_operator.kube.act.sweep_finished_run`).
        """
        try:
            await delete_finished(self, pod_names, decision)
        except KubeError as exc:
            log.warning("run %s/%s: pods left after the final status: %s", *self.ident, exc)
            self.controller.sweep(*self.ident)  # tried again beside, then by the next process
        else:
            self.controller.swept.add(self.ident)  # none left: no sweep needed
        try:
            await announce_failures(self, new, decision)
        except KubeError as exc:
            log.warning("run %s/%s: could not post the failures' Event: %s", *self.ident, exc)

    @property
    def ident(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    async def sleep(self) -> None:
        """Wait for a pod event (then coalesce), a retry time, a due status write or
        the periodic resync, whichever comes first."""
        now = self.controller.clock()
        timeout = self.settings.resync_seconds
        if self.requeue_at is not None:
            timeout = min(timeout, max((self.requeue_at - now).total_seconds(), 0.0))
        if self.pending_write:
            due = self.last_write + self.settings.status_interval_seconds - monotonic()
            timeout = min(timeout, max(due, 0.0))
        try:
            await asyncio.wait_for(self.wake_event.wait(), timeout=max(timeout, 0.0))
        except TimeoutError:
            return
        # Leading edge: a wake at least batch_seconds after the latest pass began (the
        # tail event of a run, a lone pod event) is handled at once; one sooner waits for
        # the rest of the interval, so a burst still becomes one pass per batch_seconds.
        started = self.pass_started if self.pass_started is not None else monotonic()
        rest = started + self.settings.batch_seconds - monotonic()
        if rest > 0:
            await asyncio.sleep(rest)
        self.wake_event.clear()

    async def reconcile(self) -> bool:
        """One observe-decide-act-report pass; True when the run is finished."""
        assert self.spec is not None
        assert self.policy is not None
        assert self.store is not None
        self.passes += 1
        now = self.controller.clock()
        pods = await self.client.list_pods(self.namespace, {LABEL_RUN: self.name})
        seen = observe(
            pods,
            self.journal,
            self.planned_keys,
            now,
            PodSettings(stuck_grace_seconds=self.settings.stuck_grace_seconds),
            self.created,
            self.index.running,
        )
        attempts, new = seen.attempts, seen.new
        self.pods_created(*seen.pod_names)

        decider = self.decider
        if decider is None:
            # decide() kept up to date from what changed (issue 13 goal 3): built once from
            # the journal, then fed each pass's new observations and last pass's starts.
            self.files = write_groups(self.tables)
            decider = IncrementalDecider(self.keys, self.policy, files=self.files)
            decider.observe(self.journal.values())
        decider.observe([*self.unobserved, *new.values()])
        self.unobserved = []
        decision = decider.decide(now, halt=self.halt)
        if decision.abort:
            stopped_now = []
            for ident in decision.abort:
                stopped = aborted_attempt(attempts[ident], decision.reason or "run stopped", now)
                attempts[ident] = new[ident] = stopped
                stopped_now.append(stopped)
            decider.observe(stopped_now)
            decision = decider.decide(now, halt=self.halt)
        self.decider = decider
        if decision.reason:
            decision = replace(decision, reason=readable(self, decision.reason))
        starts = [
            Attempt(table=key, number=number, state=AttemptState.RUNNING, started_at=now)
            for key, number in decision.start
        ]
        for attempt in starts:
            new[(attempt.table, attempt.number)] = attempt

        # 1. Record before acting: results before their pods go, starts before pods exist.
        marks = set(self.marks)
        try:
            await self.store.append_journal(list(new.values()), marks)
        except BaseException:
            self.decider = None  # it saw what was not journaled: rebuilt from the journal
            raise
        if new:
            self.marks -= marks
        self.unobserved.extend(starts)  # the decider sees them next pass (decision stays valid)
        self.record(new.values())
        count(self, new.values(), decision)
        if new:
            self.progressed()
        # 2. Act (pods journaled as started but never created first, same numbers).
        aborted = set(decision.abort)
        late = [a for a in seen.uncreated if (a.table, a.number) not in aborted]
        if decision.finished:
            # 3. The final status first (every result is journaled), then the pods.
            await finish(self, decision, now)
            await self.clean_up(seen.pod_names, new.values(), decision)
            return True
        # Independent: the new pods are journaled as started, the doomed ones as finished.
        created, deleted = await asyncio.gather(
            create_pods(self, [*late, *starts]),
            delete_finished(self, seen.pod_names, decision),
            return_exceptions=True,
        )
        for outcome in (created, deleted):
            if isinstance(outcome, BaseException):
                raise outcome
        # 3. Report.
        log.debug(
            "run %s/%s pass %d: %d pods, %d recorded, %d started, %d aborted",
            self.namespace,
            self.name,
            self.passes,
            len(pods),
            len(new),
            len(starts),
            len(decision.abort),
        )
        self.requeue_at = decision.requeue_at
        await announce_failures(self, new.values(), decision)
        await write_status(self, decision, now)
        return False
