"""The kopf handlers: the only module with ``@kopf`` decorators.

They are deliberately thin. A RockyRun event makes sure a run worker
(:class:`rocky_operator.kube.worker.RunWorker`) drives the run; an event of one
of its pods wakes that worker, through the operator's own pod watch
(:mod:`rocky_operator.kube.pod_watch`, started here with kopf, so by the leader only),
not a kopf handler: kopf would keep a diff-base and progress for every pod event. The
worker does the level-based pass (observe pods and journal, ``decide()``, create / delete
pods, write status once), so bursts of pod events coalesce into one pass and one status
write instead of one per event.

kopf keeps its own bookkeeping in annotations (``rocky.dev/…``), never in the
status: the structural schema would prune unknown status fields.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from rocky_operator.api.spec import API_GROUP, API_VERSION, PLURAL
from rocky_operator.kube.configuration import CredentialRefresher, authorization
from rocky_operator.kube.runtime import Runtime


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Annotations for kopf's progress and diff-base; no kopf Events from log lines.

    Posting stays enabled: ``settings.posting.enabled = False`` would also make
    ``kopf.event()`` a no-op, and the RockySchedule daemon posts its Events that way
    (``RunCreated``, ``RunDeleted``, ...). kopf posts a log line as an Event only at or
    above ``settings.posting.level``; above CRITICAL, none is. ``kopf.event()`` ignores
    the level. (The RockyRun workers post their Events with their own client.)"""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="rocky.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="rocky.dev", key="last-handled-configuration"
    )
    settings.posting.enabled = True
    settings.posting.level = logging.CRITICAL + 1
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    runtime = _runtime(memo)
    await runtime.start()
    runtime.start_watching()


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    await _runtime(memo).stop()


@kopf.on.login()
async def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """kopf talks to the same API server, with the same credentials, as the run workers: the
    one configuration of ``kube/configuration.py``, its credentials re-loaded first (kopf logs
    in again after a 401: an expired exec-plugin token, a rotated ServiceAccount token)."""
    config = _runtime(memo).configuration
    refresher = config.refresh_api_key_hook
    header = await authorization(config, force=True) or ""
    scheme, _sep, token = header.rpartition(" ")
    return kopf.ConnectionInfo(
        server=str(config.host),
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        scheme=scheme or ("Bearer" if token else None),
        token=token or None,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
        expiration=refresher.expiration if isinstance(refresher, CredentialRefresher) else None,
    )


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def rockyrun_event(
    type: str, body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    """Start driving a run (idempotent); stop when it is deleted."""
    controller = _runtime(memo).controller
    namespace = namespace or ""  # RockyRuns are namespaced
    if type == "DELETED":
        await controller.forget(namespace, name)
    else:
        controller.touch_run(namespace, name, body)


@kopf.on.probe(id="runs")
def active_runs(memo: kopf.Memo, **_: Any) -> int:
    """For kopf's liveness endpoint: how many runs this process drives."""
    return len(_runtime(memo).controller.workers)


logging.getLogger("kopf.objects").setLevel(logging.WARNING)
