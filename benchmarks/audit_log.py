"""The kube-apiserver's audit log, read the same way by every benchmark on the real control
plane (tests/support/control_plane.py writes it at level Metadata, stage RequestReceived
omitted).

A long request (a watch) is logged twice, at ResponseStarted and at ResponseComplete, and a
request still in flight when the log is read has only the first: each request is counted
once, by ``auditID``, with the time it was received.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class Request:
    user: str
    verb: str
    resource: str
    """``pods``, ``pods/status``, ``rockyruns/status``, ..."""
    namespace: str
    name: str
    received: datetime
    code: int


def read_requests(audit_log: Path, since: int = 0) -> list[Request]:
    """Every request logged after byte offset ``since``, once each, in log order."""
    seen: set[str] = set()
    found: list[Request] = []
    with audit_log.open("rb") as fh:
        fh.seek(since)
        for line in fh:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line still being written
            audit_id = str(event.get("auditID"))
            if audit_id in seen:
                continue
            seen.add(audit_id)
            ref = event.get("objectRef") or {}
            resource = str(ref.get("resource") or event.get("requestURI", "?"))
            if ref.get("subresource"):
                resource += "/" + str(ref["subresource"])
            found.append(
                Request(
                    user=str((event.get("user") or {}).get("username", "?")),
                    verb=str(event.get("verb", "?")),
                    resource=resource,
                    namespace=str(ref.get("namespace") or ""),
                    name=str(ref.get("name") or ""),
                    received=datetime.fromisoformat(
                        str(event["requestReceivedTimestamp"]).replace("Z", "+00:00")
                    ),
                    code=int((event.get("responseStatus") or {}).get("code") or 0),
                )
            )
    return found


def by_user(requests: Iterable[Request]) -> Counter[str]:
    return Counter(r.user for r in requests)


def by_verb_and_resource(requests: Iterable[Request], user: str) -> Counter[str]:
    return Counter(f"{r.verb} {r.resource}" for r in requests if r.user == user)
