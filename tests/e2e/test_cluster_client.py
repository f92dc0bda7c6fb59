"""The Python client's cluster backend against the real kube-apiserver.

Submits RockyRuns (from a manifest dict, from the typed spec with generateName), waits on them
with a watch, and reads the result as rocky-sdk's RunResult with ``rocky run``'s exit code. The
run's status is written by the test through the status subresource, the way the operator writes
it (the status document comes from the operator's own builders); a large output is stored in
ConfigMaps in the operator's record format (``logic.records``), so the client's retrieval of the
complete RunOutput from a bounded status is checked too. Also: the timeout, and a manifest the
API server rejects.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from rocky_sdk import parse_rocky_output
from tests.support.control_plane import ControlPlane
from tests.support.e2e import apply_crds

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.api.status import OutputRef, RockyRunStatus
from rocky_operator.client import (
    ClusterClient,
    ManifestError,
    RockyClientError,
    RunConflictError,
    RunTimeoutError,
)
from rocky_operator.logic import records
from rocky_operator.logic.decide import Attempt, AttemptState, decide
from rocky_operator.logic.policy import RunPolicy
from rocky_operator.logic.run_output import build_run_output
from rocky_operator.logic.status import build_status, status_document
from rocky_operator.logic.tables import plan_tables
from rocky_runner.contract import FailureKind, TableResult

GROUP, VERSION = "rocky.dev", "v1alpha1"
START = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def _spec() -> dict[str, Any]:
    return {
        "adapter": {"type": "duckdb", "duckdb": {"path": "/data/warehouse.duckdb"}},
        "source": {"schemaPattern": {"components": ["tenant", "region", "source"]}},
        "target": {"catalogTemplate": "warehouse", "schemaTemplate": "{tenant}__{source}"},
        "retry": {
            k: {"maxRetries": 0} for k in ("transient", "connection-failed", "quota-exceeded")
        },
    }


class _Found:
    def __init__(self, i: int) -> None:
        self.catalog = None
        self.schema = "src__acme__eu__shop"
        self.table = f"t{i:04d}"
        self.components = {"tenant": "acme", "region": "eu", "source": "shop"}


def finished_status(
    n: int, failed: dict[int, FailureKind], error_chars: int = 40
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(status document, complete RunOutput) of a finished run, from the operator's builders."""
    spec = RockyRunSpec.model_validate(_spec())
    tables = plan_tables(spec, [_Found(i) for i in range(n)])
    attempts = []
    for i, t in enumerate(tables):
        kind = failed.get(i)
        result = TableResult(
            asset_key=list(t.asset_key),
            outcome="failed" if kind else "copied",
            rows_copied=None if kind else 3,
            failure_kind=kind,
            error=f"{kind}: " + "e" * error_chars if kind else None,
        )
        attempts.append(
            Attempt(
                t.key,
                1,
                AttemptState.FAILED if kind else AttemptState.COPIED,
                START,
                finished_at=START + timedelta(seconds=1),
                failure_kind=kind,
                error=result.error,
                result=result,
            )
        )
    now = START + timedelta(seconds=2)
    decision = decide([t.key for t in tables], attempts, RunPolicy.from_spec(spec), now)
    output = build_run_output(
        tables, decision.outcomes, started_at=START, finished_at=now, filter=""
    )
    status = build_status(
        decision=decision,
        attempts=attempts,
        resumed=0,
        previous=RockyRunStatus(),
        generation=1,
        start_time=START,
        now=now,
        run_output=output,
    )
    return status_document(status), output


@pytest.fixture
def crds(control_plane: ControlPlane) -> None:
    apply_crds(control_plane, "rockyruns.rocky.dev")


@pytest.fixture
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def _patch_status_later(
    custom: client.CustomObjectsApi, ns: str, name: str, status: dict[str, Any], delay: float
) -> threading.Thread:
    def patch() -> None:
        time.sleep(delay)
        custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            ns,
            "rockyruns",
            name,
            {"status": status},
            _content_type="application/merge-patch+json",
        )

    thread = threading.Thread(target=patch, daemon=True)
    thread.start()
    return thread


def test_submit_manifest_wait_and_read_partial_failure(
    crds: None, namespace: str, api_client: client.ApiClient, custom: client.CustomObjectsApi
) -> None:
    planted = {1: FailureKind.AUTH_FAILED, 3: FailureKind.TRANSIENT}
    status, output = finished_status(6, planted)
    with ClusterClient(namespace, api_client=api_client) as rocky:
        name = rocky.submit(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "RockyRun",
                "metadata": {"name": "nightly"},
                "spec": _spec(),
            }
        )
        assert name == "nightly"
        # First a Running status (not complete), then the finished one: the watch sees both.
        _patch_status_later(custom, namespace, name, {"phase": "Running"}, 0.5)
        thread = _patch_status_later(custom, namespace, name, status, 1.5)
        started = time.monotonic()
        outcome = rocky.wait(name, timeout=30)
        thread.join()
    assert time.monotonic() - started < 10
    assert outcome.exit_code == 2
    assert outcome.phase == "PartialFailure"
    assert outcome.result.tables_copied == 4
    assert sorted(e.failure_kind for e in outcome.result.errors) == ["auth-failed", "transient"]
    # status.runOutput is stored without nulls; read with rocky-sdk it is the same output.
    assert outcome.result == parse_rocky_output(json.dumps(output))


def test_typed_spec_with_generate_name_and_output_in_config_maps(
    crds: None,
    namespace: str,
    api_client: client.ApiClient,
    custom: client.CustomObjectsApi,
    core_v1: client.CoreV1Api,
) -> None:
    """A bounded status (runOutputTruncated): the complete output comes from the ConfigMaps."""
    failed = {i: FailureKind.NOT_FOUND for i in range(0, 300, 2)}
    status, output = finished_status(300, failed, error_chars=3000)
    assert status["runOutputTruncated"] is True
    with ClusterClient(namespace, api_client=api_client) as rocky:
        name = rocky.submit(RockyRunSpec.model_validate(_spec()), generate_name="typed-")
        assert name.startswith("typed-")
        raw = records.compress(output)
        parts = records.split(raw, size=100_000)
        assert len(parts) >= 1
        names = []
        for i, part in enumerate(parts):
            cm = f"{name}-output-{i}"
            names.append(cm)
            core_v1.create_namespaced_config_map(
                namespace,
                client.V1ConfigMap(
                    metadata=client.V1ObjectMeta(name=cm),
                    binary_data={"part": base64.b64encode(part).decode()},
                ),
            )
        plain = records.decompress(raw)
        encoded = json.dumps(plain, separators=(",", ":"), ensure_ascii=False).encode()
        status["output"] = OutputRef(
            config_maps=names, bytes=len(encoded), sha256=records.digest(encoded)
        ).model_dump(by_alias=True)
        custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            "rockyruns",
            name,
            {"status": status},
            _content_type="application/merge-patch+json",
        )
        outcome = rocky.wait(name, timeout=30)
    assert outcome.exit_code == 2
    assert len(outcome.result.errors) == 150  # all of them, not the status's bounded 100
    assert len(status["runOutput"]["errors"]) < 150
    assert all(len(e.error) > 3000 for e in outcome.result.errors)


def test_submitting_the_same_name_again_adopts_only_the_same_run(
    crds: None, namespace: str, api_client: client.ApiClient
) -> None:
    """A restarted caller (e.g. a Dagster step) re-attaches to its run; a different run of the
    same name is a conflict, never silently taken for this one."""
    spec = RockyRunSpec.model_validate(_spec())
    with ClusterClient(namespace, api_client=api_client) as rocky:
        assert rocky.submit(spec, name="attempt-0") == "attempt-0"
        assert rocky.submit(spec, name="attempt-0", adopt=True) == "attempt-0"
        with pytest.raises(RunConflictError):
            rocky.submit(spec, name="attempt-0")  # without adopt: 409 is an error
        other = RockyRunSpec.model_validate({**_spec(), "filter": "tenant=acme"})
        with pytest.raises(RunConflictError, match="different spec"):
            rocky.submit(other, name="attempt-0", adopt=True)


def test_timeout_and_rejected_manifests(
    crds: None, namespace: str, api_client: client.ApiClient
) -> None:
    with ClusterClient(namespace, api_client=api_client) as rocky:
        name = rocky.submit(RockyRunSpec.model_validate(_spec()), name="slow")
        with pytest.raises(RunTimeoutError, match="did not finish within 2 s"):
            rocky.wait(name, timeout=2, watch_seconds=1)
        with pytest.raises(ManifestError, match=r"spec\.adapter"):
            rocky.submit(
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "RockyRun",
                    "metadata": {"name": "bad"},
                    "spec": {"adapter": {}},
                }
            )
        # The client's own checks passed, the API server's name rule did not.
        with pytest.raises(RockyClientError, match="at most 63 characters"):
            rocky.submit(RockyRunSpec.model_validate(_spec()), name="r" * 70)
