"""Kubernetes API calls of the RockySchedule controller, over the operator's one API client.

The only schedule code that talks to the API server: read a schedule, list its runs, create
and delete runs, patch the schedule's status. It goes through
:class:`~rocky_operator.kube.client.KubeClient` (the run workers' client, in the operator's
event loop): no second client, no threads. Client errors are converted once, here; creating
a run that exists (409) and deleting one that is gone (404) count as done.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from rocky_operator.api import schedule as api
from rocky_operator.api.spec import PLURAL as RUN_PLURAL
from rocky_operator.client.result import RockyClientError
from rocky_operator.kube.client import MERGE_PATCH, KubeClient, KubeError


class ScheduleNotFoundError(RockyClientError):
    """The RockySchedule is gone."""


def _path(namespace: str, plural: str, name: str | None = None) -> str:
    base = f"/apis/{api.API_GROUP}/{api.API_VERSION}/namespaces/{quote(namespace)}/{plural}"
    return f"{base}/{quote(name)}" if name else base


class ScheduleApi:
    """RockySchedules and their RockyRuns through the operator's :class:`KubeClient`."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client

    async def _call(
        self,
        what: str,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (),
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        try:
            return await self.client.request(
                method, path, query=query, body=body, content_type=content_type
            )
        except KubeError as exc:
            if exc.status in ok:
                return None
            if exc.status == 404:
                raise ScheduleNotFoundError(f"{what}: not found") from exc
            raise RockyClientError(f"{what}: {exc.status} {exc.reason}: {exc.message}") from exc

    async def get_schedule(self, namespace: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = await self._call(
            f"get RockySchedule {namespace}/{name}", "GET", _path(namespace, api.PLURAL, name)
        )
        return obj

    async def list_runs(self, namespace: str, schedule: str) -> list[dict[str, Any]]:
        """RockyRuns labelled with this schedule's name."""
        result = await self._call(
            f"list RockyRuns of {namespace}/{schedule}",
            "GET",
            _path(namespace, RUN_PLURAL),
            query=[("labelSelector", f"{api.LABEL_SCHEDULE}={schedule}")],
        )
        items: list[dict[str, Any]] = result.get("items") or []
        return items

    async def create_run(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """Create a RockyRun; False when one of that name exists already (409)."""
        created = await self._call(
            f"create RockyRun {namespace}/{body['metadata']['name']}",
            "POST",
            _path(namespace, RUN_PLURAL),
            body=dict(body),
            ok=(409,),
        )
        return created is not None

    async def delete_run(self, namespace: str, name: str) -> None:
        """Delete a RockyRun and (in the background) the pods and ConfigMaps it owns."""
        await self._call(
            f"delete RockyRun {namespace}/{name}",
            "DELETE",
            _path(namespace, RUN_PLURAL, name),
            body={"propagationPolicy": "Background"},
            ok=(404,),
        )

    async def patch_schedule_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        """Merge-patch the status subresource (lists such as conditions are replaced whole)."""
        await self._call(
            f"patch RockySchedule {namespace}/{name} status",
            "PATCH",
            _path(namespace, api.PLURAL, name) + "/status",
            body={"status": dict(status)},
            content_type=MERGE_PATCH,
        )
