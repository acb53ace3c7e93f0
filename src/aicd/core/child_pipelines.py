"""Trigger jobs that run a child pipeline (`trigger: include: local`), for `aicd run`.

:class:`TriggerExecutor` wraps the run's executor: a job with
``job.trigger`` does not start a process; it runs its child pipeline
through ``run_child`` (given by the caller, which knows the store and the
project) and ends with the status GitLab gives a trigger job:

- with ``strategy: depend``, the child pipeline's status (success, failed,
  canceled);
- without it, success once the child pipeline exists, whatever the child's
  jobs do (locally the trigger job still ends when the child ends);
- failed when the child pipeline cannot be created (an error in its file,
  or ``workflow:rules`` that create no pipeline), with the reason in its log.

Every other job goes to the wrapped executor unchanged, so a child's own
trigger jobs nest the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import IO, Protocol

from aicd.executors.base import (
    Executor,
    JobHandle,
    JobOutcome,
    JobRequest,
    OutputCallback,
    OutputKind,
    job_log_path,
)


@dataclass(frozen=True)
class ChildResult:
    status: str  # the child pipeline's status: success, failed, canceled; "" when not created
    pipeline_id: int | None  # the child pipeline's id (also when it could not be created)
    error: str | None = None  # why it was not created


class TriggerOutput(Protocol):
    """What a child pipeline's runner tells its trigger job."""

    def say(self, kind: OutputKind, text: str) -> None:
        """A line of the trigger job's output: its log and the run's display."""

    def log(self, text: str) -> None:
        """A line of the trigger job's log only (the display shows the child's jobs already)."""


# run_child(trigger request, its output, cancel) -> the child's result
ChildRunner = Callable[[JobRequest, TriggerOutput, asyncio.Event], Awaitable[ChildResult]]


class TriggerExecutor:
    """An executor that runs trigger jobs as child pipelines and everything else as `inner` does."""

    def __init__(self, inner: Executor, run_child: ChildRunner) -> None:
        self.inner = inner
        self.run_child = run_child
        self.name = inner.name

    async def start(self, request: JobRequest, on_output: OutputCallback) -> JobHandle:
        if request.job.trigger is None:
            return await self.inner.start(request, on_output)
        return _TriggerHandle(request, on_output, self.run_child)

    async def close(self) -> None:
        await self.inner.close()


class _TriggerHandle:
    def __init__(self, request: JobRequest, on_output: OutputCallback, run_child: ChildRunner) -> None:
        self.request = request
        self.started = time.time()
        self.log_path = request.log_path or job_log_path(request.run_dir, request.job_id)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log: IO[str] = self.log_path.open("w", encoding="utf-8")
        self.on_output = on_output
        self.cancel_event = asyncio.Event()
        self.cancel_reason: str | None = None
        self.task = asyncio.ensure_future(self._run(run_child))

    def _say(self, kind: OutputKind, text: str) -> None:
        self.write_log(text)
        self.on_output(kind, text)

    def say(self, kind: OutputKind, text: str) -> None:
        self._say(kind, text)

    def write_log(self, text: str) -> None:
        if not self.log.closed:
            self.log.write(f"{text}\n")
            self.log.flush()

    async def _run(self, run_child: ChildRunner) -> JobOutcome:
        trigger = self.request.job.trigger
        assert trigger is not None
        try:
            result = await run_child(self.request, _Output(self), self.cancel_event)
        except Exception as exc:  # a bug or a store failure: the trigger job fails, the run goes on
            result = ChildResult("", None, f"the child pipeline could not run ({type(exc).__name__}: {exc})")
        try:
            return self._outcome(result, trigger.strategy)
        finally:
            self.log.close()

    def _outcome(self, result: ChildResult, strategy: str | None) -> JobOutcome:
        def done(status: str, reason: str | None = None, error: str | None = None) -> JobOutcome:
            return JobOutcome(
                status=status,  # type: ignore[arg-type]
                exit_code=None,
                failure_reason=reason,  # type: ignore[arg-type]
                started_at=self.started,
                finished_at=time.time(),
                log_path=self.log_path,
                error=error,
            )

        child = f"child pipeline #{result.pipeline_id}" if result.pipeline_id else "the child pipeline"
        if self.cancel_reason == "timeout":
            self._say("info", f"{child} canceled: the trigger job timed out")
            return done("failed", "job_execution_timeout")
        if self.cancel_reason is not None:
            return done("canceled", "canceled")
        if not result.status:
            text = f"{child} was not created: {result.error}"
            self._say("info", text)
            return done("failed", "unknown_failure", text)
        self._say("info", f"{child} {result.status}")
        if strategy != "depend" or result.status == "success":
            return done("success")
        if result.status == "canceled":
            return done("canceled", "canceled")
        return done("failed", "unknown_failure", f"{child} failed (strategy: depend)")

    async def wait(self) -> JobOutcome:
        return await asyncio.shield(self.task)

    async def cancel(self, reason: str = "canceled") -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.cancel_event.set()
        with contextlib.suppress(Exception):
            await asyncio.shield(self.task)


class _Output:
    def __init__(self, handle: _TriggerHandle) -> None:
        self.handle = handle

    def say(self, kind: OutputKind, text: str) -> None:
        self.handle.say(kind, text)

    def log(self, text: str) -> None:
        self.handle.write_log(text)
