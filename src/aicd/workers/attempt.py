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


async def run_attempt(api: WorkerApi, config: WorkerConfig, job_id: int) -> str:
    """Claim and run attempt `job_id`; a line saying how it ended. Drop/Requeue from the claim."""
    spec = await api.claim(job_id)
    job_api = JobApi(api, str(spec["token"]))
    work = config.home / "runs" / f"{job_id}-{secrets.token_hex(4)}"
    try:
        return await _run(job_api, config, spec, work)
    finally:
        await job_api.close()
        await asyncio.to_thread(remove_tree, work)
        builds = config.home / "builds" / str(spec["pipeline_id"])
        with contextlib.suppress(OSError):
            await asyncio.to_thread(_remove_if_empty_tree, builds)


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


async def _run(job_api: JobApi, config: WorkerConfig, spec: dict[str, Any], work: Path) -> str:
    job_id = int(spec["job_id"])
    work.mkdir(parents=True)
    log_path = job_log_path(work, job_id)
    started = time.time()
    executor: LocalExecutor | None = None
    try:
        job = codec.from_data(Job, spec["job"])
        variables = codec.from_data(tuple[Variable, ...], spec["variables"])
        source = await _source(job_api, config, spec, work)
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
        executor = _executor(config, spec, source)
        handle = await executor.start(request, lambda _kind, _text: None)
    except Gone as exc:
        return f"job {job_id}: given up by the server before it ran ({exc})"
    except Exception as exc:
        message = str(exc) if isinstance(exc, AicdError) else f"{type(exc).__name__}: {exc}"
        log.warning("job %s: cannot run it: %s", job_id, message)
        with contextlib.suppress(Exception):
            await job_api.log(0, f"ERROR: the worker could not run the job: {message}\n".encode())
        with contextlib.suppress(Exception):
            await job_api.result(_failure(started, message))
        if executor is not None:
            await executor.close()
        return f"job {job_id}: failed before it ran: {message}"
    try:
        return await _follow(job_api, spec, handle, log_path, work)
    finally:
        await executor.close()


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

    def _read(self) -> bytes:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                return handle.read(LOG_CHUNK)
        except FileNotFoundError:
            return b""


async def _follow(
    job_api: JobApi, spec: dict[str, Any], handle: JobHandle, log_path: Path, work: Path
) -> str:
    job_id = int(spec["job_id"])
    wait_s = float(spec.get("heartbeat_wait_s", 5.0))
    gone = asyncio.Event()
    done = asyncio.Event()
    pump = _LogPump(job_api, log_path)

    async def heartbeats() -> None:
        canceled = False
        while not done.is_set():
            try:
                status = await job_api.heartbeat(0.0 if canceled else wait_s)
            except Gone:
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
            except Gone:
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
    finally:
        done.set()
        await asyncio.gather(pumping, return_exceptions=True)
    try:
        if gone.is_set():
            return f"job {job_id}: given up by the server; stopped"
        # the server may be restarting: each step is tried again until the attempt's lease would
        # have run out anyway
        deadline = time.monotonic() + float(spec.get("lease_s", 30.0)) * 2
        await _again(pump.once, deadline)  # the end of the log, before the result
        await _again(lambda: _upload(job_api, work, job_id), deadline)
        await _again(lambda: job_api.result(_result(outcome)), deadline)
        return f"job {job_id}: {outcome.status}"
    except Gone as exc:
        return f"job {job_id}: its result was refused: {exc}"
    except AicdError as exc:
        return f"job {job_id}: {outcome.status}, but the server could not be told: {exc}"
    finally:
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
