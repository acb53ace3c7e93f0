"""The server's dispatcher: runs the pipelines of server projects in the background.

`submit` records the pipeline and returns; a task then reads the pipeline file
from the commit (aicd.core.server_pipeline), saves the IR for later runs and
runs it through the engine on a SandboxExecutor (bubblewrap; a LocalExecutor
only when the server was started with --unsafe-no-sandbox). At start the
dispatcher checks that the sandbox works here; if it does not, pipelines end
failed with the reason instead of running unsandboxed. One semaphore of
`settings.concurrency` slots bounds the jobs running at once across all
pipelines of all projects (the engine's `RunOptions.slots`).

Pipeline status: created -> pending (IR ready) -> running -> success, failed,
canceled, skipped (workflow:rules), or `manual` when an unplayed blocking
manual job holds jobs back (GitLab's "blocked"). A pipeline file with errors
ends `failed` with the messages in `error`.

Retry and play resume a finished pipeline from its saved IR (aicd.core.resume):
finished jobs stay settled, the jobs asked for run again with new attempts.
While a pipeline is being run they are refused (ConflictError); cancel works
at any time. Auto-cancel (GitLab's `interruptible`): a new pipeline of a
project and ref cancels the older ones still running there whose started jobs
are all interruptible (jobs not started yet count as interruptible). As in
GitLab, pipelines of the same commit are not redundant: only a pipeline of a
newer commit on the ref cancels older ones.

Crash recovery (`start`): pipelines a killed server left unfinished are
resumed: jobs that were running end failed with runner_system_failure (their
log says so; processes they left are killed), or run again when their
`retry:when` covers runner_system_failure and attempts remain; jobs that had
not started are decided again. With workers, jobs still out on them (a live lease)
are adopted instead: they run on, and their results count.

A clean `stop` cancels what runs here. With workers it *detaches* instead: the
jobs on workers run on and nothing is written any more (no job or pipeline ends
`canceled`, no job token is revoked), so the next server finds the pipelines as a
crash leaves them and adopts the attempts.

Per project: one `ResourceGroups` for all its runs (a `resource_group` holds
across its pipelines, as in GitLab) and its own `cache:` folder,
home/cache/<project id>/.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aicd.core import server_pipeline as prep
from aicd.core.child_pipelines import ChildHooks, ChildRuns, QuietObserver, TriggerExecutor
from aicd.core.job_tokens import JobTokenExecutor
from aicd.core.orphans import kill_job_processes
from aicd.core.pipeline_links import children_of
from aicd.core.resume import FINISHED, ResumePlan, latest_rows, plan_resume
from aicd.core.server_recorder import ServerRecorder
from aicd.engine import ResourceGroups, RunControl, RunOptions, failure_allowed, run_pipeline
from aicd.engine.decision import retry_wanted
from aicd.errors import AicdError, ConflictError, NotFoundError, WorkflowFilteredOut
from aicd.executors.base import Executor, JobOutcome, JobRequest, job_log_path
from aicd.executors.local import LocalExecutor
from aicd.executors.sandbox import Probe, SandboxExecutor, probe
from aicd.executors.workspace import remove_tree
from aicd.pipeline.ir import Job, Pipeline, Variable
from aicd.pipeline.variables import masker
from aicd.store.job_tokens import JobTokenStore
from aicd.store.pipeline_queries import find_pipelines
from aicd.store.projects_repo import SERVER_PREFIX
from aicd.store.records import JobRecord, NewJob, PipelineRecord

if TYPE_CHECKING:
    from aicd.core.dispatch_deps import DispatchDeps
    from aicd.executors.celery_exec import BrokerSender, RemoteJobs
    from aicd.store.projects_repo import ProjectRecord

log = logging.getLogger("aicd.dispatcher")

UNFINISHED = ("created", "pending", "running")
STOP_GRACE_S = 60.0
CRASH_LINE = (
    "ERROR: Job failed (system failure): the aicd server stopped while this job was running "
    "(runner_system_failure)"
)


@dataclass(eq=False)
class _Active:
    """A pipeline this server is preparing or running."""

    pipeline_id: int
    project_key: str
    ref: str
    sha: str
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    control: RunControl = field(default_factory=RunControl)
    interruptible: dict[str, bool] | None = None  # job -> interruptible, once the IR is known
    secrets: list[str] = field(default_factory=list)  # masked values, kept out of error messages
    protected_ref: bool = False  # default branch or tag: its jobs' tokens may move protected aliases
    task: asyncio.Task[None] | None = None


class Dispatcher:
    """Runs server pipelines; one concurrency limit across all of them."""

    def __init__(self, state: DispatchDeps) -> None:
        self.state = state  # the host's objects (the server's ServerState), through narrow interfaces
        self._active: dict[int, _Active] = {}
        self._slots: asyncio.Semaphore | None = None
        # running child pipelines (of trigger jobs): what cancels each
        self._child_cancel: dict[int, asyncio.Event] = {}
        self._groups: dict[str, ResourceGroups] = {}  # project key -> its resource groups
        self._accepting = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.sandbox: Probe | None = None  # None: not checked yet, or --unsafe-no-sandbox
        # with a broker (AICD_BROKER_URL): the attempts out on workers; None: jobs run here
        self.remote: RemoteJobs | None = None
        # remote attempts whose row was written `pending` with their job token (not written again)
        self._pending_rows: set[int] = set()
        self._sender: BrokerSender | None = None
        self._leases: dict[int, int] = {}  # at start: attempts out on workers with a live lease -> runner
        self._detached = False  # a clean stop with workers: the rows are left for the next server

    @property
    def sandbox_status(self) -> str:
        """How jobs run: 'on', 'off' (--unsafe-no-sandbox) or 'unavailable: <why>'."""
        if self.remote is not None:
            return "workers"
        if self.state.settings.unsafe_no_sandbox:
            return "off"
        if self.sandbox is None:
            return "unknown"
        return "on" if self.sandbox.ok else f"unavailable: {self.sandbox.reason}"

    @property
    def home(self) -> Path:
        return self.state.settings.home

    @property
    def server_url(self) -> str:
        """The server's URL (`aicd server` puts the port it listens on in the settings)."""
        settings = self.state.settings
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        return f"http://{host}:{settings.port}"

    @property
    def job_api_url(self) -> str:
        """The URL jobs on this host reach the server at (AICD_SERVER): loopback when it listens there
        or on every address."""
        host = self.state.settings.host.strip("[]")
        if host in ("", "0.0.0.0", "127.0.0.1", "localhost"):
            host = "127.0.0.1"
        elif host in ("::", "::1"):
            host = "[::1]"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.state.settings.port}"

    def cache_dir(self, project_id: int) -> Path:
        """The project's own `cache:` folder."""
        return self.home / "cache" / str(project_id)

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover the pipelines a crash left unfinished, then accept work."""
        self._slots = asyncio.Semaphore(max(1, self.state.settings.concurrency))
        if self.state.settings.broker_url:
            await self._start_remote()
        else:
            await self.check_sandbox()
        # no attempt of an earlier server process still runs here: its job tokens end now, but for
        # those out on workers with a live lease (they are adopted below)
        self._leases = {}
        if self.remote is not None:
            from aicd.store.job_leases import JobLeaseStore

            found = await asyncio.to_thread(JobLeaseStore(self.state.database).live)
            self._leases = {lease.job_id: lease.runner_id for lease in found}
        await asyncio.to_thread(JobTokenStore(self.state.database).revoke_all, keep_jobs=list(self._leases))
        await self._recover()
        self._accepting = True

    async def _start_remote(self) -> None:
        """Jobs go to workers through the broker (aicd.executors.celery_exec)."""
        from aicd.core.remote_jobs import StoreBook
        from aicd.executors.celery_exec import BrokerSender, RemoteJobs, RemoteSettings
        from aicd.store.job_leases import JobLeaseStore
        from aicd.store.runners import RunnerStore
        from aicd.triggers.mirror import redact

        settings = self.state.settings
        assert settings.broker_url is not None
        if settings.database_url.startswith("sqlite"):
            log.warning(
                "jobs go to workers through a broker, but the database is SQLite, which is for one "
                "machine: use PostgreSQL (AICD_DATABASE_URL) for a server with workers"
            )
        self._sender = BrokerSender(settings.broker_url)
        database = self.state.database
        book = StoreBook(
            self.state.runs, JobLeaseStore(database), RunnerStore(database), pending_rows=self._pending_rows
        )
        self.remote = RemoteJobs(
            self._sender.send,
            book,
            RemoteSettings(
                queue_prefix=settings.queue_prefix,
                lease_s=settings.lease_timeout_s,
                stuck_timeout_s=settings.stuck_timeout_s,
                resend_s=settings.resend_s,
            ),
        )
        await self.remote.start()
        log.info(
            "jobs run on workers: broker %s, queues %s.*", redact(settings.broker_url), settings.queue_prefix
        )

    async def check_sandbox(self) -> None:
        """Whether jobs can run sandboxed here; says so in the log (and on /api/v1/health)."""
        if self.state.settings.unsafe_no_sandbox:
            log.warning(
                "UNSAFE: --unsafe-no-sandbox: jobs run unsandboxed as the server's user; any pipeline can "
                "read the server's secret key, admin token and database and become its admin"
            )
            return
        self.sandbox = await asyncio.to_thread(probe)
        if self.sandbox.ok:
            limits = "a pids cgroup per job" if self.sandbox.pids_cgroup else "RLIMIT_NPROC only"
            log.info("jobs run sandboxed: %s; process limit: %s", self.sandbox.reason, limits)
        else:
            log.error(
                "jobs cannot be sandboxed here, so none will run: %s. Fix that, or start the server "
                "with --unsafe-no-sandbox if every pusher is trusted",
                self.sandbox.reason,
            )

    def _executor(self, mirror: Path, record: PipelineRecord, project: ProjectRecord) -> Executor | None:
        """The executor of one pipeline run; None when jobs may not run (no sandbox here)."""
        settings = self.state.settings
        if self.remote is not None:
            from aicd.executors.celery_exec import CeleryExecutor

            return CeleryExecutor(
                self.remote, job_env={"AICD_ENV_SCOPE": project.name}, project_id=project.id
            )
        cache_dir = self.cache_dir(project.id)
        # a job reaches the server only through its API, with its CI_JOB_TOKEN: never the server's
        # home or database (no AICD_HOME, AICD_DATABASE_URL, ... from this process's environment);
        # AICD_ENV_SCOPE: this project's environments
        job_env = {"AICD_SERVER": self.job_api_url, "AICD_ENV_SCOPE": project.name}
        if settings.unsafe_no_sandbox:
            return LocalExecutor(
                mirror,
                self.home,
                commit=record.sha,
                die_with_parent=True,
                cache_dir=cache_dir,
                inherit_aicd_env=False,
                job_env=job_env,
            )
        if self.sandbox is None or not self.sandbox.ok:
            return None
        return SandboxExecutor(
            mirror,
            self.home,
            commit=record.sha,
            die_with_parent=True,
            cache_dir=cache_dir,
            job_env=job_env,
            limits=settings.job_limits,
            network=settings.job_network,
            bwrap=self.sandbox.bwrap,
            hidden_paths=settings.job_hidden_paths,
        )

    async def stop(self) -> None:
        """Cancel what runs and wait for it (a clean shutdown leaves nothing to recover). With
        workers: detach instead (see the module's docstring)."""
        self._accepting = False
        if self.remote is not None:
            self._detached = True
            self.remote.detach()
            for active in list(self._active.values()):
                if active.task is not None:
                    active.task.cancel()
        else:
            for active in list(self._active.values()):
                active.cancel.set()
        tasks = [a.task for a in self._active.values() if a.task is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self.remote is not None:
            await self.remote.close()
        if self._sender is not None:
            await asyncio.to_thread(self._sender.close)

    def _is_detached(self) -> bool:
        return self._detached

    def is_active(self, pipeline_id: int) -> bool:
        """Whether this server is preparing or running the pipeline now."""
        return pipeline_id in self._active

    async def wait_idle(self, timeout: float) -> None:
        """Until no pipeline is being prepared or run; TimeoutError after `timeout` s."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    # -- new pipelines ---------------------------------------------------------------------------

    async def submit(
        self,
        project: ProjectRecord,
        *,
        ref: str,
        sha: str,
        source: str,
        variables: Sequence[Variable] = (),
        actor: str,
        before_sha: str | None = None,
        user_login: str | None = None,
        user_name: str | None = None,
    ) -> PipelineRecord:
        """Record a pipeline of `sha` on `ref` and run it in the background; returns the new row.

        `before_sha`: the commit before a push (CI_COMMIT_BEFORE_SHA; zeros for a new branch;
        None: not a push). `user_login`/`user_name`: who started it (GITLAB_USER_LOGIN/_NAME;
        None: the commit's author). `actor` is for logs only.
        """
        if self._slots is None or not self._accepting:
            raise AicdError("the aicd server is not accepting pipelines (it is starting or stopping)")
        given = tuple(variables)
        record = self.state.runs.create_pipeline(
            project_dir=project.key,
            ref=ref,
            sha=sha,
            source=source,
            file=project.pipeline_file,
            run_dir_root=str(self.home / "runs"),
            variables={v.key: v.value for v in given if not v.masked} or None,
        )
        trigger = prep.Trigger(before_sha=before_sha, user_login=user_login, user_name=user_name)
        if any(v.masked for v in given):
            # kept (encrypted) before anything else: a crash while preparing must not lose them
            prep.save_given(Path(record.run_dir), given, self.state.secrets)
        prep.save_trigger(Path(record.run_dir), trigger)
        self._auto_cancel(project.key, ref, sha, record.id)
        active = _Active(record.id, project.key, ref, sha, secrets=[v.value for v in given if v.masked])
        self._launch(active, lambda: self._first_run(active, project, record, given, trigger))
        return record

    def _auto_cancel(self, project_key: str, ref: str, sha: str, newer: int) -> None:
        for active in list(self._active.values()):
            if active.project_key != project_key or active.ref != ref or active.pipeline_id >= newer:
                continue
            if active.sha == sha:  # GitLab: a pipeline of the same commit is not redundant
                continue
            if active.cancel.is_set():
                continue
            started = [r for r in self.state.runs.list_jobs(active.pipeline_id) if r.started_at is not None]
            flags = active.interruptible or {}
            if all(flags.get(r.name, False) for r in started):
                log.info("pipeline %s: auto-canceled by pipeline %s", active.pipeline_id, newer)
                active.cancel.set()

    async def _first_run(
        self,
        active: _Active,
        project: ProjectRecord,
        record: PipelineRecord,
        given: tuple[Variable, ...],
        trigger: prep.Trigger,
    ) -> None:
        runs = self.state.runs
        mirror = _mirror(self.home, project)
        try:
            pipeline = await asyncio.to_thread(self._prepare, active, project, record, given, trigger)
        except WorkflowFilteredOut as exc:
            message = masker(active.secrets)(str(exc))
            runs.update_pipeline(record.id, status="skipped", error=message, finished_at=time.time())
            return
        except AicdError as exc:
            message = self._hide_paths(masker(active.secrets)(str(exc)), project, mirror)
            runs.update_pipeline(record.id, status="failed", error=message, finished_at=time.time())
            return
        if active.cancel.is_set():
            runs.update_pipeline(record.id, status="canceled", finished_at=time.time())
            return
        runs.update_pipeline(record.id, status="pending", name=pipeline.name)
        await self._run(active, record, mirror, pipeline, ResumePlan(), given)

    def _hide_paths(self, message: str, project: ProjectRecord, mirror: Path) -> str:
        """A message for API callers: the server's folders named, not shown."""
        message = message.replace(str(mirror), f"the mirror of project {project.name!r}")
        return message.replace(str(self.home), "<server home>")

    def _prepare(
        self,
        active: _Active,
        project: ProjectRecord,
        record: PipelineRecord,
        given: tuple[Variable, ...],
        trigger: prep.Trigger,
    ) -> Pipeline:
        """In a worker thread: the commit's tree, the variables, the IR (saved for later runs)."""
        from aicd.triggers.mirror import has_commit, list_refs

        mirror = _mirror(self.home, project)
        if not has_commit(mirror, record.sha):
            raise AicdError(
                f"commit {record.sha} of {record.ref!r} is not in the mirror of project {project.name!r}: "
                "poll the project (or send its webhook) so that the server fetches it"
            )
        kind = prep.ref_kind(record.ref, list_refs(mirror))
        protected = kind.tag is not None or kind.branch == project.default_branch
        active.protected_ref = protected
        project_vars = prep.project_variables(
            self.state.projects, self.state.secrets, project, protected_ref=protected
        )
        # known before the pipeline file is read: its error messages are masked with them
        active.secrets += [v.value for v in project_vars if v.masked]
        tree = prep.commit_tree(self.home, project.id, mirror, record.sha)
        predefined = prep.predefined(
            project=project,
            record=record,
            mirror=mirror,
            kind=kind,
            server_url=self.server_url,
            trigger=trigger,
            protected_ref=protected,
        )
        pipeline = prep.load_server_pipeline(
            tree,
            mirror,
            record.file,
            sha=record.sha,
            kind=kind,
            predefined_vars=predefined,
            variables=[*project_vars, *given],
        )
        prep.save_ir(Path(record.run_dir), pipeline, given)
        return pipeline

    # -- running ----------------------------------------------------------------------------------

    def _launch(self, active: _Active, work: Callable[[], Awaitable[None]]) -> None:
        self._active[active.pipeline_id] = active
        self._idle.clear()

        async def runner() -> None:
            try:
                await work()
            except asyncio.CancelledError:
                self._fail_quietly(active, "the aicd server stopped before the pipeline ended", "canceled")
                raise
            except Exception as exc:
                log.exception("pipeline %s: internal error", active.pipeline_id)
                message = masker(active.secrets)(f"internal error: {type(exc).__name__}: {exc}")
                self._fail_quietly(active, message, "failed")
            finally:
                if self._active.get(active.pipeline_id) is active:
                    del self._active[active.pipeline_id]
                if not self._active:
                    self._idle.set()

        active.task = asyncio.create_task(runner(), name=f"pipeline {active.pipeline_id}")

    def _fail_quietly(self, active: _Active, message: str, status: str) -> None:
        if self._detached:
            return  # left as it is for the next server
        with contextlib.suppress(Exception):
            record = self.state.runs.get_pipeline(active.pipeline_id)
            if record.status in UNFINISHED:
                self.state.runs.update_pipeline(
                    active.pipeline_id, status=status, error=message, finished_at=time.time()
                )
            for row in self.state.runs.list_jobs(active.pipeline_id, include_retried=False):
                if row.status in ("created", "pending", "running"):
                    self.state.runs.update_job(row.id, status="canceled", finished_at=time.time())

    async def _run(
        self,
        active: _Active,
        record: PipelineRecord,
        mirror: Path,
        pipeline: Pipeline,
        plan: ResumePlan,
        given: Sequence[Variable] = (),
    ) -> None:
        """Run (or resume) the pipeline through the engine, then write its final status."""
        assert self._slots is not None
        active.interruptible = {j.name: j.interruptible for j in pipeline.jobs}
        recorder = ServerRecorder(
            self.state.runs,
            record,
            reuse=plan.reuse,
            prior_attempts=plan.prior_attempts,
            pending=plan.pending,
            frozen=self._is_detached,
            running=plan.running,
            remote=self.remote is not None,
        )
        project = self._project_of(record)
        options = RunOptions(
            concurrency=max(1, self.state.settings.concurrency),
            play_manual=plan.play,
            settled=plan.settled,
            prior_attempts=plan.prior_attempts,
            slots=self._slots,
            resource_groups=self._groups.setdefault(project.key, ResourceGroups()),
            job_url_base=prep.project_url(self.server_url, project.name) + "/jobs/",
        )
        local = self._executor(mirror, record, project)
        if local is None:
            reason = self.sandbox.reason if self.sandbox is not None else "it was not checked"
            self._fail_quietly(
                active,
                f"no job ran: the server cannot sandbox jobs ({reason}); an admin may start it with "
                "--unsafe-no-sandbox if every pusher is trusted",
                "failed",
            )
            return
        tokens = JobTokenExecutor(
            local,
            JobTokenStore(self.state.database),
            project_id=project.id,
            protected_ref=active.protected_ref,
            queued=self._pending_rows if self.remote is not None else None,
        )
        executor: Executor = tokens
        if any(j.trigger is not None for j in pipeline.jobs):
            children = await asyncio.to_thread(
                self._child_runs, active, record, project, mirror, options, tuple(given)
            )
            executor = children.executor = TriggerExecutor(tokens, children.run)
        try:
            result = await run_pipeline(
                pipeline,
                executor,
                recorder,
                pipeline_id=record.id,
                run_dir=Path(record.run_dir),
                options=options,
                cancel=active.cancel,
                control=active.control,
            )
        finally:
            await executor.close()
            ids = [record.id]
            for pid in ids:  # children and grandchildren too: their run folders are beside this one
                ids += [
                    c.pipeline_id
                    for c in children_of(self.home / "runs" / str(pid))
                    if c.pipeline_id not in ids
                ]
            for pid in ids:
                self._child_cancel.pop(pid, None)
                builds = self.home / "builds" / str(pid)
                if builds.exists():
                    await asyncio.to_thread(remove_tree, builds)
        status = result.status
        if status == "success" and result.blocked:
            status = "manual"  # GitLab's blocked pipeline: a manual job holds jobs back
        self.state.runs.update_pipeline(record.id, status=status, finished_at=time.time())

    def _child_runs(
        self,
        active: _Active,
        record: PipelineRecord,
        project: ProjectRecord,
        mirror: Path,
        options: RunOptions,
        given: tuple[Variable, ...],
    ) -> ChildRuns:
        """In a worker thread: what runs the child pipelines of this pipeline's trigger jobs (from the
        same commit, with the project's variables, in the same job slots, recorded as server pipelines
        of source ``parent_pipeline``, each linked to its parent)."""
        from aicd.triggers.mirror import list_refs
        from aicd.vcs import git_info

        kind = prep.ref_kind(record.ref, list_refs(mirror))
        project_vars = prep.project_variables(
            self.state.projects, self.state.secrets, project, protected_ref=active.protected_ref
        )
        tree = prep.commit_tree(self.home, project.id, mirror, record.sha)
        trigger = prep.load_trigger(Path(record.run_dir))
        info = dataclasses.replace(git_info(mirror, record.sha), ref_name=record.ref)

        def predefined(child: PipelineRecord, config_path: str) -> list[Variable]:
            return prep.predefined(
                project=project,
                record=child,
                mirror=mirror,
                kind=kind,
                server_url=self.server_url,
                trigger=trigger,
                protected_ref=active.protected_ref,
            )

        def loaded(child: PipelineRecord, pipeline: Pipeline, forwarded: Sequence[Variable]) -> None:
            prep.save_ir(Path(child.run_dir), pipeline, forwarded)
            self.state.runs.update_pipeline(child.id, name=pipeline.name or child.name)

        def final_status(child: PipelineRecord, status: str, blocked: bool) -> str:
            return "manual" if status == "success" and blocked else status

        def created(_request: JobRequest, child: PipelineRecord, cancel: asyncio.Event) -> None:
            self._child_cancel[child.id] = cancel

        hooks = ChildHooks(
            project_key=project.key,
            created=created,
            predefined=predefined,
            base_variables=tuple(project_vars),
            options=lambda: dataclasses.replace(
                options, play_manual=frozenset(), settled={}, prior_attempts={}
            ),
            loaded=loaded,
            final_status=final_status,
        )
        context = prep.server_context(mirror, sha=record.sha, kind=kind, predefined_vars=(), variables=())
        children = ChildRuns(
            store=self.state.runs,
            listener_for=lambda child, _observer: ServerRecorder(
                self.state.runs, child, frozen=self._is_detached, remote=self.remote is not None
            ),
            home=self.home,
            project_dir=mirror,
            source_dir=tree,
            info=info,
            context=context,
            observer=QuietObserver(),
            concurrency=options.concurrency,
            hooks=hooks,
        )
        children.pipeline_variables[record.id] = given
        return children

    async def _resume(self, active: _Active, record: PipelineRecord, plan: ResumePlan) -> None:
        project = self._project_of(record)
        pipeline, given = prep.load_ir(Path(record.run_dir), self.state.secrets)
        mirror = _mirror(self.home, project)
        from aicd.triggers.mirror import list_refs

        refs = await asyncio.to_thread(list_refs, mirror)
        kind = prep.ref_kind(record.ref, refs)
        protected = kind.tag is not None or kind.branch == project.default_branch
        active.protected_ref = protected
        project_vars = await asyncio.to_thread(
            prep.project_variables, self.state.projects, self.state.secrets, project, protected_ref=protected
        )
        active.secrets += [v.value for v in (*project_vars, *given) if v.masked]
        pipeline = dataclasses.replace(pipeline, variables=(*project_vars, *given))
        await self._run(active, self.state.runs.get_pipeline(record.id), mirror, pipeline, plan, given)

    def _project_of(self, record: PipelineRecord) -> ProjectRecord:
        if not record.project_dir.startswith(SERVER_PREFIX):
            raise NotFoundError(f"pipeline {record.id} is not a pipeline of a server project")
        return self.state.projects.get(record.project_dir.removeprefix(SERVER_PREFIX))

    def _start_resume(self, record: PipelineRecord, plan: ResumePlan) -> None:
        # pending at once: whoever asked sees the pipeline is not finished any more
        self.state.runs.update_pipeline(record.id, status="pending", finished_at=None)
        active = _Active(record.id, record.project_dir, record.ref, record.sha)
        self._launch(active, lambda: self._resume(active, record, plan))

    def _new_attempts(self, record: PipelineRecord, pipeline: Pipeline, plan: ResumePlan) -> ResumePlan:
        """Rows for the jobs run again that ran before (attempt + 1), made now so callers see them."""
        need = [n for n in plan.prior_attempts if n not in plan.reuse and n not in plan.settled]
        if not need:
            return plan
        by_name = {j.name: j for j in pipeline.jobs}
        rows = [
            NewJob(
                name=n,
                stage=by_name[n].stage,
                when=by_name[n].when,
                allow_failure=by_name[n].allow_failure,
                status="pending",
                attempt=plan.prior_attempts[n] + 1,
            )
            for n in need
        ]
        ids = self.state.runs.add_jobs(record.id, rows)
        reuse = {**plan.reuse, **dict(zip(need, ids, strict=True))}
        return dataclasses.replace(plan, reuse=reuse, pending=plan.pending | frozenset(need))

    # -- acting on pipelines and jobs -------------------------------------------------------------

    def _idle_record(self, pipeline_id: int, action: str) -> PipelineRecord:
        record = self.state.runs.get_pipeline(pipeline_id)
        if pipeline_id in self._active:
            raise ConflictError(
                f"pipeline {pipeline_id} is still running: {action} it when it has finished, or cancel it"
            )
        if not self._accepting:
            raise AicdError("the aicd server is not accepting work (it is starting or stopping)")
        return record

    def _saved_ir(self, record: PipelineRecord) -> Pipeline:
        try:
            return prep.load_ir(Path(record.run_dir), self.state.secrets)[0]
        except (OSError, ValueError):
            raise ConflictError(
                f"pipeline {record.id} never started (status {record.status}): there is nothing to run "
                "again; trigger a new pipeline instead"
            ) from None

    async def cancel_pipeline(self, pipeline_id: int) -> PipelineRecord:
        """Cancel a running pipeline (waits until its jobs stopped), or the waiting jobs of a
        blocked one; a finished pipeline is returned unchanged."""
        record = self.state.runs.get_pipeline(pipeline_id)
        child = self._child_cancel.get(pipeline_id)
        if child is not None and record.status in UNFINISHED:
            # a running child pipeline: its trigger job's run stops it (and the trigger job, with
            # strategy: depend, ends canceled)
            child.set()
            deadline = time.monotonic() + STOP_GRACE_S
            while self.state.runs.get_pipeline(pipeline_id).status in UNFINISHED:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            return self.state.runs.get_pipeline(pipeline_id)
        active = self._active.get(pipeline_id)
        if active is not None:
            active.cancel.set()
            if active.task is not None:
                await asyncio.wait({active.task}, timeout=STOP_GRACE_S)
            return self.state.runs.get_pipeline(pipeline_id)
        if record.status in (*UNFINISHED, "manual"):
            now = time.time()
            for row in self.state.runs.list_jobs(pipeline_id, include_retried=False):
                if row.status in ("created", "pending", "manual"):
                    self.state.runs.update_job(row.id, status="canceled", finished_at=now)
            self.state.runs.update_pipeline(pipeline_id, status="canceled", finished_at=now)
        return self.state.runs.get_pipeline(pipeline_id)

    async def retry_pipeline(self, pipeline_id: int) -> PipelineRecord:
        """Run the failed and canceled jobs again (new attempts) and what depends on them."""
        record = self._idle_record(pipeline_id, "retry")
        pipeline = self._saved_ir(record)
        rows = self.state.runs.list_jobs(pipeline_id, include_retried=False)
        again = [r.name for r in latest_rows(rows).values() if r.status in ("failed", "canceled")]
        if not again:
            raise ConflictError(f"pipeline {pipeline_id} has no failed or canceled job to retry")
        plan = plan_resume(pipeline, rows, Path(record.run_dir), rerun=again)
        plan = self._new_attempts(record, pipeline, plan)
        self._start_resume(record, plan)
        return self.state.runs.get_pipeline(pipeline_id)

    async def cancel_job(self, job_id: int) -> JobRecord:
        """Cancel a pending or running job; its pipeline goes on as after any canceled job."""
        row = self.state.runs.get_job(job_id)
        active = self._active.get(row.pipeline_id)
        if active is not None and not row.retried and active.control.cancel_job(row.name):
            deadline = time.monotonic() + STOP_GRACE_S
            while time.monotonic() < deadline:
                row = self.state.runs.get_job(job_id)
                if row.status in FINISHED or row.status == "skipped":
                    break
                await asyncio.sleep(0.05)
            return row
        if active is None and row.status == "created" and not row.retried:
            record = self.state.runs.get_pipeline(row.pipeline_id)
            if record.status == "manual":  # a blocked job of a blocked pipeline
                self.state.runs.update_job(job_id, status="canceled", finished_at=time.time())
                return self.state.runs.get_job(job_id)
        raise ConflictError(
            f'job {job_id} ("{row.name}") is {row.status}: only a pending or running job can be canceled'
        )

    async def retry_job(self, job_id: int) -> JobRecord:
        """Run a finished job again (a new attempt), then what depends on it."""
        row = self.state.runs.get_job(job_id)
        if row.retried:
            raise ConflictError(f"job {job_id} was retried already: retry its latest attempt")
        if row.status not in FINISHED:
            raise ConflictError(
                f'job {job_id} ("{row.name}") is {row.status}: only a finished job can be retried'
            )
        record = self._idle_record(row.pipeline_id, "retry a job of")
        pipeline = self._saved_ir(record)
        rows = self.state.runs.list_jobs(record.id, include_retried=False)
        plan = plan_resume(pipeline, rows, Path(record.run_dir), rerun=[row.name])
        plan = self._new_attempts(record, pipeline, plan)
        self._start_resume(record, plan)
        return self.state.runs.get_job(plan.reuse[row.name])

    async def play_job(self, job_id: int) -> JobRecord:
        """Run a manual job that waits to be played, then what it unblocks."""
        row = self.state.runs.get_job(job_id)
        if row.status != "manual" or row.retried:
            raise ConflictError(
                f'job {job_id} ("{row.name}") is {row.status}: only a manual job can be played'
            )
        record = self._idle_record(row.pipeline_id, "play a job of")
        pipeline = self._saved_ir(record)
        rows = self.state.runs.list_jobs(record.id, include_retried=False)
        plan = plan_resume(pipeline, rows, Path(record.run_dir), play=[row.name])
        self.state.runs.update_job(job_id, status="pending")
        self._start_resume(record, plan)
        return self.state.runs.get_job(job_id)

    # -- crash recovery ---------------------------------------------------------------------------

    async def _recover(self) -> None:
        unfinished = find_pipelines(self.state.database, statuses=UNFINISHED, limit=None, newest_first=False)
        for record in unfinished:
            if not record.project_dir.startswith(SERVER_PREFIX):
                continue  # an `aicd run` sharing the database: not the server's
            try:
                await self._recover_one(record)
            except Exception as exc:
                log.exception("pipeline %s: cannot recover it", record.id)
                self.state.runs.update_pipeline(
                    record.id,
                    status="failed",
                    error="the aicd server stopped while running this pipeline and could not resume it: "
                    + str(exc),
                    finished_at=time.time(),
                )

    async def _recover_one(self, record: PipelineRecord) -> None:
        runs = self.state.runs
        project = self._project_of(record)
        run_dir = Path(record.run_dir)
        if not (run_dir / prep.IR_FILE).exists():  # it stopped while preparing: prepare again
            given = prep.load_given(run_dir, record.variables, self.state.secrets)
            active = _Active(
                record.id,
                record.project_dir,
                record.ref,
                record.sha,
                secrets=[v.value for v in given if v.masked],
            )
            trigger = prep.load_trigger(run_dir)
            self._launch(active, lambda: self._first_run(active, project, record, given, trigger))
            return
        pipeline = prep.load_ir(run_dir, self.state.secrets)[0]
        by_name = {j.name: j for j in pipeline.jobs}
        rows = runs.list_jobs(record.id, include_retried=False)
        broken = [r for r in rows if r.status == "running"]
        adopted = [r for r in broken if self._adopt(record, run_dir, by_name, r)]
        broken = [r for r in broken if r not in adopted]
        await asyncio.to_thread(kill_job_processes, [r.id for r in broken], self.home / "builds")
        again: list[str] = []
        now = time.time()
        for row in broken:
            log_path = Path(row.log_path) if row.log_path else job_log_path(run_dir, row.id)
            _append_line(log_path, CRASH_LINE)
            job = by_name.get(row.name)
            failed = JobOutcome("failed", None, "runner_system_failure", now, now, log_path)
            runs.update_job(
                row.id,
                status="failed",
                failure_reason="runner_system_failure",
                finished_at=now,
                log_path=str(log_path),
                allow_failure=job is not None and failure_allowed(job, failed),
            )
            if job is not None and retry_wanted(job.retry, failed, row.attempt):
                again.append(row.name)
        rows = runs.list_jobs(record.id, include_retried=False)
        plan = plan_resume(pipeline, rows, run_dir, rerun=again)
        plan = self._new_attempts(record, pipeline, plan)
        if adopted:  # their rows stay `running` (their job tokens need it) until their result comes
            names = frozenset(r.name for r in adopted)
            plan = dataclasses.replace(plan, pending=plan.pending | names, running=names)
        self._start_resume(runs.get_pipeline(record.id), plan)

    def _adopt(self, record: PipelineRecord, run_dir: Path, by_name: dict[str, Job], row: JobRecord) -> bool:
        """Follow a job attempt still out on a worker (a live lease) instead of failing it."""
        runner = self._leases.get(row.id)
        job = by_name.get(row.name)
        if self.remote is None or runner is None or job is None:
            return False
        request = JobRequest(job, row.id, row.attempt, record.id, run_dir, ())
        self.remote.adopt(request, runner)
        log.info(
            "pipeline %s: job %s (%s) adopted: it runs on runner %s", record.id, row.id, row.name, runner
        )
        return True


def _mirror(home: Path, project: ProjectRecord) -> Path:
    from aicd.triggers.mirror import mirror_path

    return mirror_path(home, project)


def _append_line(path: Path, line: str) -> None:
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


__all__ = ["Dispatcher"]
