"""Run a resolved pipeline as a DAG on an executor, with GitLab's job lifecycle.

One coordinator loop owns every decision. A job *waits* until every job it
depends on is settled (all jobs of earlier stages, or its `needs`), then is
decided once (aicd.engine.decision): skipped, left `manual`, blocked, or
made *ready* (after its `start_in` for `when: delayed`). Ready jobs start in
definition order while fewer than `options.concurrency` jobs run and their
resource group (variable-expanded) has no job running. A running job is one
task that runs its attempts (retries get new ids from the listener) and
watches its timeout and the run's cancel.

Blocking manual jobs: a `when: manual` job that is not played and has
`allow_failure: false` blocks every job that waits for it, directly or not,
whatever that job's `when` (GitLab shows the pipeline as "blocked"; the
jobs stay `created` until someone plays the manual job). Locally nobody
can press play later, so those jobs end `created` with
`JobResult.blocked_by` naming the manual job, an info line tells how to
play it, and they do not fail the pipeline: its status is `success` when
nothing else failed. (gitlab-ci-local instead refuses to start such a
pipeline when a job *needs* the manual job.) An unplayed manual job with
`allow_failure: true` does not block: jobs of later stages run, while jobs
that `need` it are skipped, as in GitLab.

Cancel (`cancel` set, e.g. by Ctrl-C): running jobs get
`handle.cancel("canceled")`, jobs not started (and blocked ones) end
`canceled`, manual ones stay `manual`, nothing new starts, and the result is
`canceled`. If the task running `run_pipeline` is itself cancelled, the
jobs are stopped the same way before the cancellation goes on: no job
process or task outlives `run_pipeline`.

An exception from the executor fails that job attempt with
`runner_system_failure` (the message goes to the job's output as "info").
An exception from the listener stops the run and is raised again.

Resume (`options.settled`): jobs settled by an earlier run of the same
pipeline keep their ids and results and do not run; the other jobs are
decided as usual, counting them (a retry, a played manual job, a recovery
after a crash). `options.prior_attempts` numbers the attempts of jobs run
again. `options.slots`, shared by several runs, bounds the jobs running in
all of them; a job waits `pending` for a slot (a trigger job takes none: its
child's jobs do). `options.resource_groups`, shared by several runs, keeps
one job per group running across all of them (aicd.engine.resource_groups). A `RunControl` cancels one job.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import Enum, auto
from pathlib import Path
from typing import Any, TypeVar

from aicd.engine.control import RunControl
from aicd.engine.decision import Upstream, decide, retry_wanted, upstream_status
from aicd.engine.events import EngineListener
from aicd.engine.model import JobResult, PipelineResult, RunOptions, SettledJob
from aicd.engine.plan import Plan, make_plan
from aicd.engine.resource_groups import ResourceGroups
from aicd.engine.status import JobStatus, failure_allowed
from aicd.executors.base import (
    ArtifactSource,
    Executor,
    JobHandle,
    JobOutcome,
    JobRequest,
    OutputCallback,
    OutputKind,
    job_log_path,
)
from aicd.pipeline.ir import Pipeline, Variable
from aicd.pipeline.predefined import job_variables
from aicd.pipeline.variables import expand, resolve

DEFAULT_TIMEOUT_S = 3600.0
# How long an executor gets to report a canceled (or timed-out) job before the engine gives up on it.
CANCEL_GRACE_S = 30.0

T = TypeVar("T")


class _Phase(Enum):
    WAITING = auto()  # for the jobs it depends on
    DELAYED = auto()  # when: delayed, its timer runs
    READY = auto()  # may start when a slot and its resource group are free
    RUNNING = auto()
    SETTLED = auto()  # finished, left manual, or blocked: nothing more happens to it


@dataclass(eq=False)
class _Barrier:
    """What some jobs wait for: one per job with `needs`, one per stage for jobs in stage order
    (they all wait for the same jobs, so a stage of N jobs after M others costs N + M, not N * M)."""

    deps: list[_Node]
    unsettled: int = 0  # deps not settled yet
    members: list[_Node] = field(default_factory=list)  # the jobs that wait for it
    upstream: tuple[Upstream, str | None] | None = None  # once every dep is settled (then final)
    # stage order without `dependencies`: the artifact sources that ran and their dotenv, the same
    # for every member once every dep is settled
    sources: tuple[tuple[ArtifactSource, ...], tuple[Variable, ...]] | None = None


@dataclass(eq=False)
class _Node:
    """The scheduler's state of one job."""

    result: JobResult
    dag: bool
    index: int = 0  # definition order in the plan
    barrier: _Barrier | None = None  # what it waits for
    waited_by: list[_Barrier] = field(default_factory=list)  # barriers it is a dep of
    phase: _Phase = _Phase.WAITING
    group: str | None = None  # resource group, expanded
    holding: str | None = None  # the resource group it holds while it runs
    task: asyncio.Task[None] | None = None
    settled: SettledJob | None = None  # from an earlier run: never runs here
    prior: int = 0  # attempts made before this run
    canceled: asyncio.Event | None = None  # set by RunControl.cancel_job while it runs
    on_cancel: Callable[[], None] | None = None  # called by cancel_job, while the job is watched

    @property
    def job_name(self) -> str:
        return self.result.job.name

    @property
    def has_run(self) -> bool:
        """Whether it ran (here or earlier): its artifacts and dotenv go to the jobs it feeds."""
        if self.settled is not None:
            return self.settled.status in _RAN
        return self.result.outcome is not None

    @property
    def dotenv(self) -> tuple[Variable, ...]:
        if self.settled is not None:
            return self.settled.dotenv
        return self.result.outcome.dotenv if self.result.outcome is not None else ()


_RAN = frozenset({JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELED})
_SETTLED_OK = frozenset({*_RAN, JobStatus.SKIPPED, JobStatus.MANUAL})


class _Run:
    def __init__(
        self,
        pipeline: Pipeline,
        executor: Executor,
        listener: EngineListener,
        pipeline_id: int,
        run_dir: Path,
        options: RunOptions,
        cancel: asyncio.Event | None,
    ) -> None:
        self.pipeline = pipeline
        self.executor = executor
        self.listener = listener
        self.pipeline_id = pipeline_id
        self.run_dir = run_dir
        self.options = options
        self.cancel = cancel
        self.limit = max(1, options.concurrency)
        self.groups = options.resource_groups if options.resource_groups is not None else ResourceGroups()
        self.plan: Plan = make_plan(pipeline, options)
        self.nodes: list[_Node] = []
        self.by_name: dict[str, _Node] = {}
        # Bookkeeping that keeps every scheduling round proportional to what changed, not to the
        # number of jobs: jobs per phase, WAITING jobs whose deps are all settled (by definition
        # index), READY jobs (by definition index; entries of jobs no longer READY are skipped).
        self.counts: dict[_Phase, int] = dict.fromkeys(_Phase, 0)
        self.decidable: list[int] = []  # heap, for the next pass
        self.this_pass: list[int] = []  # heap, the pass being made
        self.position: int | None = None  # index of the job decided last in this pass (None: no pass)
        self.ready: list[int] = []  # heap
        self.wake = asyncio.Event()  # something changed: the coordinator looks again
        self.stop = asyncio.Event()  # stop everything (user cancel or a fatal error)
        # done once `stop` is set: one future that every waiting job watches (not a task each)
        self._stopped: asyncio.Future[None] | None = None
        self.user_canceled = False
        self.fatal: Exception | None = None
        self.pipeline_vars = resolve(pipeline.predefined)
        self.overrides = resolve(pipeline.variables, fallback=self.pipeline_vars)

    def allocate(self) -> None:
        settled = self.options.settled
        for name, s in settled.items():
            if JobStatus(s.status) not in _SETTLED_OK:
                raise ValueError(f'settled job "{name}": status {s.status} is not a settled one')
        jobs = self.plan.jobs
        fresh = [j for j in jobs if j.name not in settled]
        ids = list(self.listener.allocate_job_ids(fresh)) if fresh else []
        if len(ids) != len(fresh):
            raise ValueError(f"allocate_job_ids returned {len(ids)} ids for {len(fresh)} jobs")
        new_ids = dict(zip((j.name for j in fresh), ids, strict=True))
        for job in jobs:
            dag = self.plan.dag[job.name]
            done = settled.get(job.name)
            if done is None:
                node = _Node(JobResult(job, new_ids[job.name]), dag=dag)
                node.prior = max(0, self.options.prior_attempts.get(job.name, 0))
            else:
                result = JobResult(
                    job,
                    done.job_id,
                    status=JobStatus(done.status),
                    attempts=done.attempts,
                    allowed_failure=done.allowed_failure,
                )
                node = _Node(result, dag=dag, phase=_Phase.SETTLED, settled=done)
            node.index = len(self.nodes)
            self.nodes.append(node)
            self.by_name[job.name] = node
            self.counts[node.phase] += 1
        shared: dict[int, _Barrier] = {}  # id of a stage's wait tuple (aicd.engine.plan) -> its barrier
        for node in self.nodes:
            names = self.plan.waits_for[node.job_name]
            barrier = None if node.dag else shared.get(id(names))
            if barrier is None:
                barrier = _Barrier([self.by_name[n] for n in names])
                for dep in barrier.deps:
                    dep.waited_by.append(barrier)
                    if dep.phase is not _Phase.SETTLED:
                        barrier.unsettled += 1
                if not node.dag:
                    shared[id(names)] = barrier
            barrier.members.append(node)
            node.barrier = barrier
            if node.phase is _Phase.WAITING and barrier.unsettled == 0:
                heapq.heappush(self.decidable, node.index)

    def _move(self, node: _Node, phase: _Phase) -> None:
        """Every phase change goes through here (it keeps the bookkeeping above)."""
        old = node.phase
        if old is phase:
            return
        node.phase = phase
        self.counts[old] -= 1
        self.counts[phase] += 1
        if phase is _Phase.READY:
            heapq.heappush(self.ready, node.index)
        elif phase is _Phase.SETTLED:
            for barrier in node.waited_by:
                barrier.unsettled -= 1
                if barrier.unsettled == 0:
                    for member in barrier.members:
                        if member.phase is _Phase.WAITING:
                            # decided in this pass if it comes later in definition order, as a
                            # loop over every job in order would; else in the next pass
                            later = self.position is not None and member.index > self.position
                            heapq.heappush(self.this_pass if later else self.decidable, member.index)

    # -- telling the listener ------------------------------------------------------------------

    def _set(self, node: _Node, status: JobStatus, outcome: JobOutcome | None = None) -> None:
        r = node.result
        r.status = status
        if outcome is not None:
            r.outcome = outcome
        self.listener.job_status(r.job, r.job_id, max(node.prior + 1, r.attempts), status, outcome)

    def _info(self, node: _Node, text: str) -> None:
        self.listener.job_output(node.result.job, node.result.job_id, "info", text)

    # -- the coordinator -----------------------------------------------------------------------

    def request_stop(self, *, user: bool) -> None:
        if user and not self.stop.is_set():
            self.user_canceled = True
        self.stop.set()
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)
        self.wake.set()

    def _stopping(self) -> asyncio.Future[None]:
        """Done once the run stops (``stop`` is only set by :meth:`request_stop`); shared: never
        cancel it."""
        if self._stopped is None:
            self._stopped = asyncio.get_running_loop().create_future()
            if self.stop.is_set():
                self._stopped.set_result(None)
        return self._stopped

    async def main(self) -> None:
        while True:
            if self.cancel is not None and self.cancel.is_set():
                self.request_stop(user=True)
            if self.stop.is_set():
                self._cancel_unstarted()
            else:
                self._advance()
            # a READY job with nothing running here waits for a group another run holds
            if not (self.counts[_Phase.RUNNING] or self.counts[_Phase.DELAYED] or self.counts[_Phase.READY]):
                break
            self.wake.clear()
            await self.wake.wait()
        stuck = [n.job_name for n in self.nodes if n.phase is not _Phase.SETTLED]
        if stuck:  # make_plan rules out cycles, so this is a bug
            raise RuntimeError(f"engine stopped with jobs not settled: {', '.join(stuck)}")

    def _advance(self) -> None:
        """Decide every WAITING job whose deps are all settled, in passes in definition order (a job
        settled by a decision lets later jobs be decided in the same pass), then start READY jobs."""
        while self.decidable:
            self.this_pass, self.decidable = self.decidable, []
            self.position = -1
            try:
                while self.this_pass:
                    node = self.nodes[heapq.heappop(self.this_pass)]
                    if node.phase is not _Phase.WAITING:
                        continue  # decided already (an index can be queued twice)
                    self.position = node.index
                    self._decide(node)
            finally:
                self.position = None
        self._start_ready()

    def _upstream(self, node: _Node) -> tuple[Upstream, str | None]:
        barrier = node.barrier
        assert barrier is not None and barrier.unsettled == 0
        if barrier.upstream is None:  # settled jobs keep their result: one fold per barrier
            barrier.upstream = upstream_status((d.result for d in barrier.deps), dag=node.dag)
        return barrier.upstream

    def _decide(self, node: _Node) -> None:
        job = node.result.job
        upstream, blocker = self._upstream(node)
        action = decide(job.when, upstream, dag=node.dag)
        if action == "block":
            self._move(node, _Phase.SETTLED)
            node.result.blocked_by = blocker
            if job.when == "manual":
                self._set(node, JobStatus.CREATED)
            self._info(node, f'waits for manual job "{blocker}": play it with --manual "{blocker}"')
        elif action == "skip":
            self._move(node, _Phase.SETTLED)
            self._set(node, JobStatus.SKIPPED)
        elif job.when == "manual" and job.name not in self.options.play_manual:
            self._move(node, _Phase.SETTLED)
            self._set(node, JobStatus.MANUAL)
        else:
            node.group = self._group_name(node)
            delay = job.start_in_s or 0.0
            self._set(node, JobStatus.PENDING)
            if job.when == "delayed" and self.options.honour_delays and delay > 0:
                self._move(node, _Phase.DELAYED)
                self._info(node, f"delayed: starts in {_human(delay)}")
                node.task = asyncio.create_task(self._delay(node, delay), name=f"delay {job.name}")
            else:
                self._move(node, _Phase.READY)

    async def _delay(self, node: _Node, seconds: float) -> None:
        try:
            await asyncio.sleep(seconds)
            if node.phase is _Phase.DELAYED:
                self._move(node, _Phase.READY)
        finally:
            self.wake.set()

    def _start_ready(self) -> None:
        """Start READY jobs in definition order while there are free slots."""
        free = self.limit - self.counts[_Phase.RUNNING]
        held: list[int] = []  # READY, but their resource group is taken
        while free > 0 and self.ready:
            index = heapq.heappop(self.ready)
            node = self.nodes[index]
            if node.phase is not _Phase.READY:
                continue  # canceled meanwhile (or a duplicate entry)
            if node.group is not None:
                if not self.groups.try_acquire(node.group, self.wake):
                    held.append(index)  # held (here or by another run): woken when it is released
                    continue
                node.holding = node.group
            self._move(node, _Phase.RUNNING)
            free -= 1
            node.task = asyncio.create_task(self._run_job(node), name=f"job {node.job_name}")
            # also when the task is cancelled before it ever runs
            node.task.add_done_callback(functools.partial(self._group_task_done, node))
        for index in held:
            heapq.heappush(self.ready, index)

    def _group_task_done(self, node: _Node, _task: asyncio.Task[None]) -> None:
        self._release_group(node)

    def _release_group(self, node: _Node) -> None:
        group, node.holding = node.holding, None
        if group is not None:
            self.groups.release(group)

    def _cancel_unstarted(self) -> None:
        for node in self.nodes:
            if node.phase in (_Phase.WAITING, _Phase.DELAYED, _Phase.READY):
                if node.phase is _Phase.DELAYED and node.task is not None:
                    node.task.cancel()
                self._move(node, _Phase.SETTLED)
                self._set(node, JobStatus.CANCELED)
            elif node.phase is _Phase.SETTLED and node.result.status == JobStatus.CREATED:
                self._set(node, JobStatus.CANCELED)  # blocked: GitLab cancels created jobs too

    def cancel_job(self, name: str) -> bool:
        """RunControl.cancel_job: see there."""
        node = self.by_name.get(name)
        if node is None or node.phase is _Phase.SETTLED:
            return False
        if node.phase is _Phase.RUNNING:
            if node.canceled is None:
                node.canceled = asyncio.Event()
            node.canceled.set()
            if node.on_cancel is not None:
                node.on_cancel()
        else:
            if node.phase is _Phase.DELAYED and node.task is not None:
                node.task.cancel()
            self._move(node, _Phase.SETTLED)
            self._set(node, JobStatus.CANCELED)
        self.wake.set()
        return True

    async def drain(self) -> None:
        """Stop everything and wait until no task of this run is left, even if cancelled meanwhile."""
        self.request_stop(user=False)
        with contextlib.suppress(Exception):  # the listener may be what failed
            self._cancel_unstarted()
        for node in self.nodes:
            if node.phase is _Phase.DELAYED and node.task is not None:
                node.task.cancel()
        tasks = [n.task for n in self.nodes if n.task is not None]
        await _settle(asyncio.gather(*tasks, return_exceptions=True), None)

    def status(self) -> str:
        if self.user_canceled:
            return "canceled"
        results = [n.result for n in self.nodes]
        if any(r.counts_as_failure for r in results):
            return "failed"
        if any(r.status == JobStatus.CANCELED and not r.allowed_failure for r in results):
            return "canceled"
        return "success"

    # -- one job -------------------------------------------------------------------------------

    async def _run_job(self, node: _Node) -> None:
        try:
            await self._attempts(node)
        except asyncio.CancelledError:
            if not node.result.status.is_finished:
                with contextlib.suppress(Exception):
                    self._set(node, JobStatus.CANCELED)
            raise
        except Exception as exc:  # from the listener (or a bug): stop the run, raise it at the end
            if self.fatal is None:
                self.fatal = exc
            self.request_stop(user=False)
        finally:
            self._move(node, _Phase.SETTLED)
            self._release_group(node)
            self.wake.set()

    async def _attempts(self, node: _Node) -> None:
        r = node.result
        job = r.job
        while True:
            if r.attempts > 0:
                r.job_id = self.listener.allocate_retry_id(job, r.attempts + 1)
                r.attempts += 1
                self._set(node, JobStatus.PENDING)
            else:
                r.attempts = node.prior + 1
            outcome = await self._attempt(node)
            if outcome.status == "success":
                r.allowed_failure = False
                self._set(node, JobStatus.SUCCESS, outcome)
                return
            r.allowed_failure = failure_allowed(job, outcome)
            if outcome.status == "canceled":
                self._set(node, JobStatus.CANCELED, outcome)
                return
            again = (
                not self.stop.is_set()
                and not _is_set(node.canceled)
                and retry_wanted(job.retry, outcome, r.attempts)
            )
            self._set(node, JobStatus.FAILED, outcome)
            if not again:
                return
            self._info(node, f"retrying the job: attempt {r.attempts + 1} of {job.retry.max + 1}")

    def _request(self, node: _Node) -> JobRequest:
        r = node.result
        artifact_sources, dotenv = self._sources(node)
        return JobRequest(
            job=r.job,
            job_id=r.job_id,
            attempt=r.attempts,
            pipeline_id=self.pipeline_id,
            run_dir=self.run_dir,
            variables=self._variables(node, dotenv),
            artifact_sources=artifact_sources,
            log_path=job_log_path(self.run_dir, r.job_id),
        )

    def _sources(self, node: _Node) -> tuple[tuple[ArtifactSource, ...], tuple[Variable, ...]]:
        """The artifact sources that ran (and their dotenv variables) of a job about to start."""
        barrier = node.barrier
        shared = (
            barrier is not None
            and not node.dag
            and node.result.job.dependencies is None
            and barrier.unsettled == 0
        )
        if shared and barrier is not None and barrier.sources is not None:
            return barrier.sources
        sources = [self.by_name[name] for name in self.plan.artifact_sources(node.result.job)]
        ran = [s for s in sources if s.has_run]
        found = (
            tuple(ArtifactSource(s.job_name, s.result.job_id) for s in ran),
            tuple(v for s in ran for v in s.dotenv),
        )
        if shared and barrier is not None:
            barrier.sources = found
        return found

    def _variables(self, node: _Node, dotenv: Iterable[Variable]) -> tuple[Variable, ...]:
        """Lowest precedence first: predefined (pipeline, job), YAML, dotenv of sources, pipeline."""
        job = node.result.job
        own = job_variables(
            job,
            job_id=node.result.job_id,
            pipeline_vars=self.pipeline_vars,
            overrides=self.overrides,
            job_url_base=self.options.job_url_base,
        )
        return (*self.pipeline.predefined, *own, *job.variables, *dotenv, *self.pipeline.variables)

    def _group_name(self, node: _Node) -> str | None:
        raw = node.result.job.resource_group
        if not raw or "$" not in raw:
            return raw or None
        sources = [self.by_name[name] for name in self.plan.artifact_sources(node.result.job)]
        dotenv = [v for s in sources for v in s.dotenv]
        return expand(raw, resolve(self._variables(node, dotenv))) or None

    async def _attempt(self, node: _Node) -> JobOutcome:
        slots = self.options.slots
        # a trigger job only waits for its child pipeline, whose jobs take the slots: holding one
        # while they wait for one could leave every slot to a waiting trigger job (a deadlock)
        if slots is None or node.result.job.trigger is not None:
            return await self._attempt_in_slot(node)
        if not await self._take_slot(node, slots):
            now = time.time()
            log = job_log_path(self.run_dir, node.result.job_id)
            return JobOutcome("canceled", None, "canceled", now, now, log)
        try:
            return await self._attempt_in_slot(node)
        finally:
            slots.release()

    async def _take_slot(self, node: _Node, slots: asyncio.Semaphore) -> bool:
        """Wait for a shared slot; False (and no slot held) when the run or the job is canceled first."""
        if node.canceled is None:
            node.canceled = asyncio.Event()
        if not slots.locked():
            # a free slot: taken at once (acquire does not wait, nothing can cancel in between)
            if self.stop.is_set() or node.canceled.is_set():
                return False
            await slots.acquire()
            return True
        acquiring = asyncio.ensure_future(slots.acquire())
        own = asyncio.ensure_future(node.canceled.wait())
        try:
            watched: set[asyncio.Future[Any]] = {acquiring, self._stopping(), own}
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await _give_up_slot(acquiring, slots)
            raise
        finally:
            own.cancel()
        if not acquiring.done():
            await _give_up_slot(acquiring, slots)
            return False
        if self.stop.is_set() or node.canceled.is_set():
            slots.release()
            return False
        return True

    async def _attempt_in_slot(self, node: _Node) -> JobOutcome:
        request = self._request(node)
        job = request.job
        self._set(node, JobStatus.RUNNING)
        started = time.time()

        def on_output(kind: OutputKind, text: str) -> None:
            self.listener.job_output(job, request.job_id, kind, text)

        starting = asyncio.ensure_future(self.executor.start(request, on_output))
        try:
            handle = await asyncio.shield(starting)
        except asyncio.CancelledError:
            await _abandon_start(starting)
            raise
        except Exception as exc:
            return _broken(request, started, exc, on_output)
        waiter = asyncio.ensure_future(handle.wait())
        if node.canceled is None:
            node.canceled = asyncio.Event()
        try:
            return await self._watch(request, handle, waiter, started, on_output, node)
        except asyncio.CancelledError:
            await _stop(handle, waiter, "canceled")
            raise
        except Exception as exc:  # handle.wait() or handle.cancel() raised
            await _stop(handle, waiter, "canceled")
            return _broken(request, started, exc, on_output)

    async def _watch(
        self,
        request: JobRequest,
        handle: JobHandle,
        waiter: asyncio.Future[JobOutcome],
        started: float,
        on_output: OutputCallback,
        node: _Node,
    ) -> JobOutcome:
        job = request.job
        timeout = job.timeout_s if job.timeout_s is not None and job.timeout_s > 0 else DEFAULT_TIMEOUT_S
        canceled = node.canceled
        assert canceled is not None
        # the first of: the job's end, the run's stop, the job's cancel, its timeout (one future
        # and callbacks: no task per job for the cancel event, no asyncio.wait set-up)
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def wake(_: object = None) -> None:
            if not woken.done():
                woken.set_result(None)

        stopping = self._stopping()
        waiter.add_done_callback(wake)
        stopping.add_done_callback(wake)
        node.on_cancel = wake
        timer = loop.call_later(timeout, wake)
        if canceled.is_set():
            wake()
        try:
            await woken
        finally:
            timer.cancel()
            node.on_cancel = None
            waiter.remove_done_callback(wake)
            stopping.remove_done_callback(wake)
        if waiter.done():
            return waiter.result()
        timed_out = not self.stop.is_set() and not canceled.is_set()
        if timed_out:
            on_output("info", f"ERROR: the job timed out after {_human(timeout)}")
        outcome = await _stop(handle, waiter, "timeout" if timed_out else "canceled")
        if outcome is None:
            on_output("info", f"ERROR: the executor did not stop the job within {_human(CANCEL_GRACE_S)}")
            log = request.log_path or job_log_path(self.run_dir, request.job_id)
            if timed_out:
                return JobOutcome("failed", None, "job_execution_timeout", started, time.time(), log)
            return JobOutcome("canceled", None, "canceled", started, time.time(), log)
        if timed_out and outcome.status != "success" and outcome.failure_reason != "job_execution_timeout":
            outcome = replace(outcome, status="failed", failure_reason="job_execution_timeout")
        return outcome


# -- helpers for stopping things that must not be left behind -----------------------------------


async def _settle(aw: Awaitable[T], timeout: float | None) -> bool:
    """Wait until `aw` is done (at most `timeout` s), even if this task is cancelled meanwhile;
    a cancellation received is raised again afterwards. Returns whether it is done."""
    fut = asyncio.ensure_future(aw)
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    cancelled = False
    while not fut.done():
        remaining = None if deadline is None else deadline - loop.time()
        if remaining is not None and remaining <= 0:
            break
        try:
            await asyncio.wait({fut}, timeout=remaining)
        except asyncio.CancelledError:
            cancelled = True
    if not fut.done():
        fut.cancel()
    elif not fut.cancelled():
        fut.exception()  # retrieved: never "exception was never retrieved"
    if cancelled:
        raise asyncio.CancelledError
    return fut.done()


async def _stop(handle: JobHandle, waiter: asyncio.Future[JobOutcome], reason: str) -> JobOutcome | None:
    """Cancel a started job and wait for its outcome; None if the executor did not report in time."""
    cancelled = False
    try:
        if not waiter.done():
            await _settle(handle.cancel(reason), CANCEL_GRACE_S)
    except asyncio.CancelledError:
        cancelled = True
    try:
        done = await _settle(waiter, CANCEL_GRACE_S)
    except asyncio.CancelledError:
        cancelled, done = True, waiter.done()
    if cancelled:
        raise asyncio.CancelledError
    if not done:
        waiter.cancel()
        return None
    if waiter.cancelled() or waiter.exception() is not None:
        return None
    return waiter.result()


async def _abandon_start(starting: asyncio.Future[JobHandle]) -> None:
    """The run was cancelled while the executor was starting a job: stop what it started."""
    try:
        done = await _settle(starting, CANCEL_GRACE_S)
    except asyncio.CancelledError:
        done = starting.done()
    if not done:
        starting.cancel()
    elif not starting.cancelled() and starting.exception() is None:
        handle = starting.result()
        with contextlib.suppress(asyncio.CancelledError):
            await _stop(handle, asyncio.ensure_future(handle.wait()), "canceled")


def _broken(request: JobRequest, started: float, exc: Exception, on_output: OutputCallback) -> JobOutcome:
    """The executor failed (not the job's script): the attempt fails with runner_system_failure."""
    message = f"{type(exc).__name__}: {exc}"
    with contextlib.suppress(Exception):
        on_output("info", f"ERROR: the job could not run: {message}")
    log = request.log_path or job_log_path(request.run_dir, request.job_id)
    return JobOutcome("failed", None, "runner_system_failure", started, time.time(), log, error=message)


async def _give_up_slot(acquiring: asyncio.Future[Any], slots: asyncio.Semaphore) -> None:
    """Stop waiting for a slot; give it back if it was taken meanwhile."""
    acquiring.cancel()
    try:
        await acquiring
    except asyncio.CancelledError:
        if not acquiring.cancelled():
            raise
        return
    slots.release()


def _is_set(event: asyncio.Event | None) -> bool:
    return event is not None and event.is_set()


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
    control: RunControl | None = None,
) -> PipelineResult:
    """Run every job of `pipeline` (or the selected ones) to an end; see the module docstring.

    Raises AicdError before anything runs when the jobs wait for each other
    in a cycle or a job's stage is unknown. The executor is not closed here.
    """
    run = _Run(pipeline, executor, listener, pipeline_id, run_dir, options, cancel)
    run.allocate()
    listener.pipeline_status("running")
    watcher = asyncio.create_task(_watch_cancel(run, cancel)) if cancel is not None else None
    if control is not None:
        control.bind(run)
    try:
        await run.main()
    except BaseException:
        await run.drain()
        raise
    finally:
        if control is not None:
            control.bind(None)
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    if run.fatal is not None:
        raise run.fatal
    status = run.status()
    listener.pipeline_status(status)
    return PipelineResult(status=status, jobs=[n.result for n in run.nodes])


async def _watch_cancel(run: _Run, cancel: asyncio.Event) -> None:
    await cancel.wait()
    run.request_stop(user=True)
