"""Discovery in a pod: the channel (pod log + termination summary) carries thousands of
tables intact and refuses an incomplete or altered log; ``rocky-runner`` with
``ROCKY_DISCOVERY`` lists a real DuckDB warehouse through it, and reports a failure
classified and redacted; the discovery pod manifest keeps the run's image, Secret
references, volumes and restricted security context, and always runs the runner."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rocky_operator.api.spec import RockyRunSpec
from rocky_operator.logic.discovery_pod import (
    build_discovery_pod,
    discovery_task,
    observe_discovery_pod,
)
from rocky_operator.logic.pod_manifest import RunnerDefaults
from rocky_runner.discovery_channel import (
    ENV_DISCOVERY,
    ChannelError,
    ListedTable,
    decode_tables,
    encode_tables,
    parse_summary,
)
from rocky_runner.discovery_task import run_discovery

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.none() | names, names, names, st.dictionaries(names, names, max_size=3)),
        max_size=60,
    ),
    noise=st.lists(st.text(max_size=80).filter(lambda s: "rocky-discovery" not in s), max_size=5),
)
def test_channel_round_trip_among_other_log_lines(
    rows: list[tuple[str | None, str, str, dict[str, str]]], noise: list[str]
) -> None:
    tables = [ListedTable(*r) for r in rows]
    lines, summary = encode_tables(tables)
    log = "\n".join([*noise, *lines, *noise])
    assert decode_tables(log, parse_summary(json.dumps(summary)) or {}) == tables


def test_channel_has_room_for_a_hundred_thousand_tables() -> None:
    tables = [
        ListedTable("warehouse", f"src__tenant{i % 500}__eu__shop", f"table_{i:06d}", {"t": str(i)})
        for i in range(100_000)
    ]
    lines, summary = encode_tables(tables)
    log_bytes = sum(len(line) + 1 for line in lines)
    assert log_bytes < 8 * 1024 * 1024  # under a kubelet's default 10 MiB log rotation
    assert max(len(line) for line in lines) < 16 * 1024  # no line split by the runtime
    assert len(json.dumps(summary)) < 4096  # fits a termination message
    assert decode_tables("\n".join(lines), summary) == tables


def test_channel_refuses_a_partial_or_altered_log() -> None:
    tables = [ListedTable(None, f"s{i}", f"t{i}", {}) for i in range(3000)]
    lines, summary = encode_tables(tables)
    assert len(lines) > 1
    with pytest.raises(ChannelError, match="parts"):
        decode_tables("\n".join(lines[1:]), summary)
    altered = [*lines[:-1], lines[-1][:-4] + "AAAA"]
    with pytest.raises(ChannelError):
        decode_tables("\n".join(altered), summary)


def _warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    for schema in ("src__acme__shop", "src__globex__shop", "other"):
        con.execute(f"CREATE SCHEMA {schema}")
        for table in ("orders", "users"):
            con.execute(f"CREATE TABLE {schema}.{table} AS SELECT 1 AS id")
    con.close()
    return path


def _spec(path: str, **runner: object) -> RockyRunSpec:
    return RockyRunSpec.model_validate(
        {
            "adapter": {"type": "duckdb", "duckdb": {"path": path}},
            "source": {
                "schemaPattern": {
                    "prefix": "src__",
                    "separator": "__",
                    "components": ["tenant", "source"],
                }
            },
            "target": {"catalogTemplate": "t_{tenant}", "schemaTemplate": "staging__{tenant}"},
            "runner": runner,
        }
    )


def test_runner_discovers_through_the_channel(tmp_path: Path) -> None:
    spec = _spec(str(_warehouse(tmp_path)))
    result = tmp_path / "result"
    stdout, stderr = io.StringIO(), io.StringIO()
    env = {ENV_DISCOVERY: discovery_task(spec).model_dump_json(), "ROCKY_RESULT_PATH": str(result)}
    assert run_discovery(env, stdout, stderr) == 0
    summary = parse_summary(result.read_text())
    assert summary is not None
    tables = decode_tables(stderr.getvalue() + stdout.getvalue(), summary)
    assert sorted((t.schema, t.table) for t in tables) == [
        (s, t) for s in ("src__acme__shop", "src__globex__shop") for t in ("orders", "users")
    ]
    assert tables[0].components == {"tenant": "acme", "source": "shop"}


def test_runner_discovery_failure_is_classified_and_redacted(tmp_path: Path) -> None:
    secret = "Sentinel-'quote\\back-Dapi-0123456789"
    spec = _spec(str(tmp_path / f"missing-{secret}.duckdb"))
    result = tmp_path / "result"
    stdout, stderr = io.StringIO(), io.StringIO()
    env = {
        ENV_DISCOVERY: discovery_task(spec).model_dump_json(),
        "ROCKY_RESULT_PATH": str(result),
        "ROCKY_DATABRICKS_TOKEN": secret,
    }
    code = run_discovery(env, stdout, stderr)
    summary = parse_summary(result.read_text())
    assert summary is not None
    assert summary["outcome"] == "failed"
    assert code != 0
    assert summary["failure_kind"] in ("connection-failed", "not-found")
    everything = result.read_text() + stdout.getvalue() + stderr.getvalue()
    for i in range(len(secret) - 5):
        assert secret[i : i + 6].lower() not in everything.lower()
    assert "***" in summary["error"]


def test_discovery_pod_keeps_the_runs_identity_and_restrictions() -> None:
    spec = _spec(
        "/data/w.duckdb",
        image="ghcr.io/acme/rocky:2",
        command=["sleep", "600"],
        serviceAccountName="etl",
        volumes=[{"name": "w", "persistentVolumeClaim": {"claimName": "w"}}],
        volumeMounts=[{"name": "w", "mountPath": "/data"}],
    )
    pod = build_discovery_pod(
        run_name="nightly", run_uid="u1", namespace="ns", spec=spec, deadline_seconds=300,
        defaults=RunnerDefaults(),
    )  # fmt: skip
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "ghcr.io/acme/rocky:2"
    assert container["command"] == ["rocky-runner"]  # the run's copy wrapper is not used
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["serviceAccountName"] == "etl"
    assert {"name": "w", "mountPath": "/data"} in container["volumeMounts"]
    assert pod["metadata"]["name"] == "nightly-discovery"
    assert pod["metadata"]["labels"]["rocky.dev/role"] == "discovery"
    assert "rocky.dev/table" not in pod["metadata"]["labels"]  # never taken for an attempt
    assert ENV_DISCOVERY in {e["name"] for e in container["env"]}


def test_missing_secret_fails_discovery_as_auth_failed_after_the_grace() -> None:
    created = "2026-01-01T00:00:00Z"
    pod = {
        "metadata": {"creationTimestamp": created},
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "runner",
                    "state": {
                        "waiting": {
                            "reason": "CreateContainerConfigError",
                            "message": 'secret "sf" not found',
                        }
                    },
                }
            ],
        },
    }
    early = observe_discovery_pod(pod, datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC), 60)
    assert not early.done
    late = observe_discovery_pod(pod, datetime(2026, 1, 1, 0, 2, tzinfo=UTC), 60)
    assert late.done
    assert late.failure_kind == "auth-failed"
    assert late.reason == "SecretNotFound"
    assert 'secret "sf" not found' in late.error


def _waiting_discovery(message: str) -> dict[str, Any]:
    return {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "runner",
                    "state": {
                        "waiting": {"reason": "CreateContainerConfigError", "message": message}
                    },
                }
            ],
        },
    }


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ('secret "not-there" not found', "auth-failed"),
        ("couldn't find key token in Secret ns/sf", "auth-failed"),
        ('configmap "settings" not found', "not-found"),
    ],
)
def test_a_named_missing_secret_fails_discovery_well_before_the_full_grace(
    message: str, kind: str
) -> None:
    """Issue 10 case 10: the kubelet names the missing object, so the run fails within
    DEFINITIVE_GRACE_SECONDS (10 s), not after the full stuck grace (here 120 s)."""
    pod = _waiting_discovery(message)
    assert not observe_discovery_pod(pod, datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC), 120).done
    state = observe_discovery_pod(pod, datetime(2026, 1, 1, 0, 0, 11, tzinfo=UTC), 120)
    assert state.done
    assert state.failure_kind == kind
    assert message in state.error


def test_an_unnamed_config_error_waits_the_full_grace() -> None:
    pod = _waiting_discovery("failed to prepare subPath for volumeMount")
    assert not observe_discovery_pod(pod, datetime(2026, 1, 1, 0, 1, tzinfo=UTC), 120).done
    late = observe_discovery_pod(pod, datetime(2026, 1, 1, 0, 2, 1, tzinfo=UTC), 120)
    assert late.done
