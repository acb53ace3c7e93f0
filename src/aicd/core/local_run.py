"""Run a project's pipeline on this machine and record it: the core of `aicd run`.

Front end -> engine -> local executor, with the store recording every state
change. The CLI only parses flags and draws what the observer is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aicd.config import Settings, load_settings
from aicd.core.job_fields import job_fields
from aicd.core.run_observer import RunObserver
from aicd.core.run_owner import RunOwner, reap_stale_runs
from aicd.engine import EngineListener, JobStatus, PipelineResult, RunOptions, run_pipeline
from aicd.engine.plan import select_jobs
from aicd.errors import AicdError, ConfigError, ExecutorError, GitError, PipelineError, WorkflowFilteredOut
from aicd.executors.base import IR_FILE, Executor, JobOutcome, job_log_path
from aicd.executors.local import LocalExecutor
from aicd.executors.workspace import prune_builds, remove_tree, snapshot_commit
from aicd.pipeline import PipelineContext, load_pipeline
from aicd.pipeline.ir import Job, Pipeline, Variable
from aicd.pipeline.predefined import pipeline_variables
from aicd.pipeline.rules import ChangedFiles
from aicd.store import NewJob, PipelineRecord, Store
from aicd.store import open_store as open_store_at
from aicd.suggest import did_you_mean
from aicd.vcs import changed_files_between, commit_changes, git_info

# Job workspaces of this many newest pipelines are kept under .aicd/builds/.
KEEP_WORKSPACES = 3


@dataclass(frozen=True)
class RunRequest:
    """What `aicd run` was asked to run."""

    project_dir: Path
    file: str = ".gitlab-ci.yml"
    jobs: tuple[str, ...] = ()  # run only these (empty: all)
    with_needs: bool = False  # ...and the jobs they need, transitively
    manual: tuple[str, ...] = ()  # manual jobs to play
    variables: tuple[Variable, ...] = ()  # pipeline variables (highest precedence)
    commit: str | None = None  # run this commit's tree instead of the working tree
    concurrency: int | None = None
    source: str = "push"  # CI_PIPELINE_SOURCE
    isolate: bool = False  # run every job in the sandbox (bubblewrap), as a server does
    untracked: bool = False  # jobs also get the working tree's untracked (not ignored) files


@dataclass
class RunResult:
    """A local run's pipeline record, status and jobs."""

    pipeline: PipelineRecord
    status: str  # success, failed, canceled
    jobs: list[JobRun] = field(default_factory=list)


@dataclass
class JobRun:
    """One job of a local run, as reported."""

    job: Job
    job_id: int
    status: str
    attempt: int
    outcome: JobOutcome | None
    log_path: Path
    # allow_failure as it applied: False for a failure whose exit code is
    # not in allow_failure:exit_codes.
    allow_failure: bool = False


class _Recorder(EngineListener):
    """Engine events -> store rows, then to the observer.

    Job status changes are written in batches, one transaction each: a job's ``running`` is
    written at once, with every change queued before it, so it is committed before the executor
    starts the job (its shell can read it); the other changes (a job's end, a skip...) wait for
    the next ``running``, or ``BATCH_S`` at most. 200 quick jobs: ~200 transactions instead of
    ~400 (one per change), each ~40-60 us of the event loop's time. The order is kept, and a
    batch is committed whole or not at all, so the database is always the run's story up to some
    point, at most ``BATCH_S`` behind it. A failed write is raised at the next change, or by
    :meth:`flush`, which the run calls before it records the pipeline's end (and before a
    retry's new attempt), as when every change was written at once.
    """

    BATCH_S = 0.01

    def __init__(self, store: Store, record: PipelineRecord, observer: RunObserver) -> None:
        self.store = store
        self.record = record
        self.observer = observer
        self.run_dir = Path(record.run_dir)
        self._pending: list[tuple[int, dict[str, object]]] = []
        self._error: BaseException | None = None
        self._timer: asyncio.TimerHandle | None = None

    def log_path(self, job_id: int) -> Path:
        return job_log_path(self.run_dir, job_id)

    def allocate_job_ids(self, jobs: Sequence[Job]) -> list[int]:
        self.flush()
        rows = [
            NewJob(
                name=j.name,
                stage=j.stage,
                when=j.when,
                allow_failure=j.allow_failure,
                status="manual" if j.when == "manual" else "created",
            )
            for j in jobs
        ]
        return self.store.add_jobs(self.record.id, rows)

    def allocate_retry_id(self, job: Job, attempt: int) -> int:
        self.flush()
        return self.store.add_jobs(
            self.record.id,
            [NewJob(job.name, job.stage, job.when, job.allow_failure, "created", attempt)],
        )[0]

    def job_status(
        self, job: Job, job_id: int, attempt: int, status: JobStatus, outcome: JobOutcome | None
    ) -> None:
        if status == JobStatus.PENDING:  # transient: told, not stored (one write less per job)
            self.observer.job_status(job, job_id, attempt, str(status), outcome)
            return
        fields = job_fields(job, status, outcome, self.run_dir, job_id)
        self._queue(job_id, fields)
        if status == JobStatus.RUNNING:
            self._write_round()  # committed before the job starts (a failure: raised at the next change)
        self.observer.job_status(job, job_id, attempt, str(status), outcome)

    def _queue(self, job_id: int, fields: dict[str, object]) -> None:
        if self._error is not None:
            self.flush()  # raises the write that failed: the run stops as it did before batching
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not inside the engine's loop: write now
            self.store.update_job(job_id, **fields)
            return
        if self._timer is None:
            self._timer = loop.call_later(self.BATCH_S, self._timed_round)
        self._pending.append((job_id, fields))

    def _timed_round(self) -> None:
        self._timer = None
        self._write_round()

    def _write_round(self) -> None:
        try:
            self.flush()
        except BaseException as exc:  # kept for the engine's next call, or the run's final flush
            self._error = exc

    def flush(self) -> None:
        """Write the queued status changes now (one transaction); raise a write that failed."""
        error, self._error = self._error, None
        if error is not None:
            raise error  # what failed stays queued: a broken run's last flush tries it again
        pending, self._pending = self._pending, []
        if pending:
            try:
                self.store.update_jobs(pending)
            except BaseException:
                self._pending = pending + self._pending
                raise

    def job_output(self, job: Job, job_id: int, kind: str, text: str) -> None:
        self.observer.job_output(job, job_id, kind, text)

    def pipeline_status(self, status: str) -> None:
        self.flush()
        self.store.update_pipeline(self.record.id, status=status)


def open_store(project_dir: Path, settings: Settings | None = None) -> tuple[Store, Path]:
    """The project's run history and aicd home. An up-to-date SQLite database opens
    without importing SQLAlchemy (aicd.store.open_store picks the store)."""
    settings = settings or load_settings()
    home = settings.home_for(project_dir)
    return open_store_at(settings.database_url_for(home)), home


def _commit_tree(project_dir: Path, home: Path, sha: str) -> Path:
    """The files of commit `sha`, extracted once under home/sources/: with
    --commit, the pipeline file, its includes and `rules:exists` are read
    from the commit, not from the working tree."""
    dest = home / "sources" / sha
    done = dest / ".aicd-complete"
    if not done.exists():
        if dest.exists():
            remove_tree(dest)
        snapshot_commit(project_dir, sha, dest)
        done.touch()
    return dest


def _changes_since(project_dir: Path, commit: str | None, ref: str) -> list[str] | None:
    return changed_files_between(project_dir, ref, commit)


def _check_selection(pipeline: Pipeline, req: RunRequest) -> None:
    names = [j.name for j in pipeline.jobs]
    base = {j.base_name for j in pipeline.jobs}
    problems = []
    for name in (*req.jobs, *req.manual):
        if name not in names and name not in base:
            hint = did_you_mean(name, names)
            problems.append(f'no job named "{name}" in {req.file}{hint}')
    if problems:
        raise ConfigError("\n".join(problems))


def _expand_selection(pipeline: Pipeline, names: Sequence[str]) -> frozenset[str]:
    """Names given by the user may be a base name of parallel jobs: take all instances."""
    out: set[str] = set()
    for n in names:
        out.update(j.name for j in pipeline.jobs if j.name == n or j.base_name == n)
    return frozenset(out)


def _executor(
    project_dir: Path, home: Path, commit: str | None, bwrap: str | None, untracked: bool = False
) -> LocalExecutor:
    """Jobs on this machine; with --isolate (a bwrap given) in the sandbox, the project's home shared."""
    if bwrap is None:
        return LocalExecutor(project_dir, home, commit=commit, untracked=untracked)
    from aicd.executors.sandbox import SandboxExecutor

    return SandboxExecutor(
        project_dir, home, commit=commit, bwrap=bwrap, share_home=True, untracked=untracked
    )


def _early_executor(
    project_dir: Path, home: Path, commit: str | None, bwrap: str | None, untracked: bool
) -> LocalExecutor | None:
    """The run's executor before its pipeline is read; None when making it fails (made again,
    and the error raised, where it was before: once the pipeline is read)."""
    try:
        return _executor(project_dir, home, commit, bwrap, untracked)
    except AicdError:
        return None


def _sandbox_or_error() -> str:
    """The bwrap to run jobs with (--isolate), or a ConfigError saying why there is none."""
    from aicd.executors.sandbox import probe

    found = probe()
    if not found.ok or found.bwrap is None:
        raise ConfigError(f"--isolate: jobs cannot be sandboxed here: {found.reason}")
    return found.bwrap


async def run_local(
    req: RunRequest,
    observer: RunObserver,
    *,
    cancel: asyncio.Event | None = None,
    settings: Settings | None = None,
) -> RunResult:
    """Create, run and record one pipeline of the project at `req.project_dir`.

    Raises PipelineError (the pipeline is recorded as failed with the
    messages), WorkflowFilteredOut, or another AicdError.
    """
    settings = settings or load_settings()
    project_dir = req.project_dir.resolve()
    bwrap = await asyncio.to_thread(_sandbox_or_error) if req.isolate else None
    store, home = open_store(project_dir, settings)
    owner: RunOwner | None = None
    try:
        reap_stale_runs(store, home)
        owner = RunOwner.claim(home)
        info = git_info(project_dir, req.commit)
        if req.commit and not info.is_repo:
            raise GitError(f"--commit {req.commit}: {project_dir} is not a git repository with commits")
        record = store.create_pipeline(
            project_dir=str(project_dir),
            ref=info.ref_name,
            sha=info.sha,
            source=req.source,
            file=req.file,
            run_dir_root=str(home / "runs"),
        )
        owner.bind(record.id)
        predefined = pipeline_variables(
            info,
            pipeline_id=record.id,
            pipeline_iid=record.iid,
            source=req.source,
            project_dir=project_dir,
            created_at=record.created_at,
        )
        context = PipelineContext(
            predefined=predefined,
            variables=req.variables,
            changed_files=ChangedFiles(functools.partial(commit_changes, project_dir, info)),
            changes_since=functools.partial(_changes_since, project_dir, req.commit),
            child_pipelines=True,
        )
        # the jobs' executor, made now so that their Git checkout is made while the pipeline is read
        early = _early_executor(project_dir, home, req.commit, bwrap, req.untracked)
        if early is not None:
            early.prefetch({v.key: v.value for v in predefined})
        try:
            try:
                source_dir = _commit_tree(project_dir, home, info.sha) if req.commit else project_dir
                pipeline = load_pipeline(source_dir, req.file, context)
                _check_selection(pipeline, req)
            except WorkflowFilteredOut as exc:
                store.update_pipeline(record.id, status="skipped", error=str(exc), finished_at=time.time())
                owner.release()
                raise
            except AicdError as exc:
                store.update_pipeline(record.id, status="failed", error=str(exc), finished_at=time.time())
                owner.release()
                raise
            record = store.get_pipeline(record.id)
            options = RunOptions(
                concurrency=req.concurrency or settings.concurrency_or_default(),
                only=_expand_selection(pipeline, req.jobs) if req.jobs else None,
                with_needs=req.with_needs,
                play_manual=_expand_selection(pipeline, req.manual),
            )
            selected = (
                None if options.only is None else frozenset(j.name for j in select_jobs(pipeline, options))
            )
            observer.pipeline_created(record, pipeline, selected)
            recorder = _Recorder(store, record, observer)
            store.update_pipeline(record.id, status="running", started_at=time.time())
            # old workspaces are removed while the jobs run, off the critical path
            pruning = asyncio.ensure_future(asyncio.to_thread(prune_builds, home / "builds", KEEP_WORKSPACES))
            # the UI's graph: written here (in a worker thread it cost more than its few ms of JSON,
            # the thread and the event loop trading the interpreter lock while jobs start)
            save_graph(Path(record.run_dir), pipeline)
            executor: Executor = early or _executor(project_dir, home, req.commit, bwrap, req.untracked)
            if any(job.trigger is not None for job in pipeline.jobs):
                # child pipelines: their machinery is imported by the pipelines that have trigger jobs
                from aicd.core.child_pipelines import ChildRuns, TriggerExecutor

                children = ChildRuns(
                    store=store,
                    listener_for=functools.partial(_Recorder, store),
                    home=home,
                    project_dir=project_dir,
                    source_dir=source_dir,
                    info=info,
                    context=context,
                    observer=observer,
                    concurrency=options.concurrency,
                )
                children.pipeline_variables[record.id] = tuple(req.variables)
                executor = children.executor = TriggerExecutor(executor, children.run)
        except BaseException:
            if early is not None:
                with contextlib.suppress(Exception):
                    await early.close()
            raise
        failure: Exception | None = None
        try:
            result = await run_pipeline(
                pipeline,
                executor,
                recorder,
                pipeline_id=record.id,
                run_dir=Path(record.run_dir),
                options=options,
                cancel=cancel,
            )
        except Exception as exc:  # not a job's failure: a full disk, a database that cannot be written...
            failure = exc
        finally:
            await executor.close()
            await pruning
        if failure is None:
            try:
                recorder.flush()  # the last round of job status changes
            except Exception as exc:
                failure = exc
        if failure is not None:
            with contextlib.suppress(Exception):
                recorder.flush()  # what the jobs did before it broke, if it can still be written
            with contextlib.suppress(Exception):
                recorder.flush()  # (a failure kept from an earlier round is raised first)
            error, recorded = _broken_run(store, home, record.id, failure)
            if recorded:
                owner.release()
            raise error from failure
        store.update_pipeline(record.id, status=result.status, finished_at=time.time())
        owner.release()
        return _result(store.get_pipeline(record.id), result, recorder)
    finally:
        if owner is not None and owner.path.name.startswith("new-"):
            owner.release()  # no pipeline was recorded: nothing to mark
        store.close()


def save_graph(run_dir: Path, pipeline: Pipeline) -> None:
    """run_dir/pipeline.json, as the server saves it, without the pipeline's variables: what the UI
    (`aicd ui`) draws the graph from (stages, jobs, needs). Not written (a full disk): no graph."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / f".{IR_FILE}.tmp"
        tmp.write_text(dataclasses.replace(pipeline, variables=()).to_json(), encoding="utf-8")
        tmp.replace(run_dir / IR_FILE)
    except OSError:
        pass


def _broken_run(store: Store, home: Path, pipeline_id: int, exc: Exception) -> tuple[AicdError, bool]:
    """The run cannot go on (not a job's failure): free its workspaces, record it failed if the store
    can still be written (else the next `aicd run` or `aicd runs` does: see core.run_owner), and say
    so in one error. The error, and whether the run was recorded as failed."""
    with contextlib.suppress(OSError):
        remove_tree(home / "builds" / str(pipeline_id))
    what = str(exc) if isinstance(exc, AicdError) else f"{type(exc).__name__}: {exc}"
    try:
        now = time.time()
        for job in store.list_jobs(pipeline_id):
            if job.status == "running":
                store.update_job(
                    job.id, status="failed", failure_reason="runner_system_failure", finished_at=now
                )
            elif job.status in ("created", "pending"):
                store.update_job(job.id, status="skipped", finished_at=now)
        store.update_pipeline(pipeline_id, status="failed", error=what, finished_at=now)
    except AicdError:
        message = (
            f"run {pipeline_id} stopped: {what}; it could not be recorded as failed either: "
            "the next aicd run or aicd runs will do it (free some space first)"
        )
        return ExecutorError(message), False
    return ExecutorError(f"run {pipeline_id} failed: {what} (its workspaces were removed)"), True


def _result(record: PipelineRecord, result: PipelineResult, recorder: _Recorder) -> RunResult:
    jobs = [
        JobRun(
            job=r.job,
            job_id=r.job_id,
            status=str(r.status),
            attempt=r.attempts,
            outcome=r.outcome,
            log_path=r.outcome.log_path if r.outcome else recorder.log_path(r.job_id),
            allow_failure=r.allowed_failure if r.status == JobStatus.FAILED else r.job.allow_failure,
        )
        for r in result.jobs
    ]
    return RunResult(pipeline=record, status=result.status, jobs=jobs)


__all__ = ["JobRun", "PipelineError", "RunObserver", "RunRequest", "RunResult", "open_store", "run_local"]
