"""One instance of a revision: launch, readiness, liveness, restarts with backoff, stop.

The owner (the Supervisor) is told every state change through `changed`,
and gives the shared settings (host, restart policy, environment, masking).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from aicd.deploy.health import ProbeResult, probe
from aicd.deploy.ports import allocate_port, port_is_free
from aicd.deploy.spec import ServiceSpec
from aicd.deploy.supervisor.model import InstanceInfo, InstanceState, RestartPolicy
from aicd.deploy.supervisor.proc import (
    ProcessId,
    describe_exit,
    launch,
    log_tail,
    stop_group,
    wait_exit,
)
from aicd.errors import DeployError

PROBE_TIMEOUT = 1.0  # one health request at most
READY_POLL_MAX = 0.25  # readiness probes at most this far apart
FAILED_START_GRACE = 0.5  # a start that failed: SIGKILL after this


class Owner(Protocol):
    host: str
    policy: RestartPolicy
    base_env: Mapping[str, str]
    mask: Callable[[str], str]

    def changed(self, instance: Instance, state: InstanceState, reason: str) -> None: ...

    def ports_in_use(self) -> set[int]: ...


class Instance:
    def __init__(
        self,
        owner: Owner,
        revision: str,
        index: int,
        release_dir: Path,
        spec: ServiceSpec,
        env: Mapping[str, str],
        port: int,
        port_fixed: bool,
        log: Path,
    ) -> None:
        self.owner = owner
        self.revision = revision
        self.index = index
        self.release_dir = release_dir
        self.spec = spec
        self.env = dict(env)
        self.port = port
        self.port_fixed = port_fixed
        self.log = log
        self.state = InstanceState.STARTING
        self.proc: ProcessId | None = None
        self.popen: subprocess.Popen[bytes] | None = None
        self.adopted = False
        self.restarts = 0
        self.stopping = False
        self.task: asyncio.Task[None] | None = None
        self._crashes: deque[float] = deque()
        self._consecutive = 0
        self._ready_at: float | None = None

    @property
    def name(self) -> str:
        return f"{self.revision}.{self.index}"

    def info(self) -> InstanceInfo:
        return InstanceInfo(
            revision=self.revision,
            index=self.index,
            state=self.state,
            pid=self.proc.pid if self.proc else None,
            port=self.port,
            restarts=self.restarts,
            log=self.log,
            adopted=self.adopted,
        )

    # --- launching and readiness ---------------------------------------------------

    def launch(self) -> None:
        """Start the process (DeployError if it cannot be started)."""
        env = dict(self.owner.base_env)
        env.update(self.spec.env)
        env.update(self.env)
        env[self.spec.port_variable] = str(self.port)
        self.popen, self.proc = launch(self.spec.argv, self.release_dir, env, self.log)
        self.adopted = False
        self._note(f"started pid {self.proc.pid} on port {self.port}: {self.spec.command_text}")

    async def wait_ready(self, deadline: float) -> None:
        """Probe the health path until it answers 200; DeployError on exit or at `deadline`."""
        assert self.proc is not None
        exited = asyncio.ensure_future(wait_exit(self.proc, self.popen))
        last: ProbeResult | None = None
        pause = 0.02
        try:
            while True:
                if exited.done():
                    raise DeployError(
                        self._failure(f"{describe_exit(exited.result())} before it became healthy")
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    why = f"; last answer: {last.error}" if last else ""
                    raise DeployError(
                        self._failure(
                            f"did not answer 200 on GET {self.spec.health_path} within the readiness "
                            f"timeout of {self.spec.readiness_timeout:g}s{why}"
                        )
                    )
                last = await probe(
                    self.owner.host, self.port, self.spec.health_path, min(PROBE_TIMEOUT, left)
                )
                if last.ok:
                    return
                left = deadline - time.monotonic()
                await asyncio.wait({exited}, timeout=max(0.0, min(pause, left)))
                pause = min(pause * 2, READY_POLL_MAX)
        finally:
            await _cancel(exited)

    def _failure(self, what: str) -> str:
        tail = self.owner.mask(log_tail(self.log))
        shown = f"; last lines of its log {self.log}:\n{tail}" if tail else f"; its log: {self.log}"
        return f"instance {self.name} (port {self.port}) {what}{shown}"

    # --- supervision -----------------------------------------------------------------

    def supervise(self, running: bool) -> None:
        """Watch the instance from now on (`running`: it is up and healthy; else start it)."""
        self.task = asyncio.ensure_future(self._supervise(running))

    async def _supervise(self, running: bool) -> None:
        while not self.stopping:
            if running:
                reason = await self._run_until_exit()
            else:
                failed = await self._restart()
                if failed is None:
                    running = True
                    continue
                reason = failed
            running = False
            if self.stopping:
                return
            await self.kill(FAILED_START_GRACE)  # the rest of its process group, if any
            delay = self._crashed(reason)
            if delay is None:
                return
            await asyncio.sleep(delay)

    async def _run_until_exit(self) -> str:
        assert self.proc is not None
        exited = asyncio.ensure_future(wait_exit(self.proc, self.popen))
        failures = 0
        try:
            while True:
                await asyncio.wait({exited}, timeout=self.spec.liveness_interval)
                if exited.done():
                    code = exited.result()
                    self._note(describe_exit(code))
                    return describe_exit(code)
                timeout = min(PROBE_TIMEOUT, self.spec.liveness_interval)
                result = await probe(self.owner.host, self.port, self.spec.health_path, timeout)
                if self.stopping:
                    return "stopped"
                if exited.done():
                    continue
                if result.ok:
                    failures = 0
                    if self.state is InstanceState.UNHEALTHY:
                        self.owner.changed(self, InstanceState.READY, "healthy again")
                    continue
                failures += 1
                if failures >= self.spec.liveness_failures and self.state is InstanceState.READY:
                    self.owner.changed(
                        self,
                        InstanceState.UNHEALTHY,
                        f"{failures} health checks in a row failed "
                        f"(GET {self.spec.health_path}: {result.error})",
                    )
        finally:
            await _cancel(exited)

    def _crashed(self, reason: str) -> float | None:
        """Count a crash; the delay before the restart, or None for a crash loop."""
        now = time.monotonic()
        policy = self.owner.policy
        if self._ready_at is not None and now - self._ready_at >= policy.reset_after:
            self._consecutive = 0
        self._ready_at = None
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > policy.crash_window:
            self._crashes.popleft()
        if len(self._crashes) >= policy.crash_limit:
            self.owner.changed(
                self,
                InstanceState.CRASH_LOOP,
                f"{len(self._crashes)} crashes within {policy.crash_window:g}s, not restarted "
                f"(last: {reason})",
            )
            return None
        delay = policy.delay(self._consecutive)
        self._consecutive += 1
        self.owner.changed(self, InstanceState.CRASHED, f"{reason}; restarting in {delay:g}s")
        return delay

    async def _restart(self) -> str | None:
        """Start again and wait until healthy; None when ready, else why not."""
        if not self.port_fixed and not port_is_free(self.port, self.owner.host):
            self.port = allocate_port(self.owner.host, exclude=self.owner.ports_in_use())
        self.restarts += 1
        try:
            self.launch()
        except DeployError as exc:
            self.proc = None
            return str(exc)
        self.owner.changed(self, InstanceState.STARTING, f"restart {self.restarts}")
        try:
            await self.wait_ready(time.monotonic() + self.spec.readiness_timeout)
        except DeployError as exc:
            await self.kill(FAILED_START_GRACE)
            return str(exc)
        self.mark_ready("healthy")
        return None

    def mark_ready(self, reason: str) -> None:
        self._ready_at = time.monotonic()
        self.owner.changed(self, InstanceState.READY, reason)

    # --- stopping --------------------------------------------------------------------

    async def stop(self, grace: float | None = None) -> None:
        """Stop supervising, then stop the process group (stop signal, SIGKILL after the grace)."""
        self.stopping = True
        if self.task is not None:
            await _cancel(self.task)
        await self.kill(self.spec.stop_grace if grace is None else grace)

    async def detach(self) -> None:
        """Stop supervising; the process keeps running."""
        self.stopping = True
        if self.task is not None:
            await _cancel(self.task)

    async def kill(self, grace: float) -> None:
        if self.proc is None:
            return
        how = await stop_group(self.proc, self.popen, self.spec.stop_signal, grace)
        if how is not None:
            self._note(f"stopped ({how})")

    def _note(self, text: str) -> None:
        """A line of aicd's own in the instance's log."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        with contextlib.suppress(OSError), open(self.log, "a", encoding="utf-8") as fh:
            fh.write(f"[aicd {stamp}] {self.name}: {text}\n")


CANCEL_RETRY = 0.2  # seconds between cancellations of a task that has not ended yet


async def _cancel(future: asyncio.Future[Any]) -> None:
    """Cancel a task and wait for it; the caller's own cancellation still propagates.

    The cancellation is repeated until the task ends: on Python 3.11, ``asyncio.wait_for`` (the
    health probe's) swallows a cancellation that arrives as its inner operation completes, and a
    task that lost its cancellation would be waited for forever (seen: a rollback that never
    stopped the canary).
    """
    while not future.done():
        future.cancel()
        await asyncio.wait({future}, timeout=CANCEL_RETRY)
    error = None if future.cancelled() else future.exception()
    if error is not None:
        raise error
