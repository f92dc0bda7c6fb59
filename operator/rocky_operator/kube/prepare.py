"""Preparation of a run: validate the spec, check Secrets, plan once, load the journal.

The plan (discovery, filter, resume narrowing) is made once per run and stored with
:class:`~rocky_operator.kube.store.RunStore`; a later operator process loads it
instead of planning again. A run that cannot start is *rejected*: Failed, exit code
1, a condition naming why, and a RunOutput saying so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.api.status import FINISHED_PHASES, RockyRunStatus
from rocky_operator.kube.client import KubeError
from rocky_operator.kube.discovery import DiscoveryPodError, discover_in_pod, stop_discovery_pod
from rocky_operator.kube.reject import RejectedError, reject, validation_message
from rocky_operator.kube.store import RunStore
from rocky_operator.logic import records
from rocky_operator.logic.policy import RunPolicy
from rocky_operator.logic.resume_chain import CARRIED_KEYS, carried_fields, read_chain
from rocky_operator.logic.runner_policy import (
    REASON_POLICY_VIOLATION,
    check_runner_policy,
    policy_message,
)
from rocky_operator.logic.status import (
    build_planning_status,
    status_document,
)
from rocky_operator.logic.tables import (
    Exclusion,
    PlannedTable,
    plan_exclusions,
    plan_tables,
)

if TYPE_CHECKING:
    from rocky_operator.kube.worker import RunWorker

log = logging.getLogger(__name__)


def discover_with_runner(spec: RockyRunSpec, credentials: Mapping[str, str]) -> Any:
    """Discovery through the runner's public API (``rocky_runner.discovery``), run by the
    operator itself: it needs network access to the warehouse (or the DuckDB file).
    Returns a ``Discovery`` (tables and exclusions)."""
    # Credentials is re-exported by rocky_runner.discovery (the operator imports only
    # the runner's contract and discovery modules; see .importlinter).
    from rocky_operator.logic.tables import adapter_settings
    from rocky_runner.discovery import Credentials, discover

    pattern = spec.source.schema_pattern
    found = discover(
        adapter_settings(spec),
        prefix=pattern.prefix,
        separator=pattern.separator,
        components=list(pattern.components),
        catalog=spec.source.catalog,
        tables=spec.source.tables,
        include_views=spec.source.include_views,
        credentials=Credentials(values=dict(credentials)),
    )
    return found


#: Role of the ConfigMaps holding a resumed run's chain (:func:`save_carried`).
CHAIN_ROLE = "chain"


async def prepare(worker: RunWorker) -> bool:
    """Load the run; False when there is nothing (more) to do."""
    try:
        body = await worker.client.get_run(worker.namespace, worker.name)
    except KubeError as exc:
        if exc.status == 404:
            return False
        raise
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False
    worker.uid = str(meta.get("uid") or "")
    generation = meta.get("generation")
    worker.generation = _latest(worker.generation, generation)
    try:
        worker.status = RockyRunStatus.model_validate(body.get("status") or {})
    except ValidationError:
        worker.status = RockyRunStatus()
    if worker.status.phase in FINISHED_PHASES:
        return False
    worker.written = body.get("status") or {}
    now = worker.controller.clock()
    worker.store = RunStore(worker.client, worker.namespace, worker.name, worker.uid)
    raw_spec = body.get("spec") or {}
    plan = await worker.store.load_plan()
    if plan is not None and plan.spec is not None:
        # Planned before (an earlier life of this operator): only the frozen copy counts;
        # the current spec is never validated again (an edit is reported, not applied).
        try:
            worker.spec = RockyRunSpec.model_validate(plan.spec)
        except ValidationError as exc:  # only if a newer model refuses an older spec
            worker.spec = None
            await reject(
                worker,
                RejectedError(
                    "InvalidSpec", "the spec frozen with the plan: " + validation_message(exc)
                ),
                now,
            )
            worker.spec = None
            return False
        worker.spec_generation = plan.generation
    else:
        try:
            worker.spec = RockyRunSpec.model_validate(raw_spec)
        except ValidationError as exc:
            worker.spec = None
            await reject(worker, RejectedError("InvalidSpec", validation_message(exc)), now)
            return False
        worker.spec_generation = generation
    violations = check_runner_policy(
        worker.spec.runner, worker.settings.runner_policy, worker.settings.runner_defaults
    )
    if violations and plan is None:  # before Secrets and discovery: no pod of any kind
        rejected = RejectedError(REASON_POLICY_VIOLATION, policy_message(violations))
        if worker.settings.discovery_in_pod:  # one an earlier life under a wider policy made
            await stop_discovery_pod(worker)
        await reject(worker, rejected, now)
        worker.spec = None
        return False
    if violations:
        # Planned by an earlier operator life under a wider policy (the admin tightened
        # it since): the run halts, no new pod; what it copied stays in its output.
        await halt_for_policy(worker, policy_message(violations))
    if plan is None:
        try:
            if not worker.settings.discovery_in_pod:  # else the discovery pod checks them
                await check_secrets(worker, worker.spec)
            pending = build_planning_status(
                previous=worker.status, generation=worker.spec_generation, now=now
            )
            await worker.client.patch_run_status(
                worker.namespace, worker.name, status_document(pending)
            )
            worker.status = pending
            tables, resumed, excluded = await make_plan(worker, worker.spec)
            await worker.store.save_plan(
                tables,
                resumed,
                spec=raw_spec,
                generation=worker.spec_generation,
                excluded=excluded,
            )
        except RejectedError as rejected:
            await reject(worker, rejected, now)
            worker.spec = None
            return False
        worker.tables, worker.resumed, worker.excluded = tables, resumed, excluded
    else:
        worker.tables, worker.resumed = plan.tables, plan.resumed
        worker.excluded = list(plan.excluded)
    worker.policy = RunPolicy.from_spec(worker.spec)
    worker.journal = records.latest_attempts(await worker.store.load_journal())
    worker.created = set(worker.store.created)
    started = worker.status.start_time
    worker.start_time = datetime.fromisoformat(started.replace("Z", "+00:00")) if started else now
    log.info(
        "run %s/%s: %d tables planned, %d attempts recorded",
        worker.namespace,
        worker.name,
        len(worker.tables),
        len(worker.journal),
    )
    return True


def secret_key_refs(spec: RockyRunSpec) -> list[tuple[str, str, str]]:
    """``(secret, key, where)`` of every Secret key a runner pod reads: the adapter's
    credentials and each non-optional ``runner.env[*].valueFrom.secretKeyRef``."""
    refs = [
        (ref.name, ref.key, f"credentials of adapter.{spec.adapter.type}")
        for ref in spec.adapter.secret_refs().values()
    ]
    for i, var in enumerate(spec.runner.env or []):
        source = var.get("valueFrom") if isinstance(var, dict) else None
        ref = source.get("secretKeyRef") if isinstance(source, dict) else None
        if isinstance(ref, dict) and not ref.get("optional") and ref.get("name"):
            refs.append((str(ref["name"]), str(ref.get("key", "")), f"runner.env[{i}]"))
    return refs


async def halt_for_policy(worker: RunWorker, message: str) -> None:
    """Stop a planned run whose frozen spec this operator's runner policy refuses."""
    worker.halt = message
    await worker.client.post_event(
        namespace=worker.namespace,
        run_name=worker.name,
        run_uid=worker.uid,
        event_type="Warning",
        reason=REASON_POLICY_VIOLATION,
        message=f"the run stops, no new pod: {message}",
    )
    log.info("run %s/%s halted by the runner policy: %s", worker.namespace, worker.name, message)


async def check_secrets(worker: RunWorker, spec: RockyRunSpec) -> None:
    for name, key, where in secret_key_refs(spec):
        keys = await worker.client.secret_keys(worker.namespace, name)
        if keys is None:
            raise RejectedError(
                "SecretNotFound",
                f"Secret {name!r} ({where}) does not exist in namespace {worker.namespace!r}",
                "auth-failed",
            )
        if key not in keys:
            raise RejectedError(
                "SecretKeyNotFound",
                f"Secret {name!r} has no key {key!r} ({where}; it has: "
                f"{', '.join(sorted(keys)) or 'none'})",
                "auth-failed",
            )


async def make_plan(
    worker: RunWorker, spec: RockyRunSpec
) -> tuple[list[PlannedTable], list[str], list[Exclusion]]:
    """Discover, filter and resume-narrow the tables, and what was excluded; once per run."""
    if worker.settings.discovery_in_pod:
        try:
            listing = await discover_in_pod(worker, spec)
        except DiscoveryPodError as exc:
            raise RejectedError(exc.reason, exc.message, exc.kind.value) from exc
        found, left_out = listing.tables, listing.excluded
    else:
        answer = await discover_in_process(worker, spec)
        # A Discovery (tables and exclusions), or a bare table list from an injected
        # discoverer.
        found = getattr(answer, "tables", answer)
        left_out = getattr(answer, "excluded", [])
    tables = plan_tables(spec, found)
    excluded = plan_exclusions(spec, left_out, tables)
    resumed: list[str] = []
    if spec.resume_from:
        tables, resumed = await narrow_for_resume(worker, spec, tables)
    return tables, resumed, excluded


async def discover_in_process(worker: RunWorker, spec: RockyRunSpec) -> Any:
    """Discovery with the injected ``discover`` in this process, which then needs the
    credentials (Secret reads): only with ``discovery_in_pod=False``."""
    credentials: dict[str, str] = {}
    for env_name, ref in spec.adapter.secret_refs().items():
        value = await worker.client.read_secret_value(worker.namespace, ref.name, ref.key)
        if value is not None:
            credentials[env_name] = value
    loop = asyncio.get_running_loop()
    try:
        found = await asyncio.wait_for(
            loop.run_in_executor(None, worker.controller.discover, spec, credentials),
            timeout=worker.settings.discovery_timeout_seconds,
        )
    except TimeoutError as exc:
        raise RejectedError(
            "DiscoveryFailed",
            f"table discovery took longer than {worker.settings.discovery_timeout_seconds:.0f} s",
            "transient",  # as the discovery pod's deadline
        ) from exc
    except Exception as exc:  # discovery runs connector code: any failure ends the run
        raise RejectedError(
            "DiscoveryFailed",
            f"table discovery failed: {redact_exception(exc, credentials)}",
            "connection-failed",
        ) from exc
    return found


async def narrow_for_resume(
    worker: RunWorker, spec: RockyRunSpec, tables: list[PlannedTable]
) -> tuple[list[PlannedTable], list[str]]:
    assert spec.resume_from is not None
    earlier = RunStore(worker.client, worker.namespace, spec.resume_from, "")
    doc = await earlier.load_output()
    if doc is None:
        raise RejectedError(
            "ResumeSourceNotFound",
            f"resumeFrom: RockyRun {spec.resume_from!r} has no complete output in "
            f"namespace {worker.namespace!r} (it does not exist or has not finished)",
            "not-found",
        )
    try:
        chain = read_chain(doc)  # its own tables and what it carried (a resumed run)
    except ValueError as exc:
        raise RejectedError(
            "ResumeSourceInvalid", f"resumeFrom: the output of {spec.resume_from!r}: {exc}"
        ) from exc
    kinds = set(spec.resume_kinds or [])
    keep: list[PlannedTable] = []
    skipped: list[str] = []
    for table in tables:
        failure = chain.failed.get(table.asset_key)
        if table.asset_key in chain.copied or (
            kinds and (failure is None or failure.kind.value not in kinds)
        ):
            skipped.append("/".join(table.asset_key))
        else:
            keep.append(table)
    # Stored before the plan (a restart in between plans again and rewrites it).
    await save_carried(worker.store, carried_fields(chain, (t.asset_key for t in keep)))
    return keep, skipped


async def save_carried(store: RunStore | None, fields: dict[str, Any]) -> None:
    """What a resumed run carries of its chain (``carried_copied`` / ``carried_failed``),
    kept with the run (ConfigMaps ``<run>-chain-N``) until its RunOutput is built."""
    if store is not None:
        await store.write_blob(CHAIN_ROLE, records.compress(fields))


async def load_carried(store: RunStore) -> dict[str, Any]:
    """The fields :func:`save_carried` stored; empty when there are none."""
    data = await store.read_blob(CHAIN_ROLE)
    doc = records.decompress(data) if data is not None else {}
    return {k: v for k, v in doc.items() if k in CARRIED_KEYS} if isinstance(doc, dict) else {}


def _latest(seen: int | None, current: Any) -> int | None:
    """The higher of two ``metadata.generation`` values (either may be unknown)."""
    numbers = [g for g in (seen, current) if isinstance(g, int)]
    return max(numbers) if numbers else None


def redact_exception(exc: BaseException, credentials: Mapping[str, str]) -> str:
    """The exception as one message without any form or fragment of a credential: the
    runner's redactor (``rocky_runner.redact``), so operator and runner agree."""
    from rocky_runner.redact import Redactor

    # Redact before cutting: a cut first could leave a fragment the redactor still sees,
    # but a cut after redaction can never create one.
    return Redactor(credentials.values())(f"{type(exc).__name__}: {exc}")[:2000]
