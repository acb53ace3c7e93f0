"""One job attempt on a worker: claim, fetch, run, stream, upload, report.

The worker shares nothing with the server but its API: the job's source (the
commit's tree) and the artifacts of the jobs it needs come through it with the
attempt's CI_JOB_TOKEN, and so go back its log (appended while it runs), its
artifacts and reports, and its result. The job runs with the same executor as a
server's local jobs: sandboxed with bubblewrap (unless the worker was started with
--unsafe-no-sandbox), its shell killed if the worker dies. A heartbeat (a long
poll) keeps the attempt's lease; when it answers `canceled` the job's process
group is killed at once; when the server says the attempt was given up, the job
is stopped and nothing more is sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicd.errors import AicdError
from aicd.executors import artifacts as artifacts_mod
from aicd.executors.base import ArtifactSource, JobHandle, JobOutcome, JobRequest, job_log_path
from aicd.executors.local import LocalExecutor
from aicd.executors.sandbox import Probe, SandboxExecutor, SandboxLimits
from aicd.executors.workspace import remove_tree
from aicd.pipeline import codec
from aicd.pipeline.ir import Job, Variable
from aicd.workers.api import Gone, JobApi, WorkerApi

log = logging.getLogger("aicd.worker")

LOG_PUMP_S = 0.2
HEARTBEAT_END_S = 1.0  # after the result, how long the heartbeat's long poll may take to answer
LOG_CHUNK = 512 * 1024
MAX_SOURCE_BYTES = 8 << 30
RETRY_S = 1.0
SOURCE_CACHE = 20  # commits whose source archive a worker keeps
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class WorkerConfig:
    home: Path  # the worker's own folder: builds, runs, cache
    server: str  # the server's URL, as jobs reach it (AICD_SERVER in a job)
    sandbox: Probe | None  # None: --unsafe-no-sandbox
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    network: bool = True


TIMINGS = os.environ.get("AICD_WORKER_TIMINGS", "") == "1"  # log each attempt's phases (benchmarks)


class Marks:
    """Where an attempt's time went: named phases in ms, logged with AICD_WORKER_TIMINGS=1."""

    def __init__(self) -> None:
        self.entered = time.time()
        self.last = time.monotonic()
        self.phases: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        now = time.monotonic()
        self.phases[phase] = self.phases.get(phase, 0.0) + (now - self.last) * 1000
        self.last = now

    def line(self, job_id: int) -> str:
        parts = " ".join(f"{k}={v:.1f}" for k, v in self.phases.items())
        return f"timings job={job_id} entered={self.entered:.6f} {parts}"


class Executors:
    """The worker process's executors, kept for the next attempts of the same commit, project and
    job environment: the commit's source is unpacked once, not once per attempt. At most KEEP idle
    ones are kept (the least recently used idle one is closed first)."""

    KEEP = 4

    def __init__(self) -> None:
        self._found: dict[tuple[str, ...], LocalExecutor] = {}  # oldest first
        self._users: dict[tuple[str, ...], int] = {}

    def take(self, config: WorkerConfig, spec: dict[str, Any], source: Path) -> tuple[Any, LocalExecutor]:
        sha = str(spec.get("commit_sha") or "")
        if not _SHA.fullmatch(sha):
            return None, _executor(config, spec, source)  # a source of its own: not shared
        env = sorted((str(k), str(v)) for k, v in dict(spec["job_env"]).items())
        key = (sha, str(spec.get("project_id")), repr(env))
        executor = self._found.pop(key, None) or _executor(config, spec, source)
        self._found[key] = executor  # now the most recently used
        self._users[key] = self._users.get(key, 0) + 1
        return key, executor

    async def give_back(self, key: Any, executor: LocalExecutor) -> None:
        if key is None:
            await executor.close()
            return
        self._users[key] -= 1
        if not self._users[key]:
            del self._users[key]
        idle = [k for k in self._found if k not in self._users]
        for old in idle[: max(0, len(idle) - self.KEEP)]:
            await self._found.pop(old).close()

    async def close(self) -> None:
        found, self._found = self._found, {}
        self._users.clear()
        for executor in found.values():
            with contextlib.suppress(Exception):
                await executor.close()


async def run_attempt(
    api: WorkerApi,
    config: WorkerConfig,
    job_id: int,
    marks: Marks | None = None,
    executors: Executors | None = None,
) -> str:
    """Claim and run attempt `job_id`; a line saying how it ended. Drop/Requeue from the claim.

    `executors`: the worker process's (kept between attempts); None: one for this attempt only."""
    marks = marks or Marks()
    spec = await api.claim(job_id)
    marks.mark("claim")
    job_api = JobApi(api, str(spec["token"]))
    work = config.home / "runs" / f"{job_id}-{secrets.token_hex(4)}"
    own = executors is None
    pool = executors or Executors()
    try:
        return await _run(job_api, config, spec, work, marks, pool)
    finally:
        if own:
            await pool.close()
        await asyncio.to_thread(remove_tree, work)
        builds = config.home / "builds" / str(spec["pipeline_id"])
        with contextlib.suppress(OSError):
            await asyncio.to_thread(_remove_if_empty_tree, builds)
        marks.mark("cleanup")
        if TIMINGS:
            log.info("%s", marks.line(job_id))


def _remove_if_empty_tree(path: Path) -> None:
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()


def _executor(config: WorkerConfig, spec: dict[str, Any], source: Path) -> LocalExecutor:
    from aicd.deploy.archive import extract_release

    def fill(dest: Path) -> None:
        extract_release(source, dest, max_bytes=MAX_SOURCE_BYTES)

    job_env = {"AICD_SERVER": config.server, **{str(k): str(v) for k, v in dict(spec["job_env"]).items()}}
    project = spec.get("project_id")
    cache_dir = config.home / "cache" / (str(project) if project is not None else "default")
    if config.sandbox is None:
        return LocalExecutor(
            source.parent,
            config.home,
            die_with_parent=True,
            cache_dir=cache_dir,
            inherit_aicd_env=False,
            job_env=job_env,
            source=fill,
        )
    return SandboxExecutor(
        source.parent,
        config.home,
        die_with_parent=True,
        cache_dir=cache_dir,
        job_env=job_env,
        limits=config.limits,
        network=config.network,
        bwrap=config.sandbox.bwrap,
        source=fill,
    )


async def _run(
    job_api: JobApi, config: WorkerConfig, spec: dict[str, Any], work: Path, marks: Marks, pool: Executors
) -> str:
    job_id = int(spec["job_id"])
    work.mkdir(parents=True)
    log_path = job_log_path(work, job_id)
    started = time.time()
    executor: LocalExecutor | None = None
    key: Any = None
    try:
        job = codec.from_data(Job, spec["job"])
        variables = codec.from_data(tuple[Variable, ...], spec["variables"])
        marks.mark("decode")
        source = await _source(job_api, config, spec, work)
        marks.mark("source")
        sources = []
        for item in spec["artifact_sources"]:
            dep = int(item["job_id"])
            sources.append(ArtifactSource(str(item["job_name"]), dep))
            await _fetch_artifacts(job_api, work, dep)
        request = JobRequest(
            job=job,
            job_id=job_id,
            attempt=int(spec["attempt"]),
            pipeline_id=int(spec["pipeline_id"]),
            run_dir=work,
            variables=variables,
            artifact_sources=tuple(sources),
            log_path=log_path,
        )
        marks.mark("artifacts_in")
        key, executor = pool.take(config, spec, source)
        handle = await executor.start(request, lambda _kind, _text: None)
        marks.mark("executor_start")
    except Gone as exc:
        if executor is not None:
            await pool.give_back(key, executor)
        return f"job {job_id}: given up by the server before it ran ({exc})"
    except Exception as exc:
        message = str(exc) if isinstance(exc, AicdError) else f"{type(exc).__name__}: {exc}"
        log.warning("job %s: cannot run it: %s", job_id, message)
        with contextlib.suppress(Exception):
            await job_api.log(0, f"ERROR: the worker could not run the job: {message}\n".encode())
        with contextlib.suppress(Exception):
            await job_api.result(_failure(started, message))
        if executor is not None:
            await pool.give_back(key, executor)
        return f"job {job_id}: failed before it ran: {message}"
    try:
        return await _follow(job_api, spec, handle, log_path, work, marks)
    finally:
        await pool.give_back(key, executor)
        marks.mark("executor_close")


async def _source(job_api: JobApi, config: WorkerConfig, spec: dict[str, Any], work: Path) -> Path:
    """The commit's tree as tar.gz: from the worker's cache of recent commits, else from the server."""
    sha = str(spec.get("commit_sha") or "")
    if not _SHA.fullmatch(sha):
        source = work / "source.tar.gz"
        await job_api.download("/job/source", source, "the job's source")
        return source
    cache = config.home / "sources"
    cached = cache / f"{sha}.tar.gz"
    if cached.is_file():
        with contextlib.suppress(OSError):
            os.utime(cached)
        return cached
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f".{sha}-{secrets.token_hex(4)}.part"
    try:
        await job_api.download("/job/source", partial, "the job's source")
        os.replace(partial, cached)  # atomic: a job running at once with the same commit sees all or nothing
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    await asyncio.to_thread(_trim_sources, cache)
    return cached


def _trim_sources(cache: Path) -> None:
    """Keep the SOURCE_CACHE newest archives."""
    found = sorted(cache.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in found[SOURCE_CACHE:]:
        with contextlib.suppress(OSError):
            old.unlink()


async def _fetch_artifacts(job_api: JobApi, work: Path, dep: int) -> None:
    from aicd.deploy.archive import extract_release

    archive = work / f"artifacts-{dep}.tar.gz"
    try:
        await job_api.download(f"/job/artifacts/{dep}", archive, f"artifacts of job {dep}")
    except Gone:
        raise
    except AicdError as exc:
        if "has no artifacts" in str(exc):
            return
        raise
    scratch = work / f"artifacts-{dep}"
    await asyncio.to_thread(extract_release, archive, scratch, max_bytes=MAX_SOURCE_BYTES)
    dest = artifacts_mod.artifacts_dir(work, dep)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if (scratch / "artifacts").is_dir():
        os.replace(scratch / "artifacts", dest)
    shutil.rmtree(scratch, ignore_errors=True)
    archive.unlink()


def _failure(started: float, message: str) -> dict[str, Any]:
    return {
        "status": "failed",
        "exit_code": None,
        "failure_reason": "runner_system_failure",
        "started_at": started,
        "finished_at": time.time(),
        "error": message[:10_000],
    }


class _LogPump:
    """Sends the log file's new bytes to the server, from where the server's copy ends."""

    def __init__(self, job_api: JobApi, path: Path) -> None:
        self.job_api = job_api
        self.path = path
        self.offset = 0

    async def once(self) -> None:
        while True:
            data = await asyncio.to_thread(self._read)
            if not data:
                return
            self.offset = await self.job_api.log(self.offset, data)
            if len(data) < LOG_CHUNK:
                return

    async def tail(self) -> bytes | None:
        """What is left of the log (the job ended) if it fits in one chunk, else None."""
        data = await asyncio.to_thread(self._read, LOG_CHUNK + 1)
        return data if len(data) <= LOG_CHUNK else None

    def _read(self, size: int = LOG_CHUNK) -> bytes:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                return handle.read(size)
        except FileNotFoundError:
            return b""


async def _follow(
    job_api: JobApi, spec: dict[str, Any], handle: JobHandle, log_path: Path, work: Path, marks: Marks
) -> str:
    job_id = int(spec["job_id"])
    wait_s = float(spec.get("heartbeat_wait_s", 5.0))
    gone = asyncio.Event()
    done = asyncio.Event()
    reported = asyncio.Event()  # the server took the result (and so answers the long poll at once)
    pump = _LogPump(job_api, log_path)

    async def heartbeats() -> None:
        canceled = False
        while not done.is_set():
            try:
                status = await job_api.heartbeat(0.0 if canceled else wait_s)
            except Gone as exc:
                if reported.is_set():
                    return  # the long poll's answer to the attempt's end
                log.info("job %s: %s", job_id, exc)
                gone.set()
                await handle.cancel("canceled")
                return
            except AicdError as exc:
                log.warning("job %s: heartbeat failed: %s", job_id, exc)
                await asyncio.sleep(RETRY_S)
                continue
            if status == "canceled" and not canceled:
                canceled = True
                await handle.cancel("canceled")
            if canceled:
                await asyncio.sleep(RETRY_S)

    async def logs() -> None:
        while not done.is_set():
            try:
                await pump.once()
            except Gone as exc:
                log.info("job %s: %s", job_id, exc)
                gone.set()
                await handle.cancel("canceled")
                return
            except AicdError as exc:
                log.warning("job %s: log upload failed: %s", job_id, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), LOG_PUMP_S)

    beating = asyncio.ensure_future(heartbeats())
    pumping = asyncio.ensure_future(logs())
    try:
        outcome = await handle.wait()
        marks.mark("job")
    finally:
        done.set()
        await asyncio.gather(pumping, return_exceptions=True)
        marks.mark("pump_stop")
    try:
        if gone.is_set():
            return f"job {job_id}: given up by the server; stopped"
        # the server may be restarting: each step is tried again until the attempt's lease would
        # have run out anyway
        deadline = time.monotonic() + float(spec.get("lease_s", 30.0)) * 2
        tail = await pump.tail()  # the end of the log goes with the result, in one request
        if tail is None:  # more than a chunk left: sent before the result
            await _again(pump.once, deadline)
        marks.mark("log_end")
        await _again(lambda: _upload(job_api, work, job_id), deadline)
        marks.mark("upload")
        body = _result(outcome)
        if tail:
            body.update(log_offset=pump.offset, log_tail=base64.b64encode(tail).decode("ascii"))
        await _again(lambda: job_api.result(body), deadline)
        reported.set()
        marks.mark("result")
        return f"job {job_id}: {outcome.status}"
    except Gone as exc:
        return f"job {job_id}: its result was refused: {exc}"
    except AicdError as exc:
        return f"job {job_id}: {outcome.status}, but the server could not be told: {exc}"
    finally:
        if reported.is_set():
            # its answer comes at once: a request canceled in flight would close its kept-alive
            # connection, and the next attempt would open a new one
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(beating), HEARTBEAT_END_S)
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await beating


async def _again(step: Callable[[], Awaitable[None]], deadline: float) -> None:
    """Run `step`; on an error other than Gone, try again every RETRY_S until `deadline`."""
    while True:
        try:
            await step()
            return
        except Gone:
            raise
        except AicdError as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("%s; trying again", exc)
            await asyncio.sleep(RETRY_S)


async def _upload(job_api: JobApi, work: Path, job_id: int) -> None:
    from aicd.core.remote_jobs import pack_dir

    folders = {
        "artifacts": artifacts_mod.artifacts_dir(work, job_id),
        "reports": artifacts_mod.reports_dir(work, job_id),
    }
    if not any(f.is_dir() for f in folders.values()):
        return
    archive = work / "upload.tar.gz"
    await asyncio.to_thread(pack_dir, folders, archive)
    await job_api.upload(archive)


def _result(outcome: JobOutcome) -> dict[str, Any]:
    tests = outcome.tests
    return {
        "status": outcome.status,
        "exit_code": outcome.exit_code,
        "failure_reason": outcome.failure_reason,
        "started_at": outcome.started_at,
        "finished_at": outcome.finished_at,
        "dotenv": [{"key": v.key, "value": v.value, "expand": v.expand} for v in outcome.dotenv],
        "tests": None
        if tests is None
        else {
            "total": tests.total,
            "passed": tests.passed,
            "failed": tests.failed,
            "errors": tests.errors,
            "skipped": tests.skipped,
        },
        "metrics": dict(outcome.metrics),
        "coverage": outcome.coverage,
        "error": outcome.error,
    }
