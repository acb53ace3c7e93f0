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

:class:`ChildRuns` is `aicd run`'s ``run_child``: each child pipeline is
recorded as a pipeline of its own (source ``parent_pipeline``), read from
the same tree with the forwarded variables, run through the same executor,
and shown through its trigger job (``trigger > job``). Two levels at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from aicd.core.pipeline_links import PipelineLink, record_child
from aicd.core.run_observer import RunObserver
from aicd.engine import EngineListener, RunOptions, run_pipeline
from aicd.errors import AicdError, PipelineError, WorkflowFilteredOut
from aicd.executors.artifacts import artifacts_dir
from aicd.executors.base import (
    Executor,
    JobHandle,
    JobOutcome,
    JobRequest,
    OutputCallback,
    OutputKind,
    job_log_path,
)
from aicd.pipeline import PipelineContext, load_pipeline
from aicd.pipeline.ir import Job, Pipeline, Variable
from aicd.pipeline.predefined import pipeline_variables
from aicd.store import PipelineRecord, Store
from aicd.vcs import GitInfo


@dataclass(frozen=True)
class ChildResult:
    """How a trigger job's child pipeline ended."""

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


# GitLab: a parent pipeline, its child, and the child's child; no deeper
MAX_CHILD_DEPTH = 2


@dataclass(frozen=True)
class ChildHooks:
    """What a host other than `aicd run` (the server) changes in how a child pipeline is made and run."""

    project_key: str  # the store's project_dir of the child's row
    # (child row, its config path) -> its predefined variables
    predefined: Callable[[PipelineRecord, str], Sequence[Variable]]
    # variables below the forwarded ones (the server: the project's CI/CD variables)
    base_variables: tuple[Variable, ...] = ()
    options: Callable[[], RunOptions] | None = None
    # (trigger request, child row, the event that cancels it): the child is recorded (the server
    # keeps the event, so canceling the child pipeline through its API cancels it)
    created: Callable[[JobRequest, PipelineRecord, asyncio.Event], None] | None = None
    # (child row, its IR, the variables forwarded to it): loaded, before it runs (the server keeps
    # the IR for retries)
    loaded: Callable[[PipelineRecord, Pipeline, Sequence[Variable]], None] | None = None
    # (child row, engine result status) -> the status recorded (the server: a blocked child is manual)
    final_status: Callable[[PipelineRecord, str, bool], str] | None = None


class ChildRuns:
    """Runs the child pipelines of trigger jobs (TriggerExecutor's run_child), each recorded as a pipeline."""

    def __init__(
        self,
        *,
        store: Store,
        listener_for: Callable[[PipelineRecord, RunObserver], EngineListener],
        home: Path,
        project_dir: Path,
        source_dir: Path,
        info: GitInfo,
        context: PipelineContext,
        observer: RunObserver,
        concurrency: int,
        hooks: ChildHooks | None = None,
    ) -> None:
        self.store = store
        self.listener_for = listener_for
        self.home = home
        self.project_dir = project_dir
        self.source_dir = source_dir
        self.info = info
        self.context = context
        self.observer = observer
        self.concurrency = concurrency
        self.hooks = hooks
        self.executor: Executor | None = None
        self.depth: dict[int, int] = {}  # pipeline id -> how deep a child it is
        self.pipeline_variables: dict[int, tuple[Variable, ...]] = {}  # pipeline id -> its pipeline variables
        self.observers: dict[int, RunObserver] = {}  # child pipeline id -> what its jobs are shown through

    async def run(self, request: JobRequest, out: TriggerOutput, cancel: asyncio.Event) -> ChildResult:
        job, trigger = request.job, request.job.trigger
        assert trigger is not None and self.executor is not None
        depth = self.depth.get(request.pipeline_id, 0) + 1
        if depth > MAX_CHILD_DEPTH:
            return ChildResult(
                "", None, f"a child pipeline can trigger no further child pipeline ({trigger.include})"
            )
        hooks = self.hooks
        variables: list[Variable] = []
        if trigger.forward_pipeline_variables:
            variables += self.pipeline_variables.get(request.pipeline_id, ())
        if trigger.forward_yaml_variables:
            variables += job.variables
        file = trigger.include
        if trigger.artifact_job is not None:  # a dynamic child pipeline: a file another job made
            found = self._artifact(request, trigger.artifact_job, trigger.include)
            if isinstance(found, str):
                return ChildResult("", None, found)
            file = str(found)
        record = self.store.create_pipeline(
            project_dir=hooks.project_key if hooks is not None else str(self.project_dir),
            ref=self.info.ref_name,
            sha=self.info.sha,
            source="parent_pipeline",
            file=trigger.include,
            run_dir_root=str(self.home / "runs"),
            name=f"child of #{request.pipeline_id} ({job.name})",
        )
        self.depth[record.id] = depth
        record_child(
            Path(request.run_dir),
            Path(record.run_dir),
            PipelineLink(record.id, request.job_id, job.name),
            request.pipeline_id,
        )
        if hooks is not None and hooks.created is not None:
            hooks.created(request, record, cancel)
        shown = _NestedObserver(self.observers.get(request.pipeline_id, self.observer), job.name, out)
        self.observers[record.id] = shown
        self.pipeline_variables[record.id] = tuple(variables)
        if hooks is not None:
            predefined = list(hooks.predefined(record, trigger.include))
            given = (*hooks.base_variables, *variables)
        else:
            predefined = pipeline_variables(
                self.info,
                pipeline_id=record.id,
                pipeline_iid=record.iid,
                source="parent_pipeline",
                project_dir=self.project_dir,
                created_at=record.created_at,
                config_path=trigger.include,
            )
            given = tuple(variables)
        context = dataclasses.replace(self.context, predefined=predefined, variables=given)
        try:
            pipeline = load_pipeline(self.source_dir, file, context)
        except WorkflowFilteredOut as exc:
            self.store.update_pipeline(record.id, status="skipped", error=str(exc), finished_at=time.time())
            return ChildResult("", record.id, str(exc))
        except AicdError as exc:
            self.store.update_pipeline(record.id, status="failed", error=str(exc), finished_at=time.time())
            for d in getattr(exc, "diagnostics", ()):
                out.say("info", str(d))
            return ChildResult(
                "", record.id, f"{trigger.include} has errors" if isinstance(exc, PipelineError) else str(exc)
            )
        if hooks is not None and hooks.loaded is not None:
            hooks.loaded(record, pipeline, variables)
        n = len(pipeline.jobs)
        out.say("info", f"child pipeline #{record.id} ({trigger.include}): {n} job{'s' * (n != 1)}")
        self.store.update_pipeline(record.id, status="running", started_at=time.time())
        recorder = self.listener_for(self.store.get_pipeline(record.id), shown)
        options = hooks.options() if hooks is not None and hooks.options is not None else None
        try:
            result = await run_pipeline(
                pipeline,
                self.executor,
                recorder,
                pipeline_id=record.id,
                run_dir=Path(record.run_dir),
                options=options or RunOptions(concurrency=self.concurrency),
                cancel=cancel,
            )
        except AicdError as exc:  # the child could not start (its jobs wait for each other...)
            self.store.update_pipeline(record.id, status="failed", error=str(exc), finished_at=time.time())
            return ChildResult("", record.id, str(exc))
        status = result.status
        if hooks is not None and hooks.final_status is not None:
            status = hooks.final_status(record, status, bool(result.blocked))
        self.store.update_pipeline(record.id, status=status, finished_at=time.time())
        return ChildResult(status, record.id)

    @staticmethod
    def _artifact(request: JobRequest, job: str, path: str) -> Path | str:
        """The file `path` among the artifacts of `job` this trigger job receives, or why it is not there."""
        source = next((s for s in request.artifact_sources if s.job_name == job), None)
        if source is None:
            return (
                f'the artifacts of job "{job}" do not reach this trigger job: add needs: [{job}] or put '
                f"{job} in an earlier stage"
            )
        root = artifacts_dir(request.run_dir, source.job_id).resolve()
        found = (root / path).resolve()
        if not found.is_relative_to(root) or not found.is_file():
            return f'job "{job}" has no artifact {path}: add it to its artifacts:paths'
        return found


class QuietObserver:
    """A RunObserver that shows nothing (the server: its API shows the jobs)."""

    def pipeline_created(
        self, record: PipelineRecord, pipeline: Pipeline, only: frozenset[str] | None = None
    ) -> None:
        pass

    def job_status(
        self, job: Job, job_id: int, attempt: int, status: str, outcome: JobOutcome | None
    ) -> None:
        pass

    def job_output(self, job: Job, job_id: int, kind: str, text: str) -> None:
        pass


class _NestedObserver:
    """A child pipeline's jobs shown under their trigger job: `trigger > job`; their ends in its log."""

    def __init__(self, parent: RunObserver, trigger: str, out: TriggerOutput) -> None:
        self.parent = parent
        self.prefix = f"{trigger} > "
        self.out = out

    def pipeline_created(
        self, record: PipelineRecord, pipeline: Pipeline, only: frozenset[str] | None = None
    ) -> None:
        pass

    def job_status(
        self, job: Job, job_id: int, attempt: int, status: str, outcome: JobOutcome | None
    ) -> None:
        if status in ("success", "failed", "canceled", "skipped", "manual"):
            self.out.log(f"{job.name}: {status}")
        self.parent.job_status(self._nested(job), job_id, attempt, status, outcome)

    def job_output(self, job: Job, job_id: int, kind: str, text: str) -> None:
        self.parent.job_output(self._nested(job), job_id, kind, text)

    def _nested(self, job: Job) -> Job:
        return dataclasses.replace(job, name=self.prefix + job.name)
