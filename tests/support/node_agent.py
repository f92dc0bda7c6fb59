"""A process "kubelet" for the end-to-end tests: pods bound to its Node run as local processes.

There is no container engine here, so the agent does what a kubelet does minus the containers:

- registers a Node (Ready, capacity `pods = --max-pods`) and renews its Lease every 10 s;
- binds every Pending pod that has no `spec.nodeName` to that Node (Binding subresource), the
  scheduler's job in a real cluster;
- runs each pod's first container `command` + `args` as a process in its own process group, with
  the container environment (`value`, `valueFrom` secretKeyRef / configMapKeyRef / fieldRef,
  `envFrom`), `$(VAR)` expansion as the kubelet does, and `PATH` led by the agent's Python so
  `python` and `rocky-runner` resolve to the test environment;
- reports status the way a kubelet does: phase Pending / Running / Succeeded / Failed, conditions,
  containerStatuses waiting / running / terminated with exitCode, reason (Completed, Error,
  OOMKilled), message, startedAt / finishedAt, restartCount.

Substitutions (documented in docs/control-plane.md):

- Termination message: a process cannot write the container path `/dev/termination-log`. Each
  container gets a per-pod file instead; every env var whose value equals the container's
  `terminationMessagePath` is rewritten to that file, and `ROCKY_RESULT_PATH` is set to it when
  the pod does not set it. The file is read back after exit, cut at 4096 bytes like a kubelet;
  `terminationMessagePolicy: FallbackToLogsOnError` uses the last 80 lines / 2048 bytes of the
  log when the file is empty and the exit code is not 0.
- A missing Secret / ConfigMap / key leaves the container waiting with reason
  `CreateContainerConfigError` and the kubelet's message; the agent retries every 2 s.
- `activeDeadlineSeconds` (counted from `status.startTime`): the process is stopped and the pod
  ends Failed with reason `DeadlineExceeded`.
- Deletion: SIGTERM to the process group, the pod's grace period, SIGKILL, a final status, then
  the pod is removed with grace period 0.
- Test hooks, pod annotation `test.rocky.dev/simulate`:
    - `oom-kill`: the process is killed with SIGKILL and reported `OOMKilled`, exit code 137;
    - `evict`: the process is killed, the pod gets condition `DisruptionTarget` and ends Failed
      with reason `Evicted`, as the kubelet's eviction manager does;
    - `image-pull-backoff`: the container never starts and waits with `ErrImagePull`, then
      `ImagePullBackOff`.
  `test.rocky.dev/simulate-after-seconds` (default 0) delays oom-kill / evict after the start;
  annotating a running pod with `oom-kill` / `evict` fires the hook at once (this is how a test
  hits one pod of many that a controller created). An image from a registry under the reserved
  `.invalid` TLD (e.g. `registry.invalid/runner:1`) cannot be pulled either.

Synthetic results (`--synthetic-results`, for benchmarks of the controllers, not of the runner):
no process is started; a pod's container ends at once with a valid runner result in its
termination message (`rocky_runner.contract.TableResult` for the asset key of its `ROCKY_TASK`,
`copied`, 0 rows, exit code 0). Tables whose `/`-joined asset key matches
`--synthetic-fail-pattern` (a regular expression) fail instead with `--synthetic-fail-kind`
(default `query-rejected`) and the runner's exit code for that kind. Binding, env resolution,
deletion and `activeDeadlineSeconds` behave as without the flag; the status goes straight from
Pending to the terminal phase (one status write per pod). A discovery pod (env `ROCKY_DISCOVERY`)
still runs for real: its answer is the run's plan.

Logs of each container go to `<work-dir>/pods/<namespace>_<name>_<uid>/<container>.log`; with
`--kubelet-port` the agent serves them on the kubelet API path the API server proxies
`kubectl logs` to (no `--follow`). It emits no Events.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import platform
import re
import shutil
import signal
import ssl
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from tests.support.kubeapi import JSON, ApiError, KubeApi, KubeConfig
from tests.support.procs import die_with_parent_process

from rocky_runner.contract import FailureKind, TableResult, encode_result, exit_code_for

log = logging.getLogger("rocky.node_agent")

SIMULATE_ANNOTATION = "test.rocky.dev/simulate"
SIMULATE_AFTER_ANNOTATION = "test.rocky.dev/simulate-after-seconds"
SIMULATIONS = ("oom-kill", "evict", "image-pull-backoff")
KILL_SIMULATIONS = ("oom-kill", "evict")

MAX_TERMINATION_MESSAGE_BYTES = 4096
FALLBACK_LOG_BYTES = 2048
FALLBACK_LOG_LINES = 80
CONFIG_RETRY_SECONDS = 2.0
LEASE_SECONDS = 40
RENEW_SECONDS = 10.0
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# How many finished pod uids the agent remembers, to ignore stale watch events about them.
FINISHED_MEMORY = 100_000

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def expand_vars(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are replaced, `$$` escapes, unknown stay."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _VAR_REF.sub(repl, text)


def unpullable(image: str) -> bool:
    """Images from a registry under the reserved `.invalid` TLD can never be pulled."""
    first, sep, _ = image.partition("/")
    host = first.split(":", 1)[0]
    return bool(sep) and host.endswith(".invalid")


def read_termination_message(path: Path, log_path: Path, *, policy: str, exit_code: int) -> str:
    """The kubelet's termination message: the file (first 4096 bytes), else the log tail."""
    data = b""
    with contextlib.suppress(OSError), path.open("rb") as fh:
        data = fh.read(MAX_TERMINATION_MESSAGE_BYTES)
    if data or policy != "FallbackToLogsOnError" or exit_code == 0:
        return data.decode("utf-8", errors="replace")
    return tail_log(log_path)


def tail_log(log_path: Path) -> str:
    """The last 80 lines of a log, at most 2048 bytes (kubelet's fallback limits)."""
    try:
        with log_path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return ""
    lines = data.splitlines(keepends=True)[-FALLBACK_LOG_LINES:]
    text = b"".join(lines)[-FALLBACK_LOG_BYTES:]
    return text.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class SyntheticResults:
    """`--synthetic-results`: pods end at once with this result instead of running a process."""

    fail_pattern: re.Pattern[str] | None = None
    """Asset keys (joined by `/`) that match fail instead of copying."""
    fail_kind: FailureKind = FailureKind.QUERY_REJECTED

    def result_for(self, task_json: str | None, pod_name: str) -> TableResult:
        """The runner result for a pod whose `ROCKY_TASK` is `task_json` (absent: a Job pod)."""
        asset_key = ["synthetic", pod_name]
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            found = json.loads(task_json or "").get("asset_key")
            if isinstance(found, list) and found:
                asset_key = [str(part) for part in found]
        joined = "/".join(asset_key)
        if self.fail_pattern is not None and self.fail_pattern.search(joined):
            return TableResult(
                asset_key=asset_key,
                outcome="failed",
                failure_kind=self.fail_kind,
                error=f"synthetic failure planted by the node agent for {joined}",
                metadata={"synthetic": True},
            )
        return TableResult(
            asset_key=asset_key, outcome="copied", rows_copied=0, metadata={"synthetic": True}
        )


class ConfigError(Exception):
    """The container cannot be configured yet (kubelet: CreateContainerConfigError)."""


@dataclass
class ContainerRecord:
    """What the agent knows about the one container it runs for a pod."""

    name: str
    image: str
    restart_count: int = 0
    state: JSON = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: JSON = field(default_factory=dict)
    ready: bool = False
    started: bool = False

    def as_status(self) -> JSON:
        return {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "containerID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }


class PodWorker:
    """Drives one pod from binding to a terminal phase (or its deletion)."""

    def __init__(self, agent: NodeAgent, pod: JSON) -> None:
        self.agent = agent
        self.pod = pod
        meta = pod["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        spec = pod["spec"]
        self.container: JSON = spec["containers"][0]
        self.record = ContainerRecord(self.container["name"], self.container.get("image", ""))
        self.dir = agent.work_dir / "pods" / f"{self.namespace}_{self.name}_{self.uid}"
        self.log_path = self.dir / f"{self.container['name']}.log"
        self.message_path = self.dir / "termination-log"
        self.deleting = asyncio.Event()
        self.simulate_now = asyncio.Event()
        self._hook_seen = (meta.get("annotations") or {}).get(SIMULATE_ANNOTATION)
        self.start_time = (pod.get("status") or {}).get("startTime") or now_rfc3339()
        self.conditions: dict[str, JSON] = {}
        self.proc: asyncio.subprocess.Process | None = None
        self._last_posted: JSON | None = None
        self._proc_wait: asyncio.Future[int] | None = None
        if meta.get("deletionTimestamp"):
            self.deleting.set()

    # -- inputs -------------------------------------------------------------------------------

    def observe(self, pod: JSON) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.deleting.set()
        hook = self.annotations.get(SIMULATE_ANNOTATION)
        if hook != self._hook_seen and hook in KILL_SIMULATIONS:
            # Annotated later (kubectl annotate pod ...): the hook fires now.
            self.simulate_now.set()
        self._hook_seen = hook

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.pod["metadata"].get("annotations") or {}

    def deadline_remaining(self) -> float | None:
        seconds = self.pod["spec"].get("activeDeadlineSeconds")
        if seconds is None:
            return None
        elapsed = (datetime.now(UTC) - parse_rfc3339(self.start_time)).total_seconds()
        return max(0.0, float(seconds) - elapsed)

    # -- status -------------------------------------------------------------------------------

    def _condition(
        self, ctype: str, status: bool, reason: str | None = None, msg: str = ""
    ) -> None:
        value = "True" if status else "False"
        old = self.conditions.get(ctype)
        cond: JSON = {
            "type": ctype,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": (
                old["lastTransitionTime"] if old and old["status"] == value else now_rfc3339()
            ),
        }
        if reason:
            cond["reason"] = reason
        if msg:
            cond["message"] = msg
        self.conditions[ctype] = cond

    async def post_status(
        self, phase: str, *, reason: str | None = None, message: str | None = None
    ) -> None:
        running = "running" in self.record.state
        terminal = phase in ("Succeeded", "Failed")
        self._condition("PodReadyToStartContainers", not terminal)
        self._condition("Initialized", True)
        not_ready = None if running else ("PodCompleted" if terminal else "ContainersNotReady")
        self._condition("Ready", running, not_ready)
        self._condition("ContainersReady", running, not_ready)
        self._condition("PodScheduled", True)
        status: JSON = {
            "phase": phase,
            "conditions": list(self.conditions.values()),
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            # No qosClass: the API server sets it at creation from the pod's resources and
            # refuses any change (a pod with requests is Burstable, not BestEffort).
            "containerStatuses": [self.record.as_status()],
            "reason": reason,
            "message": message,
        }
        if status == self._last_posted:
            return
        try:
            await self.agent.api.merge_patch(f"{self.path}/status", {"status": status})
            self._last_posted = status
        except ApiError as exc:
            if exc.status != 404:
                raise
            self.deleting.set()

    # -- environment --------------------------------------------------------------------------

    async def resolve_env(self) -> dict[str, str]:
        """The container environment, resolving references like the kubelet (or ConfigError)."""
        cache: dict[tuple[str, str], JSON | None] = {}

        async def fetch(kind: str, name: str) -> JSON | None:
            key = (kind, name)
            if key not in cache:
                try:
                    cache[key] = await self.agent.api.get(
                        f"/api/v1/namespaces/{self.namespace}/{kind}s/{name}"
                    )
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    cache[key] = None
            return cache[key]

        def values(obj: JSON, kind: str) -> dict[str, str]:
            if kind == "secret":
                return {
                    k: base64.b64decode(v).decode("utf-8", errors="replace")
                    for k, v in (obj.get("data") or {}).items()
                }
            out = dict(obj.get("data") or {})
            for k, v in (obj.get("binaryData") or {}).items():
                out[k] = base64.b64decode(v).decode("utf-8", errors="replace")
            return out

        env: dict[str, str] = {}
        for source in self.container.get("envFrom") or []:
            for kind, ref_key in (("configmap", "configMapRef"), ("secret", "secretRef")):
                ref = source.get(ref_key)
                if ref is None:
                    continue
                obj = await fetch(kind, ref["name"])
                if obj is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f'{kind} "{ref["name"]}" not found')
                prefix = source.get("prefix", "")
                for k, v in values(obj, kind).items():
                    env[prefix + k] = v
        for var in self.container.get("env") or []:
            name = var["name"]
            if "valueFrom" not in var:
                env[name] = expand_vars(var.get("value", ""), env)
                continue
            source = var["valueFrom"]
            if "fieldRef" in source:
                env[name] = self._field_value(source["fieldRef"]["fieldPath"])
                continue
            for kind, ref_key, label in (
                ("secret", "secretKeyRef", "Secret"),
                ("configmap", "configMapKeyRef", "ConfigMap"),
            ):
                ref = source.get(ref_key)
                if ref is None:
                    continue
                obj = await fetch(kind, ref["name"])
                if obj is None:
                    if ref.get("optional"):
                        break
                    raise ConfigError(f'{kind} "{ref["name"]}" not found')
                data = values(obj, kind)
                if ref["key"] not in data:
                    if ref.get("optional"):
                        break
                    raise ConfigError(
                        f"couldn't find key {ref['key']} in {label} {self.namespace}/{ref['name']}"
                    )
                env[name] = data[ref["key"]]
                break
        return env

    def _field_value(self, field_path: str) -> str:
        meta = self.pod["metadata"]
        simple: dict[str, str] = {
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "metadata.uid": self.uid,
            "spec.nodeName": self.agent.node_name,
            "spec.serviceAccountName": str(self.pod["spec"].get("serviceAccountName", "")),
            "status.hostIP": "127.0.0.1",
            "status.podIP": "127.0.0.1",
        }
        if field_path in simple:
            return simple[field_path]
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", field_path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        raise ConfigError(f"unsupported fieldRef {field_path!r}")

    def process_env(self, env: dict[str, str]) -> dict[str, str]:
        """The process environment: container env, message-path substitution, a usable PATH."""
        message_path = self.container.get(
            "terminationMessagePath", DEFAULT_TERMINATION_MESSAGE_PATH
        )
        out = {k: (str(self.message_path) if v == message_path else v) for k, v in env.items()}
        out.setdefault("ROCKY_RESULT_PATH", str(self.message_path))
        base = {
            "PATH": os.pathsep.join(
                [str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]
            ),
            "HOME": str(self.dir),
            "HOSTNAME": self.name,
            "LANG": "C.UTF-8",
        }
        for name in ("VIRTUAL_ENV", "TMPDIR"):
            if name in os.environ:
                base[name] = os.environ[name]
        return {**base, **out}

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            await self._kill(signal.SIGKILL)
            raise
        except Exception:
            log.exception("pod %s/%s: agent error", self.namespace, self.name)
            await self._kill(signal.SIGKILL)

    async def _wait_any(self, *aws: Any, limit: float | None) -> set[asyncio.Task[Any]]:
        tasks = {asyncio.ensure_future(a) for a in aws}
        try:
            done, _ = await asyncio.wait(tasks, timeout=limit, return_when="FIRST_COMPLETED")
        finally:
            for t in tasks:
                if not t.done() and t is not self._proc_wait:
                    t.cancel()
        return done

    async def _interrupted(self, seconds: float | None) -> str | None:
        """Wait up to `seconds`; "deleted" / "deadline" when the pod must stop, else None."""
        remaining = self.deadline_remaining()
        limit = seconds if remaining is None else min(remaining, seconds or remaining)
        if self.deleting.is_set():
            return "deleted"
        if remaining is not None and remaining <= 0:
            return "deadline"
        await self._wait_any(self.deleting.wait(), limit=limit)
        if self.deleting.is_set():
            return "deleted"
        remaining = self.deadline_remaining()
        if remaining is not None and remaining <= 0:
            return "deadline"
        return None

    async def _run(self) -> None:
        if self.deleting.is_set():
            await self._finish_deleted()
            return
        synthetic = self.agent.synthetic is not None and not any(
            e.get("name") == "ROCKY_DISCOVERY" for e in self.container.get("env") or []
        )
        if not synthetic:
            self.dir.mkdir(parents=True, exist_ok=True)
        if self.annotations.get(SIMULATE_ANNOTATION) == "image-pull-backoff" or unpullable(
            self.record.image
        ):
            await self._image_pull_backoff()
            return
        env: dict[str, str] | None = None
        while env is None:
            try:
                env = await self.resolve_env()
            except ConfigError as exc:
                self.record.state = {
                    "waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}
                }
                await self.post_status("Pending")
                why = await self._interrupted(CONFIG_RETRY_SECONDS)
                if why:
                    await self._stopped_before_start(why)
                    return
        if synthetic:
            await self._finish_synthetic(env)
            return
        slot = self.agent.slots
        if slot.locked():
            await self.post_status("Pending")
        acquire = asyncio.ensure_future(slot.acquire())
        while not acquire.done():
            why = await self._interrupted_or(acquire)
            if why:
                acquire.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await acquire
                if acquire.done() and not acquire.cancelled():
                    slot.release()
                await self._stopped_before_start(why)
                return
        try:
            await self._run_container(env)
        finally:
            slot.release()

    async def _finish_synthetic(self, env: Mapping[str, str]) -> None:
        """`--synthetic-results`: the container terminates at once with a valid runner result."""
        assert self.agent.synthetic is not None
        result = self.agent.synthetic.result_for(env.get("ROCKY_TASK"), self.name)
        code = exit_code_for(result.failure_kind if result.outcome == "failed" else None)
        at = now_rfc3339()
        self.record.state = {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "message": encode_result(result).decode("ascii"),
                "startedAt": at,
                "finishedAt": at,
            }
        }
        await self.post_status("Succeeded" if code == 0 else "Failed")

    async def _interrupted_or(self, fut: asyncio.Future[Any]) -> str | None:
        remaining = self.deadline_remaining()
        deleted = asyncio.ensure_future(self.deleting.wait())
        try:
            await asyncio.wait({fut, deleted}, timeout=remaining, return_when="FIRST_COMPLETED")
        finally:
            deleted.cancel()
        if fut.done():
            return None
        if self.deleting.is_set():
            return "deleted"
        remaining = self.deadline_remaining()
        if remaining is not None and remaining <= 0:
            return "deadline"
        return None

    async def _image_pull_backoff(self) -> None:
        image = self.record.image
        self.record.state = {
            "waiting": {
                "reason": "ErrImagePull",
                "message": f'Failed to pull image "{image}": '
                + (
                    f"lookup {image.split('/')[0]}: no such host"
                    if unpullable(image)
                    else f"simulated by {SIMULATE_ANNOTATION}"
                ),
            }
        }
        await self.post_status("Pending")
        why = await self._interrupted(1.0)
        if not why:
            self.record.state = {
                "waiting": {
                    "reason": "ImagePullBackOff",
                    "message": f'Back-off pulling image "{image}"',
                }
            }
            await self.post_status("Pending")
            why = await self._interrupted(None)
        await self._stopped_before_start(why or "deleted")

    async def _stopped_before_start(self, why: str) -> None:
        if why == "deadline":
            await self.post_status(
                "Failed",
                reason="DeadlineExceeded",
                message="Pod was active on the node longer than the specified deadline",
            )
        else:
            await self._finish_deleted()

    async def _run_container(self, env: dict[str, str]) -> None:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        backoff = 1.0
        while True:
            outcome = await self._run_once(env)
            if outcome is None:
                return  # the pod ended by deletion / deadline / eviction
            exit_code = outcome
            restart = policy == "Always" or (policy == "OnFailure" and exit_code != 0)
            if not restart:
                await self.post_status("Succeeded" if exit_code == 0 else "Failed")
                return
            self.record.last_state = self.record.state
            self.record.restart_count += 1
            self.record.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {backoff:g}s restarting failed container",
                }
            }
            await self.post_status("Running")
            why = await self._interrupted(backoff)
            if why:
                await self._stopped_before_start(why)
                return
            backoff = min(backoff * 2, 10.0)

    def _cwd(self) -> str:
        workdir = self.container.get("workingDir")
        return workdir if workdir and Path(workdir).is_dir() else str(self.dir)

    def _command(self, env: Mapping[str, str]) -> list[str]:
        command = [expand_vars(c, env) for c in self.container.get("command") or []]
        args = [expand_vars(a, env) for a in self.container.get("args") or []]
        argv = command + args
        if not argv:
            raise ConfigError("no command: the node agent has no image entrypoint to fall back to")
        return argv

    async def _run_once(self, env: dict[str, str]) -> int | None:
        """Run the process once; its exit code, or None when the pod was stopped from outside."""
        with contextlib.suppress(FileNotFoundError):
            self.message_path.unlink()
        self.message_path.touch()
        penv = self.process_env(env)
        cwd = self._cwd()
        try:
            argv = self._command(penv)
            with self.log_path.open("ab") as logf:
                self.proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=logf,
                    stderr=asyncio.subprocess.STDOUT,
                    env=penv,
                    cwd=cwd,
                    start_new_session=True,
                    # A node agent killed hard takes its pods with it (test hygiene).
                    preexec_fn=die_with_parent_process,
                )
        except (OSError, ConfigError) as exc:
            # kubelet: the runtime's "executable file not found" is StartError, exit code 128.
            self.record.state = {
                "terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": str(exc),
                    "startedAt": None,
                    "finishedAt": now_rfc3339(),
                }
            }
            return 128
        self.agent.register_process(self.uid, self.proc.pid)
        started_at = now_rfc3339()
        self.record.state = {"running": {"startedAt": started_at}}
        self.record.ready = self.record.started = True
        await self.post_status("Running")

        self._proc_wait = asyncio.ensure_future(self.proc.wait())
        self.simulate_now.clear()
        timer: asyncio.TimerHandle | None = None
        if self.annotations.get(SIMULATE_ANNOTATION) in KILL_SIMULATIONS:
            try:
                delay = float(self.annotations.get(SIMULATE_AFTER_ANNOTATION, "0"))
            except ValueError:
                delay = 0.0
            timer = asyncio.get_running_loop().call_later(delay, self.simulate_now.set)
        remaining = self.deadline_remaining()
        try:
            await self._wait_any(
                self._proc_wait, self.deleting.wait(), self.simulate_now.wait(), limit=remaining
            )
        finally:
            if timer is not None:
                timer.cancel()

        why: str | None = None
        if not self._proc_wait.done():
            if self.deleting.is_set():
                why = "deleted"
            elif self.simulate_now.is_set():
                why = self.annotations.get(SIMULATE_ANNOTATION, "oom-kill")
            else:
                why = "deadline"
        if why in ("oom-kill", "evict"):
            await self._kill(signal.SIGKILL)
        elif why is not None:
            grace = self._grace_seconds()
            await self._kill(signal.SIGTERM, grace=grace)
        code = await self._proc_wait
        self.agent.unregister_process(self.uid)
        exit_code = code if code >= 0 else 128 - code
        finished_at = now_rfc3339()
        reason = "Completed" if exit_code == 0 else "Error"
        if why == "oom-kill":
            reason, exit_code = "OOMKilled", 137
        policy = self.container.get("terminationMessagePolicy", "File")
        message = read_termination_message(
            self.message_path, self.log_path, policy=policy, exit_code=exit_code
        )
        terminated: JSON = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started_at,
            "finishedAt": finished_at,
        }
        if message:
            terminated["message"] = message
        self.record.state = {"terminated": terminated}
        self.record.ready = self.record.started = False
        if why == "evict":
            msg = f"The node was low on resource: memory. (simulated by {SIMULATE_ANNOTATION})"
            self._condition("DisruptionTarget", True, "TerminationByKubelet", msg)
            await self.post_status("Failed", reason="Evicted", message=msg)
            return None
        if why == "deadline":
            await self.post_status(
                "Failed",
                reason="DeadlineExceeded",
                message="Pod was active on the node longer than the specified deadline",
            )
            return None
        if why == "deleted":
            await self.post_status("Succeeded" if exit_code == 0 else "Failed")
            await self._finish_deleted()
            return None
        return exit_code

    def _grace_seconds(self) -> float:
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        return float(grace)

    async def _kill(self, sig: signal.Signals, *, grace: float = 0.0) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        if sig == signal.SIGKILL:
            return
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), timeout=max(grace, 0.0))
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    async def _finish_deleted(self) -> None:
        """Remove the pod for good, as the kubelet does once its containers are gone."""
        try:
            await self.agent.api.delete(
                self.path,
                {
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": self.uid},
                },
            )
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise


class NodeAgent:
    """Registers a Node, binds pending pods to it and runs them (see the module docstring)."""

    def __init__(
        self,
        api: KubeApi,
        *,
        node_name: str = "rocky-node",
        work_dir: Path,
        max_pods: int = 64,
        bind_concurrency: int = 16,
        kubelet_port: int = 0,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        synthetic: SyntheticResults | None = None,
    ) -> None:
        self.api = api
        self.synthetic = synthetic
        self.node_name = node_name
        self.kubelet_port = kubelet_port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.work_dir = work_dir
        self.max_pods = max_pods
        self.slots = asyncio.Semaphore(max_pods)
        self._bind_slots = asyncio.Semaphore(bind_concurrency)
        self.workers: dict[str, PodWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._binding: set[str] = set()
        self._others: set[asyncio.Task[Any]] = set()
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._pgids: dict[str, int] = {}
        self.ready = asyncio.Event()

    # -- process bookkeeping (for `scripts/control-plane down` after a hard kill) ---------------

    def register_process(self, uid: str, pid: int) -> None:
        self._pgids[uid] = pid
        (self.work_dir / "pgids").mkdir(parents=True, exist_ok=True)
        (self.work_dir / "pgids" / uid).write_text(str(pid))

    def unregister_process(self, uid: str) -> None:
        self._pgids.pop(uid, None)
        with contextlib.suppress(FileNotFoundError):
            (self.work_dir / "pgids" / uid).unlink()

    def kill_all(self) -> None:
        for uid, pgid in list(self._pgids.items()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            self.unregister_process(uid)

    # -- node ---------------------------------------------------------------------------------

    def _node_status(self) -> JSON:
        now = now_rfc3339()
        capacity = {"cpu": str(os.cpu_count() or 1), "memory": "16Gi", "pods": str(self.max_pods)}

        def cond(ctype: str, status: str, reason: str, message: str) -> JSON:
            return {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._node_since,
            }

        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "ok"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "ok"),
                cond("Ready", "True", "KubeletReady", "rocky node agent is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "rocky node agent",
                "containerRuntimeVersion": "process://",
                "kubeletVersion": "v0.0.0-rocky-node-agent",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    async def register_node(self) -> None:
        self._node_since = now_rfc3339()
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "rocky.dev/node-agent": "true",
                },
            },
        }
        try:
            await self.api.post("/api/v1/nodes", body)
        except ApiError as exc:
            if exc.status != 409:
                raise
        await self.api.merge_patch(
            f"/api/v1/nodes/{self.node_name}/status", {"status": self._node_status()}
        )

    async def heartbeat_loop(self) -> None:
        leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        lease_path = f"{leases}/{self.node_name}"
        beats = 0
        while True:
            micro = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            try:
                try:
                    await self.api.merge_patch(lease_path, {"spec": {"renewTime": micro}})
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    await self.api.post(
                        leases,
                        {
                            "apiVersion": "coordination.k8s.io/v1",
                            "kind": "Lease",
                            "metadata": {"name": self.node_name},
                            "spec": {
                                "holderIdentity": self.node_name,
                                "leaseDurationSeconds": LEASE_SECONDS,
                                "renewTime": micro,
                            },
                        },
                    )
                beats += 1
                if beats % 6 == 0:
                    await self.api.merge_patch(
                        f"/api/v1/nodes/{self.node_name}/status", {"status": self._node_status()}
                    )
            except (ApiError, OSError, TimeoutError) as exc:
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(RENEW_SECONDS)

    # -- watches ------------------------------------------------------------------------------

    async def _list_watch(self, params: Mapping[str, str], handle: Any) -> None:
        """List then watch all pods matching `params`, relisting whenever the watch breaks."""
        while True:
            try:
                listing = await self.api.get("/api/v1/pods", params)
                for pod in listing.get("items", []):
                    handle("LISTED", pod)
                rv = listing["metadata"]["resourceVersion"]
                self.ready.set()
                while True:
                    async for event in self.api.watch(
                        "/api/v1/pods", {**params, "resourceVersion": rv}
                    ):
                        obj = event.get("object") or {}
                        if event["type"] == "ERROR":
                            raise ApiError(int(obj.get("code", 500)), "WATCH", "pods", str(obj))
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if event["type"] != "BOOKMARK":
                            handle(event["type"], obj)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("pod watch %s restarts: %s", params, exc)
                await asyncio.sleep(0.5)

    def _on_unscheduled(self, kind: str, pod: JSON) -> None:
        meta = pod["metadata"]
        if kind == "DELETED" or meta.get("deletionTimestamp") or pod["spec"].get("nodeName"):
            return
        if (pod.get("status") or {}).get("phase", "Pending") != "Pending":
            return
        uid = meta["uid"]
        if uid in self._binding:
            return
        self._binding.add(uid)
        task = asyncio.get_running_loop().create_task(self._bind(pod))
        self._background(task)
        task.add_done_callback(lambda _: self._binding.discard(uid))

    async def _bind(self, pod: JSON) -> None:
        meta = pod["metadata"]
        async with self._bind_slots:
            try:
                await self.api.post(
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding",
                    {
                        "apiVersion": "v1",
                        "kind": "Binding",
                        "metadata": {"name": meta["name"], "uid": meta["uid"]},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
                    },
                )
            except ApiError as exc:
                if exc.status not in (404, 409):
                    log.warning("binding %s/%s failed: %s", meta["namespace"], meta["name"], exc)
            except (OSError, TimeoutError) as exc:
                log.warning("binding %s/%s failed: %s", meta["namespace"], meta["name"], exc)

    def _background(self, task: asyncio.Task[Any]) -> None:
        """Keep a reference to a fire-and-forget task until it ends."""
        self._others.add(task)
        task.add_done_callback(self._others.discard)

    def _on_own_pod(self, kind: str, pod: JSON) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if uid in self._finished:
            # Done with it. Events still in flight can show an older phase (Pending, Running):
            # acting on them would run the pod twice or overwrite its final status.
            return
        if kind == "DELETED":
            task = self._tasks.get(uid)
            if task is not None and not task.done():
                task.cancel()
            return
        if worker is not None:
            worker.observe(pod)
            return
        phase = (pod.get("status") or {}).get("phase", "Pending")
        loop = asyncio.get_running_loop()
        if phase in ("Succeeded", "Failed"):
            if pod["metadata"].get("deletionTimestamp"):
                # A finished pod being deleted: finalize it as the kubelet does.
                self._background(loop.create_task(PodWorker(self, pod)._finish_deleted()))
            return
        worker = PodWorker(self, pod)
        if phase == "Running" and kind == "LISTED":
            # Running before this agent listed it: the agent restarted and its process is gone.
            worker.record.state = {
                "terminated": {
                    "exitCode": 137,
                    "reason": "ContainerStatusUnknown",
                    "message": "The container could not be located when the pod was terminated",
                    "finishedAt": now_rfc3339(),
                }
            }
            self._background(loop.create_task(worker.post_status("Failed")))
            return
        self.workers[uid] = worker
        task = loop.create_task(worker.run(), name=f"pod-{pod['metadata']['name']}")
        self._tasks[uid] = task

        def done(_: asyncio.Task[None]) -> None:
            self.workers.pop(uid, None)
            self._tasks.pop(uid, None)
            self._finished[uid] = None
            while len(self._finished) > FINISHED_MEMORY:
                self._finished.popitem(last=False)

        task.add_done_callback(done)

    # -- kubelet API: just enough for `kubectl logs` ------------------------------------------

    def log_path(self, namespace: str, pod: str, container: str) -> Path | None:
        """The newest log of that pod name's container (a recreated pod has a new uid dir)."""
        pods = self.work_dir / "pods"
        candidates = [
            d / f"{container}.log"
            for d in pods.glob(f"{namespace}_{pod}_*")
            if (d / f"{container}.log").exists()
        ]
        return max(candidates, key=lambda p: p.stat().st_mtime, default=None)

    async def _container_logs(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        path = self.log_path(info["namespace"], info["pod"], info["container"])
        if path is None:
            return web.Response(status=404, text="container log not found")
        text = path.read_text(errors="replace")
        tail = request.query.get("tailLines")
        if tail is not None and tail.isdigit():
            text = "".join(text.splitlines(keepends=True)[-int(tail) :]) if int(tail) else ""
        limit = request.query.get("limitBytes")
        if limit is not None and limit.isdigit():
            text = text.encode()[: int(limit)].decode(errors="ignore")
        return web.Response(text=text, content_type="text/plain")

    async def serve_kubelet_api(self) -> None:
        """HTTPS on 127.0.0.1:<kubelet_port>, where the API server proxies `kubectl logs` to.

        The API server connects as a client of the node's `daemonEndpoints.kubeletEndpoint`
        and does not verify the serving certificate (no --kubelet-certificate-authority), so
        any certificate for 127.0.0.1 does.
        """
        if not (self.kubelet_port and self.tls_cert and self.tls_key):
            return
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._container_logs)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.tls_cert, self.tls_key)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.kubelet_port, ssl_context=ctx)
        await site.start()
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    async def run(self) -> None:
        """Register the node and serve pods until cancelled; kills every process on the way out."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        await self.register_node()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.serve_kubelet_api())
                tg.create_task(self.heartbeat_loop())
                tg.create_task(
                    self._list_watch({"fieldSelector": "spec.nodeName="}, self._on_unscheduled)
                )
                tg.create_task(
                    self._list_watch(
                        {"fieldSelector": f"spec.nodeName={self.node_name}"}, self._on_own_pod
                    )
                )
        finally:
            self.kill_all()
            for task in list(self._tasks.values()):
                task.cancel()


class BackgroundAgent:
    """Runs a NodeAgent on its own event loop in a thread, for in-process use from sync tests."""

    def __init__(self, kubeconfig: Path, work_dir: Path, **kwargs: Any) -> None:
        self.kubeconfig = kubeconfig
        self.work_dir = work_dir
        self.kwargs = kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._task: asyncio.Task[None] | None = None
        self.agent: NodeAgent | None = None

    async def _main(self, ready: threading.Event) -> None:
        async with KubeApi(KubeConfig.load(self.kubeconfig)) as api:
            self.agent = NodeAgent(api, work_dir=self.work_dir, **self.kwargs)
            run = asyncio.ensure_future(self.agent.run())
            waiter = asyncio.ensure_future(self.agent.ready.wait())
            try:
                await asyncio.wait({run, waiter}, return_when=asyncio.FIRST_COMPLETED)
                ready.set()
                await run
            finally:
                for task in (waiter, run):
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task

    async def _spawn(self, ready: threading.Event) -> asyncio.Task[None]:
        task = asyncio.ensure_future(self._main(ready))
        task.add_done_callback(lambda _: ready.set())
        return task

    def start(self, timeout: float = 30.0) -> None:
        """Start the agent; returns once its pod watches are established."""
        self._thread.start()
        ready = threading.Event()
        self._task = asyncio.run_coroutine_threadsafe(self._spawn(ready), self._loop).result()
        if not ready.wait(timeout):
            self.stop()
            raise TimeoutError("node agent did not become ready")
        if self._task.done():
            self.stop()
            raise RuntimeError("node agent stopped during start-up") from self._task.exception()

    def stop(self) -> None:
        """Stop the agent (its pod processes are killed, their pods left as they are)."""
        task = self._task

        async def shutdown() -> None:
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=15)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.node_agent",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--node-name", default="rocky-node")
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--max-pods", type=int, default=64)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--kubelet-port", type=int, default=0, help="serve `kubectl logs` here (0: off)"
    )
    parser.add_argument("--tls-cert", type=Path, help="serving certificate of that port")
    parser.add_argument("--tls-key", type=Path, help="its key")
    parser.add_argument(
        "--synthetic-results",
        action="store_true",
        help="run no process: every pod ends at once with a valid synthetic runner result",
    )
    parser.add_argument(
        "--synthetic-fail-pattern",
        type=re.compile,
        help="with --synthetic-results: asset keys (joined by /) matching this regex fail",
    )
    parser.add_argument(
        "--synthetic-fail-kind",
        type=FailureKind,
        default=FailureKind.QUERY_REJECTED,
        help="failure_kind of those failures (default query-rejected)",
    )
    args = parser.parse_args(argv)
    synthetic = (
        SyntheticResults(args.synthetic_fail_pattern, args.synthetic_fail_kind)
        if args.synthetic_results
        else None
    )
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")

    async def amain() -> None:
        loop = asyncio.get_running_loop()
        current = asyncio.current_task()
        assert current is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, current.cancel)
        async with KubeApi(KubeConfig.load(args.kubeconfig)) as api:
            agent = NodeAgent(
                api,
                node_name=args.node_name,
                work_dir=args.work_dir,
                max_pods=args.max_pods,
                kubelet_port=args.kubelet_port,
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
                synthetic=synthetic,
            )
            await agent.run()

    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        asyncio.run(amain())
    shutil.rmtree(args.work_dir / "pgids", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
