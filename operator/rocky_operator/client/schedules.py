"""Kubernetes API calls of the RockySchedule controller (synchronous Kubernetes client).

The only schedule code that talks to the API server: read a schedule, list its runs, create
and delete runs, patch the schedule's status. Client errors are converted once, here; creating
a run that exists (409) and deleting one that is gone (404) count as done.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rocky_operator.api import schedule as api
from rocky_operator.api.spec import PLURAL as RUN_PLURAL
from rocky_operator.client.result import RockyClientError

REQUEST_TIMEOUT = (10.0, 30.0)
MERGE_PATCH = "application/merge-patch+json"


class ScheduleNotFoundError(RockyClientError):
    """The RockySchedule is gone."""


class ScheduleApi:
    """RockySchedules and their RockyRuns through one ``kubernetes.client.ApiClient``."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client as k8s

        self.api_client = api_client
        self.custom = k8s.CustomObjectsApi(api_client)

    def _call(self, what: str, fn: Any, *args: Any, ok: tuple[int, ...] = (), **kw: Any) -> Any:
        from kubernetes.client import ApiException

        try:
            return fn(*args, _request_timeout=REQUEST_TIMEOUT, **kw)
        except ApiException as exc:
            if exc.status in ok:
                return None
            if exc.status == 404:
                raise ScheduleNotFoundError(f"{what}: not found") from exc
            try:
                message = json.loads(exc.body or "").get("message", exc.body)
            except (TypeError, ValueError, AttributeError):
                message = exc.body
            raise RockyClientError(f"{what}: {exc.status} {exc.reason}: {message}") from exc

    def get_schedule(self, namespace: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self._call(
            f"get RockySchedule {namespace}/{name}",
            self.custom.get_namespaced_custom_object,
            api.API_GROUP,
            api.API_VERSION,
            namespace,
            api.PLURAL,
            name,
        )
        return obj

    def list_runs(self, namespace: str, schedule: str) -> list[dict[str, Any]]:
        """RockyRuns labelled with this schedule's name."""
        result = self._call(
            f"list RockyRuns of {namespace}/{schedule}",
            self.custom.list_namespaced_custom_object,
            api.API_GROUP,
            api.API_VERSION,
            namespace,
            RUN_PLURAL,
            label_selector=f"{api.LABEL_SCHEDULE}={schedule}",
        )
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    def create_run(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """Create a RockyRun; False when one of that name exists already (409)."""
        created = self._call(
            f"create RockyRun {namespace}/{body['metadata']['name']}",
            self.custom.create_namespaced_custom_object,
            api.API_GROUP,
            api.API_VERSION,
            namespace,
            RUN_PLURAL,
            dict(body),
            ok=(409,),
        )
        return created is not None

    def delete_run(self, namespace: str, name: str) -> None:
        """Delete a RockyRun and (in the background) the pods and ConfigMaps it owns."""
        self._call(
            f"delete RockyRun {namespace}/{name}",
            self.custom.delete_namespaced_custom_object,
            api.API_GROUP,
            api.API_VERSION,
            namespace,
            RUN_PLURAL,
            name,
            ok=(404,),
            propagation_policy="Background",
        )

    def patch_schedule_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch the status subresource (lists such as conditions are replaced whole)."""
        self._call(
            f"patch RockySchedule {namespace}/{name} status",
            self.custom.patch_namespaced_custom_object_status,
            api.API_GROUP,
            api.API_VERSION,
            namespace,
            api.PLURAL,
            name,
            {"status": dict(status)},
            _content_type=MERGE_PATCH,
        )
