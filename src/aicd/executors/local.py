"""The local executor: one job attempt = one ``bash`` process in its own workspace.

Per job (see the helper modules for each step's rules):

1. workspace: a fresh copy of the executor's source snapshot at
   ``home/builds/<pipeline_id>/<job-slug>/`` (:mod:`.workspace`);
2. variables: the runner's own environment, then ``request.variables``
   resolved (later wins, nested expansion), then ``CI_PROJECT_DIR`` (the
   workspace) and ``CI_BUILDS_DIR``; file-type variables hold the path of a
   file with the value; ``GIT_CEILING_DIRECTORIES`` keeps ``git`` inside the
   workspace and ``GIT_DIR``-like variables of the runner are dropped, so a
   job never touches the user's repository;
3. cache restored, then artifacts of ``request.artifact_sources`` in order;
4. ``before_script`` + ``script`` in one bash process (:mod:`.script`);
5. ``after_script`` in a second process when there is one (not after a user
   cancel), with ``CI_JOB_STATUS``; its failure only gives a warning; 5 min limit;
6. cache saved, artifacts and report files kept, reports and coverage read.

Every line (command, output, aicd's info) goes to ``on_output`` and to the
log file, with masked variables' values replaced by ``[MASKED]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from aicd.errors import AicdError, ExecutorError
from aicd.executors import artifacts as artifacts_mod
from aicd.executors import cache as cache_mod
from aicd.executors import reports as reports_mod
from aicd.executors.base import (
    FailureReason,
    JobHandle,
    JobOutcome,
    JobRequest,
    OutcomeStatus,
    OutputCallback,
    OutputKind,
    TestSummary,
    job_log_path,
)
from aicd.executors.checkout import GitSettings, NoCheckout, PipelineGit, Ref, git_settings
from aicd.executors.script import (
    LineReader,
    ShellProcess,
    bash_command,
    display_command,
    new_token,
    render_script,
)
from aicd.executors.script import die_with_parent as die_with_parent_fn
from aicd.executors.workspace import (
    Snapshot,
    remove_tree,
    slug,
    snapshot_commit,
    snapshot_worktree,
    write_new_file,
)
from aicd.pipeline.ir import Variable
from aicd.pipeline.variables import PieceMasker, expand, masker, resolve
from aicd.vcs import GIT_REPO_ENV, ZERO_SHA

if TYPE_CHECKING:
    from aicd.executors.spawner import Spawner

AFTER_SCRIPT_TIMEOUT_S = 300.0
_SAFE_NAME = re.compile(r"[A-Za-z0-9_]+")

# Set by the executor; a job's own definitions of these are ignored.
_EXECUTOR_KEYS = frozenset({"CI_PROJECT_DIR", "CI_BUILDS_DIR"})
# Credentials of aicd itself that a job must never see (the server's encryption key, its token).
_AICD_CREDENTIALS = ("AICD_SECRET_KEY", "AICD_TOKEN")
_NOT_INHERITED = frozenset((*GIT_REPO_ENV, *_AICD_CREDENTIALS))


@dataclass(frozen=True)
class ShellSpec:
    """One shell of a job (its script or its after_script), before it is spawned."""

    request: JobRequest
    script: Path
    workspace: Path
    env: Mapping[str, str]
    job_vars: Mapping[str, str]
    files_dir: Path | None  # file variables' files, when the job has some


@dataclass(frozen=True)
class Launch:
    """How a shell is spawned: the command line, what the child does before exec, what to undo after."""

    argv: list[str]
    env: Mapping[str, str]
    preexec: Callable[[], None] | None = None
    cleanup: Callable[[], None] | None = None  # called once the process is gone
    pass_fds: tuple[int, ...] = ()  # descriptors the process inherits
    # awaited with the process's id right after the spawn, before the shell may run the job's
    # code (the sandbox's limits and cgroup); if it raises, the process is already killed
    started: Callable[[int], Awaitable[None]] | None = None


class LocalExecutor:
    """Runs jobs as bash processes on this machine (GitLab's shell executor, isolated)."""

    name = "local"

    def __init__(
        self,
        project_dir: Path,
        home: Path,
        *,
        commit: str | None = None,
        die_with_parent: bool = False,
        cache_dir: Path | None = None,
        job_env: Mapping[str, str] | None = None,
        max_log_bytes: int | None = None,
        inherit_aicd_env: bool = True,
        untracked: bool = False,
        source: Callable[[Path], None] | None = None,
    ) -> None:
        self.project_dir = Path(project_dir).resolve()
        # makes a folder holding the jobs' source tree (a worker: the commit's archive from the
        # server's API); None: the tracked files of project_dir, or its commit
        self.source = source
        # False (the server): no AICD_* of this process reaches a job, and no AICD_HOME is set
        self.inherit_aicd_env = inherit_aicd_env
        # set in every job's environment unless the job sets it (the server: AICD_ENV_SCOPE, ...)
        self.job_env = dict(job_env or {})
        self.home = Path(home).resolve()
        # `cache:` folders, one per key (the server gives each project its own)
        self.cache_dir = Path(cache_dir).resolve() if cache_dir is not None else self.home / "cache"
        self.commit = commit
        # the working tree's untracked (not ignored) files too, not only its tracked ones
        self.untracked = untracked
        # a job's log stops growing past this size (None: no limit); the job itself goes on
        self.max_log_bytes = max_log_bytes
        self._snapshot: Snapshot | None = None
        self._snapshot_dir: Path | None = None
        # the jobs' Git checkouts: one private origin per run, one template per kind of checkout
        self._git: PipelineGit | None = None
        self._git_broken: str | None = None  # why there is no checkout (said once per job)
        self._templates: dict[tuple[object, ...], tuple[Snapshot, tuple[str, ...]]] = {}
        # checkouts started before the first job (`prefetch`), by template key
        self._prefetched: dict[tuple[object, ...], asyncio.Future[tuple[Snapshot, tuple[str, ...]]]] = {}
        # AICD_JOB_CHECKOUT=files: jobs get a copy of the files without .git (as before issue 13)
        mode = os.environ.get("AICD_JOB_CHECKOUT", "").strip().lower() or "git"
        if mode not in ("git", "files"):
            raise ExecutorError(f"AICD_JOB_CHECKOUT={mode[:40]!r}: expected git (the default) or files")
        self.git_checkout = mode == "git"
        self._lock = asyncio.Lock()
        self._jobs: set[_LocalJob] = set()
        self._closed = False
        self._bash = shutil.which("bash") or "/bin/bash"
        # the server's choice: job shells get SIGKILL if this process dies (Linux)
        self._preexec = die_with_parent_fn() if die_with_parent else None
        self._base_env: tuple[dict[object, object], bool, dict[str, str]] | None = None
        # the helper that starts shells once several run at once (aicd.executors.spawner)
        self._spawner: Spawner | None = None
        self._spawner_tried = False

    async def start(self, request: JobRequest, on_output: OutputCallback) -> JobHandle:
        if self._closed:
            raise ExecutorError("the local executor is closed; create a new one to run more jobs")
        snapshot, notes = await self._source_for(request)
        job = _LocalJob(self, request, on_output, snapshot)
        job.source_notes = list(notes)
        self._jobs.add(job)
        job.begin()
        return job

    def prefetch(self, variables: Mapping[str, str]) -> None:
        """Start, in a worker thread, the Git checkout that jobs with these variables (the
        pipeline's predefined ones) will start from, while the caller does other work (reads
        the pipeline). The first job that needs it waits for it; its errors are that job's, as
        if the job had started it. Nothing is started for jobs without a checkout."""
        if self._closed or self._templates or self._prefetched:
            return
        planned = self._checkout_plan(variables)
        if planned is None:
            return
        key, sha, ref, settings = planned
        loop = asyncio.get_running_loop()
        self._prefetched[key] = loop.run_in_executor(None, self._make_checkout, sha, ref, settings)

    async def close(self) -> None:
        """Cancel jobs still running, wait for them, remove the source snapshot."""
        self._closed = True
        jobs = list(self._jobs)
        for job in jobs:
            await job.cancel("canceled")
        for job in jobs:
            with contextlib.suppress(Exception):
                await job.wait()
        for pending in self._prefetched.values():  # a thread cannot be stopped: let it finish
            with contextlib.suppress(BaseException):
                await pending
        self._prefetched.clear()
        if self._spawner is not None:
            self._spawner.close()
            self._spawner = None
        if self._snapshot_dir is not None and self._snapshot_dir.exists():
            await asyncio.to_thread(remove_tree, self._snapshot_dir)
        self._snapshot = None
        self._templates.clear()

    # -- what a subclass (the sandbox) changes: the environment and how the shell is spawned --

    def base_env(self) -> dict[str, str]:
        """The environment a job starts from, before its variables: the runner's own.

        Without ``inherit_aicd_env`` (the server) no ``AICD_*`` of this process is in it, so
        ``$AICD_SECRET_KEY`` in a job's variable expands to nothing either.
        """
        # Every read of os.environ decodes each name and value again (~40 per job): kept while
        # the process's environment (its bytes, compared whole) is unchanged.
        raw = getattr(os.environ, "_data", None)
        cached = self._base_env
        if cached is not None and cached[0] == raw and cached[1] == self.inherit_aicd_env:
            return dict(cached[2])
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in _NOT_INHERITED and (self.inherit_aicd_env or not k.startswith("AICD_"))
        }
        self._base_env = (dict(raw), self.inherit_aicd_env, env) if isinstance(raw, dict) else None
        return dict(env)

    def extra_env(self) -> dict[str, str]:
        """Set in the job's environment unless the job defines them."""
        if not self.inherit_aicd_env:
            return dict(self.job_env)
        # `aicd model`/`aicd gate` in a job: this registry
        return {"AICD_HOME": str(self.home), **self.job_env}

    def job_starting(self, request: JobRequest) -> None:
        """Called as a job attempt starts, before its workspace is prepared (must not block)."""

    def notes(self, request: JobRequest, job_vars: Mapping[str, str]) -> list[str]:
        """Lines shown at the start of the job's log (how it is run); once per attempt, before it runs."""
        return []

    def launch(self, spec: ShellSpec) -> Launch:
        """The process of one shell: bash on this machine, in its own session."""
        return Launch(bash_command(self._bash, spec.script), spec.env, self._preexec)

    def spawner(self, make: bool = True) -> Spawner | None:
        """The helper process that starts this executor's shells (made at the first call with
        ``make``), or None (not made, closed, or it cannot be made here: the shells are then
        spawned by this process)."""
        if make and self._spawner is None and not self._spawner_tried and not self._closed:
            self._spawner_tried = True
            from aicd.executors.spawner import Spawner

            self._spawner = Spawner.create()
        return self._spawner

    def workspace_for(self, request: JobRequest) -> Path:
        return self.home / "builds" / str(request.pipeline_id) / slug(request.job.name)

    def git_read_only_paths(self) -> list[tuple[Path, Path]]:
        """What a job's clone reads its objects from (the private origin, the source's objects), as
        (here, where the job sees it)."""
        return self._git.read_only_paths() if self._git is not None else []

    def git_view(self) -> Callable[[Path], Path] | None:
        """Where a job sees a folder of Git objects; None: where it is (no sandbox)."""
        return None

    def _run_dir(self) -> Path:
        if self._snapshot_dir is None:
            self._snapshot_dir = self.home / "snapshots" / f"{os.getpid()}-{os.urandom(4).hex()}"
        return self._snapshot_dir

    async def _source_for(self, request: JobRequest) -> tuple[Snapshot, tuple[str, ...]]:
        """What the job's workspace starts as: a Git checkout at the pipeline's commit (as its
        ``GIT_*`` variables ask), nothing (``GIT_STRATEGY: none``), or, outside a Git repository,
        a copy of the files; and lines for the job's log."""
        raw = {v.key: v.value for v in request.variables}
        settings = git_settings(raw)
        if not settings.checkout:
            skipping = f"Skipping Git repository setup (GIT_STRATEGY: {settings.strategy})"
            return _EMPTY, (*settings.warnings, skipping)
        planned = self._checkout_plan(raw) if self._git_broken is None else None
        if planned is None:
            return await self._get_snapshot(), settings.warnings
        key, sha, ref, settings = planned
        async with self._lock:
            if self._prefetched:  # started before the first job: done before any other checkout
                await asyncio.wait(self._prefetched.values())
            found = self._templates.get(key)
            if found is None:
                prefetched = self._prefetched.pop(key, None)
                try:
                    if prefetched is not None:
                        found = prefetched.result()
                    else:
                        found = await asyncio.to_thread(self._make_checkout, sha, ref, settings)
                except NoCheckout as exc:
                    self._git_broken = str(exc)
                    found = None
                except AicdError:
                    raise
                except OSError as exc:
                    raise ExecutorError(f"cannot check out {sha[:12]} of {self.project_dir}: {exc}") from exc
                if found is not None:
                    self._templates[key] = found
        if found is None:
            return await self._get_snapshot(), settings.warnings
        snapshot, notes = found
        return snapshot, (*settings.warnings, *notes)

    def _checkout_plan(
        self, raw: Mapping[str, str]
    ) -> tuple[tuple[object, ...], str, Ref, GitSettings] | None:
        """(template key, commit, ref, settings) of the Git checkout a job with these variables
        starts from; None when it gets a copy of the files instead (or no checkout at all)."""
        settings = git_settings(raw)
        if not settings.checkout or not self.git_checkout:
            return None
        sha = self.commit_sha(raw)
        if sha is None:
            return None
        ref = Ref(branch=raw.get("CI_COMMIT_BRANCH") or None, tag=raw.get("CI_COMMIT_TAG") or None)
        if ref.branch is None and ref.tag is None and raw.get("CI_COMMIT_REF_NAME"):
            ref = Ref(branch=raw["CI_COMMIT_REF_NAME"])
        return (sha, ref, settings.depth, settings.submodules), sha, ref, settings

    def commit_sha(self, variables: Mapping[str, str]) -> str | None:
        """The commit a job checks out; None when the project is not a Git repository with commits."""
        sha = (variables.get("CI_COMMIT_SHA") or "").strip()
        if self.commit and len(self.commit) == 40:
            sha = sha or self.commit
        if len(sha) != 40 or sha == ZERO_SHA or not _HEX.issuperset(sha):
            return None
        return sha

    def _make_checkout(self, sha: str, ref: Ref, settings: GitSettings) -> tuple[Snapshot, tuple[str, ...]]:
        if self._git is None:
            dirty = None if self.commit else self.project_dir
            self._git = PipelineGit(
                self.project_dir,
                self._run_dir(),
                dirty_from=dirty,
                untracked=self.untracked,
                view=self.git_view(),
            )
            self._git.skip = (self.home,)
        dest, warnings = self._git.checkout(sha, ref, settings)
        return Snapshot.scan(dest), tuple(warnings)

    async def _get_snapshot(self) -> Snapshot:
        async with self._lock:
            if self._snapshot is None:
                dest = self._run_dir() / "files"
                try:
                    self._snapshot = await asyncio.to_thread(self._make_snapshot, dest)
                except AicdError:
                    raise
                except OSError as exc:
                    raise ExecutorError(f"cannot copy the sources of {self.project_dir}: {exc}") from exc
            return self._snapshot

    def _make_snapshot(self, dest: Path) -> Snapshot:
        if dest.exists():
            remove_tree(dest)
        if self.source is not None:
            self.source(dest)  # creates dest
            return Snapshot.scan(dest)
        if self.commit:
            return snapshot_commit(self.project_dir, self.commit, dest)
        return snapshot_worktree(self.project_dir, dest, skip=(self.home,), untracked=self.untracked)

    def _forget(self, job: _LocalJob) -> None:
        self._jobs.discard(job)


# The most files and folders, and bytes, a job's workspace work may touch to be done on the event
# loop instead of in a worker thread (see _LocalJob._quick_prepare).
QUICK_ENTRIES = 64
QUICK_BYTES = 1 << 20


def _small_tree(root: Path, budget: list[int]) -> bool:
    """Whether the tree at ``root`` (absent: empty) fits in what is left of ``budget`` ([entries,
    bytes], decreased as it is walked). Stops at the first entry past the budget."""
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    budget[0] -= 1
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        budget[1] -= entry.stat(follow_symlinks=False).st_size
                    if budget[0] < 0 or budget[1] < 0:
                        return False
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return True


@dataclass
class _Prepared:
    """A job's workspace, environment and script, ready for its shell."""

    workspace: Path
    env: dict[str, str]
    job_vars: dict[str, str]
    script: Path
    labels: list[str | None]
    after_script: Path | None
    after_labels: list[str | None]
    cache_keys: list[str]
    info: list[str] = field(default_factory=list)


@dataclass
class _Finished:
    """What a job's end adds to its outcome: messages, dotenv, tests, metrics."""

    info: list[str] = field(default_factory=list)
    dotenv: tuple[Variable, ...] = ()
    tests: TestSummary | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts_dir: Path | None = None


_HEX = frozenset("0123456789abcdef")
_EMPTY = Snapshot(Path("/nonexistent"), (), (), frozenset())


class _LocalJob:
    source_notes: list[str]

    def __init__(
        self, executor: LocalExecutor, request: JobRequest, on_output: OutputCallback, snapshot: Snapshot
    ) -> None:
        self.ex = executor
        self.req = request
        self.on_output = on_output
        self.snapshot = snapshot
        # absolute: paths handed to the job (file variables) must not depend on its cwd
        self.run_dir = Path(os.path.abspath(request.run_dir))
        self.log_path = request.log_path or job_log_path(self.run_dir, request.job_id)
        self._cancel_reason: str | None = None
        self._user_canceled = False
        self._proc: ShellProcess | None = None
        self._in_after_script = False
        self._task: asyncio.Task[JobOutcome] | None = None
        self._files_dir: Path | None = None  # file variables' files, removed when the job ends
        self._log: IO[str] | None = None
        self._log_bytes = 0
        self._log_full = False
        self._job_vars: Mapping[str, str] = {}
        self._mask: Callable[[str], str] = _identity
        self._pieces: PieceMasker | None = None  # with masked variables: for lines cut in pieces
        self._token = new_token()
        job = request.job
        self._coverage = reports_mod.CoverageScanner(job.coverage) if job.coverage else None

    # -- protocol ---------------------------------------------------------------------------

    def begin(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        self._task.add_done_callback(lambda _t: self.ex._forget(self))

    def wait(self) -> asyncio.Future[JobOutcome]:
        assert self._task is not None
        return asyncio.shield(self._task)  # (a future, not a coroutine: no task to wrap it in)

    async def cancel(self, reason: str = "canceled") -> None:
        if self._task is None or self._task.done():
            return
        if self._cancel_reason is None:
            self._cancel_reason = reason
        if reason != "timeout":
            self._user_canceled = True
        elif self._in_after_script:
            return  # after_script has its own time limit and runs after a timeout
        proc = self._proc
        if proc is not None:
            await proc.kill()

    # -- output -----------------------------------------------------------------------------

    def _emit_piece(self, kind: OutputKind, text: str) -> None:
        """A piece of an over-long line: masked across the cut, its unsafe end held back."""
        if self._pieces is None:
            self._emit(kind, text)
            return
        shown = self._pieces.piece(text)
        if shown:
            self._write(kind, shown)

    def _emit(self, kind: OutputKind, text: str) -> None:
        pieces = self._pieces
        if pieces is not None and pieces.holding:
            if kind == "out":
                self._write(kind, pieces.end(text))
                return
            self._write("out", pieces.end(""))
        self._write(kind, self._mask(text))

    def _write(self, kind: OutputKind, text: str) -> None:
        """Masked text to the log and the listener, until the log reaches its size limit."""
        limit = self.ex.max_log_bytes
        if limit is not None and kind != "info":
            if self._log_full:
                return
            self._log_bytes += len(text.encode("utf-8", "replace")) + 1
            if self._log_bytes > limit:
                self._log_full = True
                kind, text = (
                    "info",
                    (
                        f"WARNING: the job's log exceeded the limit of {limit} bytes; "
                        "the job goes on, but its further output is not kept"
                    ),
                )
        log = self._log
        if log is not None:
            log.write(f"$ {text}\n" if kind == "cmd" else f"{text}\n")
        if kind == "out" and self._coverage is not None:
            self._coverage.feed(text)
        self.on_output(kind, text)

    def _info(self, lines: list[str]) -> None:
        for line in lines:
            self._emit("info", line)
        self._flush_log()

    def _flush_log(self) -> None:
        """What was printed is in the file (kept if the process dies): after each chunk of output."""
        log = self._log
        if log is not None:
            with contextlib.suppress(OSError, ValueError):
                log.flush()

    # -- the job ----------------------------------------------------------------------------

    async def _run(self) -> JobOutcome:
        started = time.time()
        status: OutcomeStatus = "failed"
        reason: FailureReason | None = None
        exit_code: int | None = None
        error: str | None = None
        finished = _Finished()
        try:
            try:
                self._log = open(self.log_path, "w", encoding="utf-8", errors="replace")  # noqa: SIM115
            except FileNotFoundError:  # the run's first job: its logs folder is made
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log = open(self.log_path, "w", encoding="utf-8", errors="replace")  # noqa: SIM115
            self.ex.job_starting(self.req)
            # a small workspace and nothing to restore: quicker here than a worker thread's round trip
            prep = self._prepare() if self._quick_prepare() else await asyncio.to_thread(self._prepare)
            self._info(prep.info)
            if self._cancel_reason is None:
                code = await self._shell(prep.script, prep.env, prep.workspace, prep.labels, None)
                if self._cancel_reason is None:
                    exit_code = code
                    status, reason = ("success", None) if code == 0 else ("failed", "script_failure")
            if self._cancel_reason == "timeout" and not self._user_canceled:
                status, reason = "failed", "job_execution_timeout"
                self._info(["ERROR: Job failed: execution took longer than the job's timeout"])
            elif self._cancel_reason is not None:
                status, reason = "canceled", "canceled"
            if prep.after_script is not None and not self._user_canceled:
                await self._after_script(prep, status)
                if self._user_canceled:
                    status, reason = "canceled", "canceled"
            if status != "canceled":
                finished = await self._finish(prep, status)
                self._info(finished.info)
        except Exception as exc:
            error = self._mask(f"{type(exc).__name__}: {exc}" if not isinstance(exc, AicdError) else str(exc))
            status, reason, exit_code = "failed", "runner_system_failure", None
            with contextlib.suppress(Exception):
                self._emit("info", f"ERROR: aicd could not run the job: {error}")
        finally:
            if self._log is not None:
                with contextlib.suppress(OSError):
                    self._log.close()
            if self._files_dir is not None:
                # file variables are often secrets (keys, kubeconfigs): do not leave them behind
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(remove_tree, self._files_dir)
        coverage = self._coverage.value if self._coverage is not None else None
        return JobOutcome(
            status=status,
            exit_code=exit_code,
            failure_reason=reason,
            started_at=started,
            finished_at=time.time(),
            log_path=self.log_path,
            dotenv=finished.dotenv,
            tests=finished.tests,
            metrics=finished.metrics,
            coverage=coverage,
            artifacts_dir=finished.artifacts_dir,
            error=error,
        )

    async def _shell(
        self,
        script: Path,
        env: dict[str, str],
        cwd: Path,
        labels: list[str | None],
        timeout: float | None,
    ) -> int:
        reader = _FlushingReader(self._emit, self._token, labels, self._flush_log)
        reader.emit_piece = self._emit_piece
        spec = ShellSpec(self.req, script, cwd, env, self._job_vars, self._files_dir)
        launch = self.ex.launch(spec)
        try:
            proc = await ShellProcess.start(
                launch.argv, cwd, launch.env, reader, launch.preexec, launch.pass_fds, self.ex.spawner
            )
        except BaseException:
            if launch.cleanup is not None:
                launch.cleanup()
            raise
        self._proc = proc
        try:
            if launch.started is not None:
                await launch.started(proc.pgid)
            # canceled while it was starting (after_script runs after a timeout)
            if self._user_canceled or (self._cancel_reason is not None and not self._in_after_script):
                await proc.kill()
            return await proc.run(timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                await proc.kill()  # nothing of the job may outlive an error here
            raise
        finally:
            self._proc = None
            if launch.cleanup is not None:
                launch.cleanup()

    async def _after_script(self, prep: _Prepared, status: OutcomeStatus) -> None:
        assert prep.after_script is not None
        env = dict(prep.env)
        env["CI_JOB_STATUS"] = status
        self._emit("info", "Running after_script")
        started = time.monotonic()
        self._in_after_script = True
        try:
            code = await self._shell(
                prep.after_script, env, prep.workspace, prep.after_labels, AFTER_SCRIPT_TIMEOUT_S
            )
        finally:
            self._in_after_script = False
        if self._user_canceled:
            return
        if time.monotonic() - started >= AFTER_SCRIPT_TIMEOUT_S:
            self._emit("info", "WARNING: after_script timed out after 5 minutes")
        elif code != 0:
            self._emit("info", f"WARNING: after_script failed with exit code {code}")

    # -- synchronous steps (run in a worker thread) -------------------------------------------

    def _quick_prepare(self) -> bool:
        """Whether :meth:`_prepare` is a few small writes, made on the event loop rather than in
        a worker thread (whose hand-offs cost more than such work: the loop and the thread trade
        the interpreter lock at every system call): no cache to restore, a snapshot of at most
        ``QUICK_ENTRIES`` files and folders whose contents are in memory, and artifacts to restore
        of at most ``QUICK_ENTRIES`` entries and ``QUICK_BYTES`` in all."""
        snap = self.snapshot
        if self.req.job.cache:
            return False
        if len(snap.entries) + len(snap.dirs) > QUICK_ENTRIES:
            return False
        if not all(e.data is not None or e.link is not None for e in snap.entries):
            return False
        budget = [QUICK_ENTRIES, QUICK_BYTES]
        return all(
            _small_tree(artifacts_mod.artifacts_dir(self.run_dir, s.job_id), budget)
            for s in self.req.artifact_sources
        )

    def _quick_finish(self, prep: _Prepared) -> bool:
        """Whether keeping the job's artifacts is a few small copies (see :meth:`_quick_prepare`):
        no cache, reports, ``untracked`` or ``exclude``; each path a plain name (no glob) inside the
        workspace of a regular file or of nothing, ``QUICK_BYTES`` in all. Only where the work is
        done depends on this: what is kept, and what the log says, are the same."""
        job = self.req.job
        arts = job.artifacts
        if job.cache or arts is None or arts.untracked or arts.exclude:
            return False
        rep = arts.reports
        if rep.dotenv or rep.junit or rep.metrics or rep.other or len(arts.paths) > QUICK_ENTRIES:
            return False
        total = 0
        root = os.path.join(prep.workspace, "")
        for raw in arts.paths:
            path = expand(raw, prep.job_vars)
            if any(c in path for c in "*?[\\"):
                return False
            full = os.path.normpath(os.path.join(root, path))
            if not full.startswith(root):  # outside the workspace: refused (with a warning) in a thread
                return False
            try:
                st = os.lstat(full)
            except (OSError, ValueError):
                continue  # nothing there: a warning, as in a thread
            if not stat.S_ISREG(st.st_mode):
                return False
            total += st.st_size
            if total > QUICK_BYTES:
                return False
        return True

    def _prepare(self) -> _Prepared:
        req = self.req
        job = req.job
        workspace = self.ex.workspace_for(req)
        self.snapshot.materialize(workspace)
        run_dir = self.run_dir
        builds = self.ex.home / "builds"
        own = [
            Variable("CI_PROJECT_DIR", str(workspace), expand=False),
            Variable("CI_BUILDS_DIR", str(builds), expand=False),
        ]
        defined = [v for v in req.variables if v.key not in _EXECUTOR_KEYS]
        variables = [*own, *defined]
        fallback = self.ex.base_env()
        job_vars = resolve(variables, fallback=fallback)
        last: dict[str, Variable] = {v.key: v for v in variables}
        file_keys = [k for k, v in last.items() if v.file]
        secrets_: list[str] = []
        for v in defined:
            if v.masked:
                secrets_.append(v.value)
                secrets_.append(job_vars.get(v.key, ""))
        self._mask = masker(secrets_)
        self._pieces = PieceMasker(secrets_) if any(secrets_) else None
        if file_keys:
            files_dir = run_dir / "files" / str(req.job_id)
            files_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._files_dir = files_dir
            paths: dict[str, str] = {}
            for key in file_keys:
                path = files_dir / (key if _SAFE_NAME.fullmatch(key) else f"var-{len(paths)}")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(job_vars[key])
                paths[key] = str(path)
            # A reference to a file variable gives its path, as in GitLab's shell.
            variables = [
                Variable(v.key, paths[v.key], expand=False) if v.key in paths else v for v in variables
            ]
            job_vars = resolve(variables, fallback=fallback)

        env = dict(fallback)
        env.update(job_vars)
        ceiling = str(workspace.parent)
        inherited = env.get("GIT_CEILING_DIRECTORIES")
        env["GIT_CEILING_DIRECTORIES"] = f"{ceiling}:{inherited}" if inherited else ceiling
        env["CI_JOB_STATUS"] = "running"
        for key, value in self.ex.extra_env().items():
            env.setdefault(key, value)
        self._job_vars = job_vars

        scripts_dir = f"{run_dir}/scripts"
        commands = [*job.before_script, *job.script]
        labels = [display_command(c) for c in commands]
        script = Path(f"{scripts_dir}/{req.job_id}.sh")
        write_new_file(str(script), render_script(commands, self._token, shown=labels))
        after: Path | None = None
        after_labels: list[str | None] = []
        if job.after_script:
            after_labels = [display_command(c) for c in job.after_script]
            after = Path(f"{scripts_dir}/{req.job_id}-after.sh")
            write_new_file(str(after), render_script(job.after_script, self._token, shown=after_labels))

        info: list[str] = [*self.source_notes, *self.ex.notes(req, job_vars)]

        def expander(text: str) -> str:
            return expand(text, job_vars)

        keys: list[str] = []
        for entry in job.cache:
            key = cache_mod.cache_key(entry, workspace, expander)
            keys.append(key)
            info += cache_mod.restore_cache(entry, key, self.ex.cache_dir, workspace, expander, env)
        if req.artifact_sources:
            sources = [
                (s.job_name, artifacts_mod.artifacts_dir(run_dir, s.job_id)) for s in req.artifact_sources
            ]
            info += artifacts_mod.restore_artifacts(sources, workspace)
        if self._coverage is not None and self._coverage.error:
            info.append(self._coverage.error)
        return _Prepared(workspace, env, job_vars, script, labels, after, after_labels, keys, info)

    async def _finish(self, prep: _Prepared, status: OutcomeStatus) -> _Finished:
        job = self.req.job
        if not job.cache and job.artifacts is None:
            return _Finished()
        if self._quick_finish(prep):
            return self._finish_sync(prep, status)
        return await asyncio.to_thread(self._finish_sync, prep, status)

    def _finish_sync(self, prep: _Prepared, status: OutcomeStatus) -> _Finished:
        req = self.req
        job = req.job
        out = _Finished()
        workspace = prep.workspace
        tracked = self.snapshot.file_set

        def expander(text: str) -> str:
            return expand(text, prep.job_vars)

        for entry, key in zip(job.cache, prep.cache_keys, strict=True):
            if entry.policy != "pull" and artifacts_mod.wanted(entry.when, status):
                out.info += cache_mod.save_cache(entry, key, self.ex.cache_dir, workspace, expander, tracked)
        arts = job.artifacts
        if arts is None:
            return out
        if artifacts_mod.wanted(arts.when, status):
            dest = artifacts_mod.artifacts_dir(self.run_dir, req.job_id)
            count, info = artifacts_mod.save_artifacts(arts, workspace, dest, expander, tracked)
            out.info += info
            if count or dest.is_dir():
                out.artifacts_dir = dest
        # Report files are collected whatever the job's result, as GitLab does.
        rep = arts.reports
        if rep.dotenv or rep.junit or rep.metrics or rep.other:
            files, info = artifacts_mod.save_reports(
                rep, workspace, artifacts_mod.reports_dir(self.run_dir, req.job_id), expander
            )
            out.info += info
            # A report is read by aicd, outside any sandbox: a symbolic link is not followed (it
            # could name the server's secret key, and a dotenv report passes values on to jobs).
            dotenv: list[Variable] = []
            for name, path in files.of("dotenv"):
                data = _read_report(path, name, out.info)
                if data is not None:
                    found, warnings = reports_mod.parse_dotenv(_text(data), name)
                    dotenv += found
                    out.info += warnings
            out.dotenv = tuple(dotenv)
            if self._mask is not _identity:  # the kept JUnit files are what the test report shows
                for _name, path in files.of("junit"):
                    if not path.is_symlink():
                        reports_mod.mask_junit_file(path, self._mask)
            junit = [(n, _read_report(p, n, out.info)) for n, p in files.of("junit")]
            readable = [(n, data) for n, data in junit if data is not None]
            if readable:
                out.tests, warnings = reports_mod.parse_junit(readable)
                out.info += warnings
            for name, path in files.of("metrics"):
                data = _read_report(path, name, out.info)
                if data is not None:
                    metrics, warnings = reports_mod.parse_metrics(_text(data), name)
                    out.metrics.update({self._mask(key): value for key, value in metrics.items()})
                    out.info += warnings
        return out


class _FlushingReader(LineReader):
    """Flushes the job's log after each chunk of output it turns into lines."""

    def __init__(
        self,
        emit: Callable[[OutputKind, str], None],
        token: str,
        labels: list[str | None],
        flush: Callable[[], None],
    ) -> None:
        super().__init__(emit, token, labels)
        self._flush = flush

    def feed(self, data: bytes) -> None:
        super().feed(data)
        self._flush()

    def close(self) -> None:
        super().close()
        self._flush()


def _read_report(path: Path, name: str, info: list[str]) -> bytes | None:
    """The bytes of a report file; None (and a warning) for a symbolic link, which is not followed."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        if path.is_symlink():
            info.append(f"WARNING: {name}: a symbolic link; a report must be a file; ignored")
        else:
            info.append(f"WARNING: {name}: cannot read the report ({exc.strerror}); ignored")
        return None
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _identity(text: str) -> str:
    return text
