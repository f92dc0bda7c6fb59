"""Drive RockyRuns: one asyncio task per run, level-based.

Each pass of a run's task (:meth:`RunWorker.reconcile`) observes the run's pods,
merges them with the run's journal (every attempt started and every result
recorded), asks the decision core what to do, records what it is about to do in the
journal, does it (create / delete pods), and writes the status once, only when it
changed. Pod events only *wake* the task; it then waits ``batch_seconds`` so a burst
of events becomes one pass, and status writes are further limited to one per
``status_interval_seconds`` except on transitions (phase or condition changes).

Restart safety comes from the order of writes: an attempt is journaled as started
before its pod is created (so an attempt number is never reused), and a result is
journaled before its pod is deleted (so no result is lost). A new operator process
loads the plan and journal, adopts the pods it finds, and carries on.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.api.status import FINISHED_PHASES, OutputRef, RockyRunStatus
from rocky_operator.kube.client import KubeClient, KubeError
from rocky_operator.kube.store import RunStore
from rocky_operator.logic import records
from rocky_operator.logic.decide import Attempt, AttemptState, Decision, TableState, decide
from rocky_operator.logic.pods import (
    LABEL_RUN,
    PodSettings,
    RunnerDefaults,
    aborted_attempt,
    build_pod,
    classify_pod,
    missing_pod_attempt,
    pod_identity,
)
from rocky_operator.logic.policy import RunPolicy
from rocky_operator.logic.run_output import (
    build_failed_run_output,
    build_run_output,
    run_status,
)
from rocky_operator.logic.status import (
    build_planning_status,
    build_rejected_status,
    build_status,
    status_document,
)
from rocky_operator.logic.tables import PlannedTable, plan_tables, table_key
from rocky_operator.metrics import Metrics
from rocky_runner.contract import FailureKind

log = logging.getLogger(__name__)

_TABLE_KEY = re.compile(r"\b[0-9a-f]{10}\b")

#: Discovery: (spec, credentials by env name) -> discovered tables (DiscoveredTable-like).
Discover = Callable[[RockyRunSpec, Mapping[str, str]], Sequence[Any]]


def discover_with_runner(spec: RockyRunSpec, credentials: Mapping[str, str]) -> Sequence[Any]:
    """Discovery through the runner's public API (``rocky_runner.discovery``), run by the
    operator itself: it needs network access to the warehouse (or the DuckDB file)."""
    # Credentials is re-exported by rocky_runner.discovery (the operator imports only
    # the runner's contract and discovery modules; see .importlinter).
    from rocky_operator.logic.tables import adapter_settings
    from rocky_runner.discovery import Credentials, discover_tables

    pattern = spec.source.schema_pattern
    found: Sequence[Any] = discover_tables(
        adapter_settings(spec),
        prefix=pattern.prefix,
        separator=pattern.separator,
        components=list(pattern.components),
        catalog=spec.source.catalog,
        tables=spec.source.tables,
        credentials=Credentials(values=dict(credentials)),
    )
    return found


@dataclass(frozen=True)
class ControllerSettings:
    """Knobs of the controller; the defaults suit a cluster, tests shrink the times."""

    batch_seconds: float = 1.0
    """After a pod event, wait this long for more before a pass (coalescing)."""
    status_interval_seconds: float = 5.0
    """At most one status write per run per interval, except on transitions."""
    resync_seconds: float = 30.0
    """A pass at least this often, even without events (stuck pods, missed events)."""
    keep_failed_pods: bool = False
    """Keep the pods of failed attempts for debugging (their results are recorded)."""
    stuck_grace_seconds: float = 120.0
    """How long a pod may wait on an image pull or a missing Secret before it fails."""
    discovery_timeout_seconds: float = 300.0
    """Upper bound of table discovery; beyond it the run fails (exit code 1)."""
    create_parallelism: int = 16
    """Pod creations in flight at once."""
    error_backoff_seconds: float = 5.0
    """Delay before a pass is retried after an API error."""
    runner_defaults: RunnerDefaults = field(default_factory=RunnerDefaults)
    """Runner image and ServiceAccount for runs whose spec.runner names none."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RejectedError(Exception):
    """The run cannot start; ``reason`` is the condition reason."""

    def __init__(self, reason: str, message: str, kind: str = "unknown") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.kind = kind


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
    spec: RockyRunSpec | None = None
    policy: RunPolicy | None = None
    tables: list[PlannedTable] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    journal: dict[tuple[str, int], Attempt] = field(default_factory=dict)
    status: RockyRunStatus = field(default_factory=RockyRunStatus)
    start_time: datetime | None = None
    written: dict[str, Any] | None = None
    last_write: float = 0.0
    pending_write: bool = False
    store: RunStore | None = None
    passes: int = 0
    requeue_at: datetime | None = None

    @property
    def client(self) -> KubeClient:
        return self.controller.client

    @property
    def settings(self) -> ControllerSettings:
        return self.controller.settings

    def wake(self) -> None:
        self.wake_event.set()

    # --- lifecycle -----------------------------------------------------------------

    async def main(self) -> None:
        delay = self.settings.error_backoff_seconds
        active = False
        try:
            while True:
                try:
                    if self.spec is None:
                        if not await self.prepare():
                            return
                        active = True
                        self.controller.metrics.runs_active.labels(self.namespace).inc()
                    if await self.reconcile():
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
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 60.0)
        finally:
            if active:
                self.controller.metrics.runs_active.labels(self.namespace).dec()
            self.controller.workers.pop((self.namespace, self.name), None)

    async def sleep(self) -> None:
        """Wait for a pod event (then coalesce), a retry time, a due status write or
        the periodic resync, whichever comes first."""
        now = self.controller.clock()
        timeout = self.settings.resync_seconds
        if self.requeue_at is not None:
            timeout = min(timeout, max((self.requeue_at - now).total_seconds(), 0.0))
        if self.pending_write:
            due = self.last_write + self.settings.status_interval_seconds - self._mono()
            timeout = min(timeout, max(due, 0.0))
        try:
            await asyncio.wait_for(self.wake_event.wait(), timeout=max(timeout, 0.0))
        except TimeoutError:
            return
        await asyncio.sleep(self.settings.batch_seconds)
        self.wake_event.clear()

    @staticmethod
    def _mono() -> float:
        return asyncio.get_running_loop().time()

    # --- preparation: validate, check Secrets, plan once, load the journal ----------

    async def prepare(self) -> bool:
        """Load the run; False when there is nothing (more) to do."""
        try:
            body = await self.client.get_run(self.namespace, self.name)
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return False
        self.uid = str(meta.get("uid") or "")
        self.generation = meta.get("generation")
        try:
            self.status = RockyRunStatus.model_validate(body.get("status") or {})
        except ValidationError:
            self.status = RockyRunStatus()
        if self.status.phase in FINISHED_PHASES:
            return False
        self.written = body.get("status") or {}
        now = self.controller.clock()
        self.store = RunStore(self.client, self.namespace, self.name, self.uid)
        try:
            self.spec = RockyRunSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            await self.reject(RejectedError("InvalidSpec", _validation_message(exc)), now)
            return False
        try:
            await self.check_secrets(self.spec)
            plan = await self.store.load_plan()
            if plan is None:
                pending = build_planning_status(
                    previous=self.status, generation=self.generation, now=now
                )
                await self.client.patch_run_status(
                    self.namespace, self.name, status_document(pending)
                )
                self.status = pending
                plan = await self.make_plan(self.spec)
                await self.store.save_plan(*plan)
        except RejectedError as rejected:
            await self.reject(rejected, now)
            self.spec = None
            return False
        self.tables, self.resumed = plan
        self.policy = RunPolicy.from_spec(self.spec)
        self.journal = records.latest_attempts(await self.store.load_journal())
        started = self.status.start_time
        self.start_time = datetime.fromisoformat(started.replace("Z", "+00:00")) if started else now
        log.info(
            "run %s/%s: %d tables planned, %d attempts recorded",
            self.namespace,
            self.name,
            len(self.tables),
            len(self.journal),
        )
        return True

    async def check_secrets(self, spec: RockyRunSpec) -> None:
        for ref in spec.adapter.secret_refs().values():
            keys = await self.client.secret_keys(self.namespace, ref.name)
            if keys is None:
                raise RejectedError(
                    "SecretNotFound",
                    f"Secret {ref.name!r} (credentials of adapter.{spec.adapter.type}) does not "
                    f"exist in namespace {self.namespace!r}",
                    "auth-failed",
                )
            if ref.key not in keys:
                raise RejectedError(
                    "SecretKeyNotFound",
                    f"Secret {ref.name!r} has no key {ref.key!r} (credentials of "
                    f"adapter.{spec.adapter.type}; it has: {', '.join(sorted(keys)) or 'none'})",
                    "auth-failed",
                )

    async def make_plan(self, spec: RockyRunSpec) -> tuple[list[PlannedTable], list[str]]:
        """Discover, filter and resume-narrow the tables; done once per run."""
        credentials: dict[str, str] = {}
        for env_name, ref in spec.adapter.secret_refs().items():
            value = await self.client.read_secret_value(self.namespace, ref.name, ref.key)
            if value is not None:
                credentials[env_name] = value
        loop = asyncio.get_running_loop()
        try:
            found = await asyncio.wait_for(
                loop.run_in_executor(None, self.controller.discover, spec, credentials),
                timeout=self.settings.discovery_timeout_seconds,
            )
        except TimeoutError as exc:
            raise RejectedError(
                "DiscoveryFailed",
                f"table discovery took longer than {self.settings.discovery_timeout_seconds:.0f} s",
            ) from exc
        except Exception as exc:  # discovery runs connector code: any failure ends the run
            raise RejectedError(
                "DiscoveryFailed",
                f"table discovery failed: {_redact(exc, credentials)}",
                "connection-failed",
            ) from exc
        tables = plan_tables(spec, found)
        resumed: list[str] = []
        if spec.resume_from:
            tables, resumed = await self.narrow_for_resume(spec, tables)
        return tables, resumed

    async def narrow_for_resume(
        self, spec: RockyRunSpec, tables: list[PlannedTable]
    ) -> tuple[list[PlannedTable], list[str]]:
        assert spec.resume_from is not None
        earlier = RunStore(self.client, self.namespace, spec.resume_from, "")
        doc = await earlier.load_output()
        if doc is None:
            raise RejectedError(
                "ResumeSourceNotFound",
                f"resumeFrom: RockyRun {spec.resume_from!r} has no complete output in "
                f"namespace {self.namespace!r} (it does not exist or has not finished)",
            )
        copied = {table_key(m["asset_key"]) for m in doc.get("materializations") or []}
        failed_kind = {
            table_key(e["asset_key"]): str(e.get("failure_kind"))
            for e in doc.get("errors") or []
            if e.get("asset_key")
        }
        kinds = set(spec.resume_kinds or [])
        keep: list[PlannedTable] = []
        skipped: list[str] = []
        for table in tables:
            if table.key in copied or (kinds and failed_kind.get(table.key) not in kinds):
                skipped.append("/".join(table.asset_key))
            else:
                keep.append(table)
        return keep, skipped

    async def reject(self, rejected: RejectedError, now: datetime) -> None:
        """End a run that cannot start: Failed, exit code 1, a condition naming why."""
        spec_filter = ""
        output = build_failed_run_output(
            rejected.message,
            started_at=now,
            finished_at=now,
            filter=spec_filter,
        )
        status = build_rejected_status(
            reason=rejected.reason,
            message=rejected.message,
            previous=self.status,
            generation=self.generation,
            now=now,
            run_output=output,
        )
        if self.store is not None and self.uid:
            names, size, digest = await self.store.save_output(output)
            status = status.model_copy(
                update={"output": OutputRef(config_maps=names, bytes=size, sha256=digest)}
            )
        await self.client.patch_run_status(self.namespace, self.name, status_document(status))
        await self.client.post_event(
            namespace=self.namespace,
            run_name=self.name,
            run_uid=self.uid,
            event_type="Warning",
            reason=rejected.reason,
            message=rejected.message,
        )
        metrics = self.controller.metrics
        metrics.runs.labels(self.namespace, "failure").inc()
        log.info(
            "run %s/%s rejected: %s: %s",
            self.namespace,
            self.name,
            rejected.reason,
            rejected.message,
        )

    # --- one pass --------------------------------------------------------------------

    async def reconcile(self) -> bool:
        """One observe-decide-act pass; True when the run is finished."""
        assert self.spec is not None
        assert self.policy is not None
        assert self.store is not None
        self.passes += 1
        now = self.controller.clock()
        pods = await self.client.list_pods(self.namespace, {LABEL_RUN: self.name})
        planned = {t.key for t in self.tables}
        pod_settings = PodSettings(stuck_grace_seconds=self.settings.stuck_grace_seconds)
        pod_names: dict[tuple[str, int], str] = {}
        attempts: dict[tuple[str, int], Attempt] = dict(self.journal)
        new: dict[tuple[str, int], Attempt] = {}
        for pod in pods:
            ident = pod_identity(pod)
            if ident is None or ident[0] not in planned:
                continue
            pod_names[ident] = pod["metadata"]["name"]
            recorded = self.journal.get(ident)
            if recorded is not None and recorded.state is not AttemptState.RUNNING:
                continue
            seen = classify_pod(pod, now, pod_settings)
            if seen is None:
                continue
            if recorded is not None:
                seen = replace(seen, started_at=recorded.started_at)
            attempts[ident] = seen
            if seen.state is not AttemptState.RUNNING or recorded is None:
                new[ident] = seen
        for ident, recorded in self.journal.items():
            if recorded.state is AttemptState.RUNNING and ident not in pod_names:
                gone = missing_pod_attempt(ident[0], ident[1], recorded.started_at, now)
                attempts[ident] = new[ident] = gone

        keys = [t.key for t in self.tables]
        decision = decide(keys, attempts.values(), self.policy, now)
        if decision.abort:
            for ident in decision.abort:
                stopped = aborted_attempt(attempts[ident], decision.reason or "run stopped", now)
                attempts[ident] = new[ident] = stopped
            decision = decide(keys, attempts.values(), self.policy, now)
        if decision.reason:
            decision = replace(decision, reason=self.readable(decision.reason))
        starts = [
            Attempt(table=key, number=number, state=AttemptState.RUNNING, started_at=now)
            for key, number in decision.start
        ]
        for attempt in starts:
            new[(attempt.table, attempt.number)] = attempt

        # 1. Record before acting: results before their pods go, starts before pods exist.
        await self.store.append_journal(list(new.values()))
        before = self.journal
        self.journal = {**self.journal, **new}
        self.count(new.values(), before, decision)
        # 2. Act.
        await self.create_pods(starts)
        await self.delete_finished(pod_names, decision)
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
        await self.announce_failures(new.values(), decision)
        if decision.finished:
            await self.finish(decision, now)
            return True
        await self.write_status(decision, now)
        return False

    def readable(self, text: str) -> str:
        """Table keys in a decision's reason replaced by the tables' asset keys."""
        names = {t.key: "/".join(t.asset_key) for t in self.tables}
        return _TABLE_KEY.sub(lambda m: names.get(m.group(0), m.group(0)), text)

    def count(
        self,
        new: Any,
        before: Mapping[tuple[str, int], Attempt],
        decision: Decision,
    ) -> None:
        """Metrics for what was recorded for the first time in this pass."""
        metrics = self.controller.metrics
        ns = self.namespace
        for attempt in new:
            if attempt.state is AttemptState.RUNNING:
                if attempt.number > 1:
                    previous = self.journal.get((attempt.table, attempt.number - 1))
                    kind = (previous.failure_kind if previous else None) or "unknown"
                    metrics.table_retries.labels(ns, str(kind)).inc()
                continue
            if attempt.state is AttemptState.FAILED:
                metrics.table_failures.labels(ns, str(attempt.failure_kind or "unknown")).inc()
            if attempt.finished_at:
                seconds = (attempt.finished_at - attempt.started_at).total_seconds()
                metrics.table_duration.observe(max(seconds, 0.0))
            outcome = decision.outcomes.get(attempt.table)
            if outcome is not None and outcome.attempts == attempt.number:
                if outcome.state is TableState.COPIED:
                    metrics.tables.labels(ns, "copied").inc()
                elif outcome.state is TableState.FAILED:
                    metrics.tables.labels(ns, "failed").inc()

    async def create_pods(self, starts: Sequence[Attempt]) -> None:
        assert self.spec is not None
        assert self.store is not None
        by_key = {t.key: t for t in self.tables}
        gate = asyncio.Semaphore(self.settings.create_parallelism)
        failed: list[Attempt] = []

        async def create(attempt: Attempt) -> None:
            assert self.spec is not None
            pod = build_pod(
                run_name=self.name,
                run_uid=self.uid,
                namespace=self.namespace,
                spec=self.spec,
                table=by_key[attempt.table],
                attempt=attempt.number,
                defaults=self.settings.runner_defaults,
            )
            async with gate:
                try:
                    await self.client.create_pod(self.namespace, pod)
                except KubeError as exc:
                    if exc.status in (0, 429) or exc.status >= 500:
                        raise
                    # The API refused the pod itself (invalid, forbidden): no retry helps.
                    failed.append(
                        replace(
                            attempt,
                            state=AttemptState.FAILED,
                            finished_at=attempt.started_at,
                            failure_kind=FailureKind.UNKNOWN,
                            error=f"the API server refused the runner pod: {exc}",
                        )
                    )

        await asyncio.gather(*(create(a) for a in starts))
        if failed:
            await self.store.append_journal(failed)
            self.journal.update({(a.table, a.number): a for a in failed})
            self.wake()

    async def delete_finished(
        self, pod_names: Mapping[tuple[str, int], str], decision: Decision
    ) -> None:
        aborted = set(decision.abort)
        doomed = []
        for ident, name in pod_names.items():
            recorded = self.journal.get(ident)
            if recorded is None or recorded.state is AttemptState.RUNNING:
                continue
            if (
                recorded.state is AttemptState.FAILED
                and self.settings.keep_failed_pods
                and ident not in aborted
            ):
                continue
            doomed.append(name)
        gate = asyncio.Semaphore(self.settings.create_parallelism)

        async def delete(name: str) -> None:
            async with gate:
                await self.client.delete_pod(self.namespace, name)

        await asyncio.gather(*(delete(n) for n in doomed))

    async def announce_failures(self, new: Any, decision: Decision) -> None:
        """One Warning event per failure_kind for tables that failed for good in this pass."""
        by_kind: dict[str, list[str]] = {}
        names = {t.key: "/".join(t.asset_key) for t in self.tables}
        for attempt in new:
            outcome = decision.outcomes.get(attempt.table)
            if (
                attempt.state is AttemptState.FAILED
                and outcome is not None
                and outcome.state is TableState.FAILED
                and outcome.attempts == attempt.number
            ):
                kind = str(attempt.failure_kind or "unknown")
                by_kind.setdefault(kind, []).append(names.get(attempt.table, attempt.table))
        for kind, tables in sorted(by_kind.items()):
            shown = ", ".join(tables[:5]) + (
                f" and {len(tables) - 5} more" if len(tables) > 5 else ""
            )
            await self.client.post_event(
                namespace=self.namespace,
                run_name=self.name,
                run_uid=self.uid,
                event_type="Warning",
                reason="TablesFailed",
                message=f"{len(tables)} table(s) failed with {kind}: {shown}",
            )

    async def write_status(self, decision: Decision, now: datetime) -> None:
        assert self.start_time is not None
        status = build_status(
            decision=decision,
            attempts=list(self.journal.values()),
            resumed=len(self.resumed),
            previous=self.status,
            generation=self.generation,
            start_time=self.start_time,
            now=now,
        )
        doc = status_document(status)
        if doc == self.written:
            self.pending_write = False
            return
        transition = self.status.phase != status.phase or {
            c.type: c.status for c in self.status.conditions
        } != {c.type: c.status for c in status.conditions}
        elapsed = self._mono() - self.last_write
        if not transition and elapsed < self.settings.status_interval_seconds:
            self.pending_write = True
            return
        await self.client.patch_run_status(self.namespace, self.name, doc)
        self.controller.status_writes += 1
        self.status, self.written, self.pending_write = status, doc, False
        self.last_write = self._mono()

    async def finish(self, decision: Decision, now: datetime) -> None:
        assert self.spec is not None
        assert self.store is not None
        assert self.start_time is not None
        full = build_run_output(
            self.tables,
            decision.outcomes,
            started_at=self.start_time,
            finished_at=now,
            filter=self.spec.filter,
            resumed_from=self.spec.resume_from,
            concurrency=self.spec.concurrency,
            interrupted=False,
        )
        names, size, digest = await self.store.save_output(full)
        status = build_status(
            decision=decision,
            attempts=list(self.journal.values()),
            resumed=len(self.resumed),
            previous=self.status,
            generation=self.generation,
            start_time=self.start_time,
            now=now,
            run_output=full,
            output=OutputRef(config_maps=names, bytes=size, sha256=digest),
        )
        await self.client.patch_run_status(self.namespace, self.name, status_document(status))
        self.controller.status_writes += 1
        self.status = status
        metrics = self.controller.metrics
        counts = status.tables
        outcome = run_status(counts.copied, counts.failed, counts.not_attempted)
        metrics.tables.labels(self.namespace, "skipped").inc(counts.not_attempted)
        metrics.runs.labels(self.namespace, outcome).inc()
        metrics.run_duration.observe(max((now - self.start_time).total_seconds(), 0.0))
        kinds = Counter(status.failures)
        detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        await self.client.post_event(
            namespace=self.namespace,
            run_name=self.name,
            run_uid=self.uid,
            event_type="Normal" if outcome == "success" else "Warning",
            reason={
                "success": "RunSucceeded",
                "partial_failure": "RunPartiallyFailed",
                "failure": "RunFailed",
            }[outcome],
            message=f"{status.message}" + (f" (failures: {detail})" if detail else ""),
        )
        log.info("run %s/%s finished: %s", self.namespace, self.name, status.message)


class Controller:
    """All run workers of this operator process."""

    def __init__(
        self,
        client: KubeClient,
        metrics: Metrics,
        settings: ControllerSettings | None = None,
        *,
        discover: Discover = discover_with_runner,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.client = client
        self.metrics = metrics
        self.settings = settings or ControllerSettings()
        self.discover = discover
        self.clock = clock
        self.workers: dict[tuple[str, str], RunWorker] = {}
        self.status_writes = 0
        self.errors = 0
        self.stopping = False

    def touch_run(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """A RockyRun was seen: make sure a worker drives it (unless it has finished)."""
        if self.stopping or (namespace, name) in self.workers:
            return
        phase = (body.get("status") or {}).get("phase")
        if phase in FINISHED_PHASES or (body.get("metadata") or {}).get("deletionTimestamp"):
            return
        worker = RunWorker(self, namespace, name)
        self.workers[(namespace, name)] = worker
        worker.task = asyncio.create_task(worker.main(), name=f"rockyrun {namespace}/{name}")

    def wake(self, namespace: str, run_name: str) -> None:
        worker = self.workers.get((namespace, run_name))
        if worker is not None:
            worker.wake()

    async def forget(self, namespace: str, name: str) -> None:
        """The RockyRun is gone: stop its worker (its pods go with it by ownership)."""
        worker = self.workers.pop((namespace, name), None)
        if worker is not None and worker.task is not None:
            worker.task.cancel()
            await asyncio.gather(worker.task, return_exceptions=True)

    async def stop(self) -> None:
        self.stopping = True
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.workers.clear()

    def healthy(self) -> bool:
        """False when a worker died of an unexpected exception."""
        return not any(
            w.task is not None
            and w.task.done()
            and not w.task.cancelled()
            and w.task.exception() is not None
            for w in self.workers.values()
        )


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        text = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"spec.{where}: {text}" if where else f"spec: {text}")
    return "; ".join(parts)


def _redact(exc: BaseException, credentials: Mapping[str, str]) -> str:
    text = f"{type(exc).__name__}: {exc}"
    for value in credentials.values():
        if value:
            text = text.replace(value, "***")
    return text[:2000]
