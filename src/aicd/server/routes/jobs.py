"""Jobs of a project: show, log (whole, or live as Server-Sent Events), artifacts (zip or one
file) for viewers; cancel, retry and play for developers."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Header
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse
from starlette.background import BackgroundTask

from aicd.core.access import Role
from aicd.errors import NotFoundError
from aicd.executors.base import job_log_path
from aicd.server.deps import IdPath, ProjectAccess, get_state, project_access
from aicd.server.routes.pipelines import pipeline_of
from aicd.server.routes.run_models import JobOut
from aicd.server.state import ServerState
from aicd.store.projects_repo import ProjectRecord
from aicd.store.records import JobRecord, PipelineRecord

router = APIRouter(tags=["jobs"])

State = Annotated[ServerState, Depends(get_state)]
Viewer = Annotated[ProjectAccess, Depends(project_access(Role.VIEWER))]
Developer = Annotated[ProjectAccess, Depends(project_access(Role.DEVELOPER))]

FINAL = frozenset({"success", "failed", "canceled", "skipped"})
POLL_S = 0.2  # how often a live log looks for new lines
KEEPALIVE_S = 15.0  # an SSE comment this often keeps proxies from closing the stream
CHUNK = 64 * 1024


def job_of(state: ServerState, project: ProjectRecord, job_id: int) -> tuple[JobRecord, PipelineRecord]:
    """The job and its pipeline, if it belongs to the project (NotFoundError otherwise)."""
    try:
        job = state.runs.get_job(job_id)
    except NotFoundError:
        raise NotFoundError(f"project {project.name!r} has no job {job_id}") from None
    try:
        return job, pipeline_of(state, project, job.pipeline_id)
    except NotFoundError:
        raise NotFoundError(f"project {project.name!r} has no job {job_id}") from None


def _log_file(job: JobRecord, pipeline: PipelineRecord) -> Path:
    return Path(job.log_path) if job.log_path else job_log_path(Path(pipeline.run_dir), job.id)


def _audit(state: ServerState, access: ProjectAccess, action: str, job: JobRecord) -> None:
    state.accounts.audit(
        access.principal.name,
        action,
        project_id=access.project.id,
        target=f"{job.name} ({job.id})",
        details={"pipeline_id": job.pipeline_id, "job_id": job.id},
    )


@router.get("/projects/{project}/jobs/{job_id}", response_model=JobOut, summary="One job (viewer)")
def get_job(job_id: IdPath, access: Viewer, state: State) -> JobOut:
    return JobOut.of(job_of(state, access.project, job_id)[0], state.dispatcher.remote)


@router.get(
    "/projects/{project}/jobs/{job_id}/log",
    response_class=PlainTextResponse,
    summary="The job's log as it is now (viewer); masked values appear as [MASKED]",
    responses={200: {"content": {"text/plain": {}}}},
)
def get_log(job_id: IdPath, access: Viewer, state: State) -> PlainTextResponse:
    job, pipeline = job_of(state, access.project, job_id)
    path = _log_file(job, pipeline)
    text = path.read_bytes().decode("utf-8", errors="replace") if path.is_file() else ""
    return PlainTextResponse(text)


@router.get(
    "/projects/{project}/jobs/{job_id}/log/stream",
    response_class=StreamingResponse,
    summary="The job's log live, as Server-Sent Events (viewer): `log` events, then `end`",
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_log(
    job_id: IdPath,
    access: Viewer,
    state: State,
    last_event_id: Annotated[str | None, Header(description="Resume after this event id")] = None,
) -> StreamingResponse:
    job, pipeline = await run_in_threadpool(job_of, state, access.project, job_id)
    offset = (
        int(last_event_id) if last_event_id and last_event_id.isascii() and last_event_id.isdigit() else 0
    )
    return StreamingResponse(
        _events(state, job, pipeline, offset),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    state: ServerState, job: JobRecord, pipeline: PipelineRecord, offset: int
) -> AsyncIterator[str]:
    """One `log` event per line (its id: the byte offset after it), then `end` with the status.

    Waits for a job that has not started while its pipeline runs; a job that
    will not run (a manual or blocked one of a pipeline not running) ends at once.
    """
    pending = b""
    quiet = 0.0
    yield ": aicd log stream\n\n"
    while True:
        job = await run_in_threadpool(state.runs.get_job, job.id)
        finished = job.status in FINAL or not state.dispatcher.is_active(job.pipeline_id)
        chunk = await asyncio.to_thread(_read_from, _log_file(job, pipeline), offset + len(pending))
        if chunk:
            quiet = 0.0
            data = pending + chunk
            *lines, pending = data.split(b"\n")
            for line in lines:
                offset += len(line) + 1
                yield _event("log", line.decode("utf-8", errors="replace"), offset)
        if finished:
            if pending:
                offset += len(pending)
                yield _event("log", pending.decode("utf-8", errors="replace"), offset)
            yield f"event: end\ndata: {json.dumps({'status': job.status, 'exit_code': job.exit_code})}\n\n"
            return
        await asyncio.sleep(POLL_S)
        quiet += POLL_S
        if quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ": keepalive\n\n"


def _event(kind: str, text: str, event_id: int) -> str:
    text = text.replace("\r", "")
    return f"event: {kind}\nid: {event_id}\ndata: {text}\n\n"


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(4 * 1024 * 1024)
    except FileNotFoundError:
        return b""


# -- artifacts ------------------------------------------------------------------------------------


def _artifacts_root(job: JobRecord) -> Path:
    if not job.artifacts_dir or not Path(job.artifacts_dir).is_dir():
        raise NotFoundError(f'job {job.id} ("{job.name}") has no artifacts')
    return Path(job.artifacts_dir).resolve()


def _zip(root: Path) -> Path:
    handle, name = tempfile.mkstemp(prefix="aicd-artifacts-", suffix=".zip")
    os.close(handle)
    with zipfile.ZipFile(name, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            real = path.resolve()
            if not real.is_relative_to(root) or not real.is_file():
                continue  # a link out of the artifacts is not followed
            archive.write(real, path.relative_to(root).as_posix())
    return Path(name)


@router.get(
    "/projects/{project}/jobs/{job_id}/artifacts",
    response_class=FileResponse,
    summary="The job's artifacts as one zip file (viewer)",
    responses={200: {"content": {"application/zip": {}}}},
)
async def download_artifacts(job_id: IdPath, access: Viewer, state: State) -> FileResponse:
    job, _ = await run_in_threadpool(job_of, state, access.project, job_id)
    root = _artifacts_root(job)
    archive = await asyncio.to_thread(_zip, root)
    return FileResponse(
        archive,
        media_type="application/zip",
        filename=f"artifacts-{job.name}-{job.id}.zip".replace("/", "_").replace(" ", "_"),
        background=BackgroundTask(archive.unlink, missing_ok=True),
    )


@router.get(
    "/projects/{project}/jobs/{job_id}/artifacts/{path:path}",
    response_class=FileResponse,
    summary="One file of the job's artifacts (viewer)",
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_artifact_file(job_id: IdPath, path: str, access: Viewer, state: State) -> FileResponse:
    job, _ = job_of(state, access.project, job_id)
    root = _artifacts_root(job)
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise NotFoundError(f'job {job.id} ("{job.name}") has no artifact file {path!r}')
    return FileResponse(target, media_type="application/octet-stream", filename=target.name)


# -- actions --------------------------------------------------------------------------------------


@router.post(
    "/projects/{project}/jobs/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a pending or running job (developer)",
)
async def cancel_job(job_id: IdPath, access: Developer, state: State) -> JobOut:
    await run_in_threadpool(job_of, state, access.project, job_id)
    job = await state.dispatcher.cancel_job(job_id)
    await run_in_threadpool(_audit, state, access, "job.cancel", job)
    return JobOut.of(job)


@router.post(
    "/projects/{project}/jobs/{job_id}/retry",
    response_model=JobOut,
    summary="Run a finished job again as a new attempt (developer); returns the new attempt",
)
async def retry_job(job_id: IdPath, access: Developer, state: State) -> JobOut:
    old, _ = await run_in_threadpool(job_of, state, access.project, job_id)
    job = await state.dispatcher.retry_job(job_id)
    await run_in_threadpool(_audit, state, access, "job.retry", old)
    return JobOut.of(job)


@router.post(
    "/projects/{project}/jobs/{job_id}/play",
    response_model=JobOut,
    summary="Run a manual job (developer)",
)
async def play_job(job_id: IdPath, access: Developer, state: State) -> JobOut:
    await run_in_threadpool(job_of, state, access.project, job_id)
    job = await state.dispatcher.play_job(job_id)
    await run_in_threadpool(_audit, state, access, "job.play", job)
    return JobOut.of(job)
