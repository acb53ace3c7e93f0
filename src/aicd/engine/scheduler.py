"""Run a resolved pipeline as a DAG on an executor, with GitLab's job lifecycle.

Every job gets one asyncio task that waits for the jobs it depends on (all
jobs of earlier stages, or its `needs`), then decides by its `when` whether
it runs, and runs it within the concurrency limit and its resource group,
with retries and a timeout.

Blocking manual jobs: a `when: manual` job that is not played and not allowed
to fail blocks the jobs that wait for it (GitLab shows the pipeline as
"blocked"). Locally nobody can press play later, so such jobs end in
`created` (never started), `JobResult.blocked_by` names the manual job, and
they do not make the pipeline fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aicd.engine.model import (
    EngineListener,
    JobResult,
    JobStatus,
    PipelineResult,
    RunOptions,
    failure_allowed,
)
from aicd.executors.base import ArtifactSource, Executor, JobHandle, JobOutcome, JobRequest
from aicd.pipeline.ir import Job, Pipeline, Variable
from aicd.pipeline.predefined import job_variables
from aicd.pipeline.variables import expand, resolve

DEFAULT_TIMEOUT_S = 3600.0

# JobOutcome.failure_reason -> the `retry:when` words that cover it.
_RETRY_WHEN = {
    "script_failure": {"script_failure"},
    "job_execution_timeout": {"job_execution_timeout", "stuck_or_timeout_failure"},
    "runner_system_failure": {"runner_system_failure", "unknown_failure"},
    "missing_dependency_failure": {"missing_dependency_failure"},
    "unknown_failure": {"unknown_failure"},
}


@dataclass
class _Node:
    job: Job
    result: JobResult
    deps: list[str]  # names of the jobs it waits for
    by_needs: bool  # deps are `needs` (True) or earlier stages (False)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    handle: JobHandle | None = None


def select_jobs(pipeline: Pipeline, options: RunOptions) -> list[Job]:
    """The jobs this run has: all, or the chosen ones (and what they need)."""
    if options.only is None:
        return list(pipeline.jobs)
    chosen = set(options.only)
    if options.with_needs:
        by_name = {j.name: j for j in pipeline.jobs}
        todo = list(chosen)
        while todo:
            job = by_name.get(todo.pop())
            for need in (job.needs or ()) if job else ():
                if need.job not in chosen and need.job in by_name:
                    chosen.add(need.job)
                    todo.append(need.job)
    return [j for j in pipeline.jobs if j.name in chosen]


def _dependencies(pipeline: Pipeline, jobs: list[Job]) -> dict[str, tuple[list[str], bool]]:
    names = {j.name for j in jobs}
    order = {s: i for i, s in enumerate(pipeline.stages)}
    out: dict[str, tuple[list[str], bool]] = {}
    for job in jobs:
        if job.needs is not None:
            out[job.name] = ([n.job for n in job.needs if n.job in names], True)
        else:
            mine = order.get(job.stage, 0)
            out[job.name] = ([j.name for j in jobs if order.get(j.stage, 0) < mine], False)
    return out


class _Run:
    def __init__(
        self,
        pipeline: Pipeline,
        executor: Executor,
        listener: EngineListener,
        pipeline_id: int,
        run_dir: Path,
        options: RunOptions,
    ) -> None:
        self.pipeline = pipeline
        self.executor = executor
        self.listener = listener
        self.pipeline_id = pipeline_id
        self.run_dir = run_dir
        self.options = options
        self.slots = asyncio.Semaphore(max(1, options.concurrency))
        self.groups: dict[str, asyncio.Lock] = {}
        self.canceled = False
        self.nodes: dict[str, _Node] = {}
        self.pipeline_vars = resolve((*pipeline.predefined, *pipeline.variables))

    # -- set-up -----------------------------------------------------------
    def plan(self) -> None:
        jobs = select_jobs(self.pipeline, self.options)
        ids = self.listener.allocate_job_ids(jobs) if jobs else []
        deps = _dependencies(self.pipeline, jobs)
        for job, job_id in zip(jobs, ids, strict=True):
            names, by_needs = deps[job.name]
            status = JobStatus.MANUAL if job.when == "manual" else JobStatus.CREATED
            self.nodes[job.name] = _Node(job, JobResult(job, job_id, status), names, by_needs)

    def _set(self, node: _Node, status: JobStatus, outcome: JobOutcome | None = None) -> None:
        node.result.status = status
        if outcome is not None:
            node.result.outcome = outcome
        self.listener.job_status(node.job, node.result.job_id, max(1, node.result.attempts), status, outcome)

    # -- deciding ---------------------------------------------------------
    def _upstream(self, node: _Node) -> tuple[bool, str | None]:
        """(did something upstream fail, the blocking manual job if any)."""
        failed = False
        for name in node.deps:
            dep = self.nodes[name]
            r = dep.result
            if r.blocked_by is not None:
                return failed, r.blocked_by
            if r.status == JobStatus.MANUAL and not dep.job.allow_failure:
                return failed, dep.job.name
            if (
                (r.status == JobStatus.FAILED and not r.allowed_failure)
                or r.status == JobStatus.CANCELED
                or (r.status == JobStatus.SKIPPED and node.by_needs)
            ):
                failed = True
        return failed, None

    def _runs(self, node: _Node, upstream_failed: bool) -> bool:
        when = node.job.when
        if when == "always":
            return True
        if when == "on_failure":
            return upstream_failed
        return not upstream_failed  # on_success, manual (played), delayed

    # -- one job ----------------------------------------------------------
    async def job_task(self, node: _Node) -> None:
        try:
            for name in node.deps:
                await self.nodes[name].done.wait()
            if self.canceled:
                self._set(node, JobStatus.CANCELED)
                return
            upstream_failed, blocker = self._upstream(node)
            if blocker is not None:
                node.result.blocked_by = blocker
                self.listener.job_output(
                    node.job,
                    node.result.job_id,
                    "info",
                    f"waits for manual job {blocker!r}: play it with --manual {blocker!r}",
                )
                return
            if not self._runs(node, upstream_failed):
                self._set(node, JobStatus.SKIPPED)
                return
            if node.job.when == "manual" and node.job.name not in self.options.play_manual:
                return  # stays `manual`
            if node.job.when == "delayed" and node.job.start_in_s and self.options.honour_delays:
                self._set(node, JobStatus.PENDING)
                await asyncio.sleep(node.job.start_in_s)
            await self.run_attempts(node)
        except asyncio.CancelledError:
            if not node.result.status.is_finished:
                self._set(node, JobStatus.CANCELED)
        finally:
            node.done.set()

    async def run_attempts(self, node: _Node) -> None:
        job = node.job
        while True:
            node.result.attempts += 1
            attempt = node.result.attempts
            if attempt > 1:
                node.result.job_id = self.listener.allocate_retry_id(job, attempt)
            self._set(node, JobStatus.PENDING)
            group = self._resource_group(node)
            async with self.slots:
                if group is None:
                    outcome = await self.run_once(node)
                else:
                    async with group:
                        outcome = await self.run_once(node)
            if outcome.status == "success":
                self._set(node, JobStatus.SUCCESS, outcome)
                return
            if outcome.status == "canceled":
                self._set(node, JobStatus.CANCELED, outcome)
                return
            if not self.canceled and self._retryable(job, outcome, attempt):
                self._set(node, JobStatus.FAILED, outcome)
                self.listener.job_output(job, node.result.job_id, "info", f"retrying (attempt {attempt + 1})")
                continue
            node.result.allowed_failure = failure_allowed(job, outcome)
            self._set(node, JobStatus.FAILED, outcome)
            return

    def _retryable(self, job: Job, outcome: JobOutcome, attempt: int) -> bool:
        retry = job.retry
        if attempt > retry.max:
            return False
        if retry.exit_codes and outcome.exit_code not in retry.exit_codes:
            return False
        if "always" in retry.when:
            return True
        reason = outcome.failure_reason or "unknown_failure"
        return bool(_RETRY_WHEN.get(reason, {reason}) & set(retry.when))

    def _resource_group(self, node: _Node) -> asyncio.Lock | None:
        raw = node.job.resource_group
        if not raw:
            return None
        lookup = {**self.pipeline_vars, **resolve(node.job.variables, fallback=self.pipeline_vars)}
        name = expand(raw, lookup)
        return self.groups.setdefault(name, asyncio.Lock())

    def _sources(self, node: _Node) -> list[_Node]:
        job = node.job
        if job.needs is not None:
            wanted = [n.job for n in job.needs if n.artifacts]
        elif job.dependencies is not None:
            wanted = list(job.dependencies)
        else:
            wanted = node.deps
        return [
            self.nodes[name]
            for name in wanted
            if name in self.nodes and self.nodes[name].result.outcome is not None
        ]

    def _request(self, node: _Node) -> JobRequest:
        job, job_id = node.job, node.result.job_id
        sources = self._sources(node)
        dotenv: list[Variable] = []
        for src in sources:
            assert src.result.outcome is not None
            dotenv.extend(src.result.outcome.dotenv)
        variables = (
            *self.pipeline.predefined,
            *job_variables(job, job_id=job_id, pipeline_vars=self.pipeline_vars, started_at=time.time()),
            *job.variables,
            *dotenv,
            *self.pipeline.variables,
        )
        return JobRequest(
            job=job,
            job_id=job_id,
            attempt=node.result.attempts,
            pipeline_id=self.pipeline_id,
            run_dir=self.run_dir,
            variables=tuple(variables),
            artifact_sources=tuple(ArtifactSource(s.job.name, s.result.job_id) for s in sources),
            log_path=self.run_dir / "logs" / f"{job_id}.log",
        )

    async def run_once(self, node: _Node) -> JobOutcome:
        job, job_id = node.job, node.result.job_id
        started = time.time()
        request = self._request(node)
        self._set(node, JobStatus.RUNNING)

        def on_output(kind: str, text: str) -> None:
            self.listener.job_output(job, job_id, kind, text)

        try:
            node.handle = await self.executor.start(request, on_output)
            waiter = asyncio.ensure_future(node.handle.wait())
            try:
                done, _ = await asyncio.wait({waiter}, timeout=job.timeout_s or DEFAULT_TIMEOUT_S)
                if not done:
                    on_output("info", f"job timed out after {_human(job.timeout_s or DEFAULT_TIMEOUT_S)}")
                    await node.handle.cancel("timeout")
                return await asyncio.shield(waiter)
            except asyncio.CancelledError:
                await node.handle.cancel("canceled")
                return await waiter
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a fault of aicd or the machine, not of the job's script
            on_output("info", f"ERROR: the job could not run: {type(exc).__name__}: {exc}")
            log = request.log_path or self.run_dir / "logs" / f"{job_id}.log"
            return JobOutcome(
                "failed", None, "runner_system_failure", started, time.time(), log, error=str(exc)
            )
        finally:
            node.handle = None

    # -- cancel -----------------------------------------------------------
    async def watch_cancel(self, cancel: asyncio.Event, tasks: Iterable[asyncio.Task[None]]) -> None:
        await cancel.wait()
        self.canceled = True
        handles = [n.handle for n in self.nodes.values() if n.handle is not None]
        await asyncio.gather(*(h.cancel("canceled") for h in handles), return_exceptions=True)
        for task in tasks:
            task.cancel()

    def status(self) -> str:
        if self.canceled:
            return "canceled"
        for node in self.nodes.values():
            r = node.result
            if r.status == JobStatus.FAILED and not r.allowed_failure:
                return "failed"
            if r.status == JobStatus.CANCELED:
                return "canceled"
        return "success"


def _human(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


async def run_pipeline(
    pipeline: Pipeline,
    executor: Executor,
    listener: EngineListener,
    *,
    pipeline_id: int,
    run_dir: Path,
    options: RunOptions,
    cancel: asyncio.Event | None = None,
) -> PipelineResult:
    """Run every job of `pipeline` (or the selected ones) to an end."""
    run = _Run(pipeline, executor, listener, pipeline_id, run_dir, options)
    run.plan()
    listener.pipeline_status("running")
    tasks = [asyncio.create_task(run.job_task(node), name=name) for name, node in run.nodes.items()]
    watcher = asyncio.create_task(run.watch_cancel(cancel, tasks)) if cancel is not None else None
    try:
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if cancel is not None and cancel.is_set():
                run.canceled = True
    status = run.status()
    listener.pipeline_status(status)
    return PipelineResult(status=status, jobs=[n.result for n in run.nodes.values()])
