"""A worker's routes for the job attempts it runs (docs/workers.md): claim, heartbeat, log, artifacts, result.

A worker claims an attempt with its runner token (`RUNNER-TOKEN`); everything
after that is done with the attempt's own CI_JOB_TOKEN (`JOB-TOKEN`), so a worker
reaches nothing but the job it runs. These routes exist only on a server with a
broker (AICD_BROKER_URL); elsewhere they answer 409. An attempt that ended here
(result in, canceled, lease expired) refuses whatever its worker still sends (409).
"""

from __future__ import annotations

import base64
import binascii
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from aicd.core import remote_jobs
from aicd.core.access import Principal
from aicd.errors import ConfigError, ConflictError, PermissionDeniedError
from aicd.executors.celery_exec import MAX_LOG_CHUNK, RemoteJobs
from aicd.server.deps import IdPath, get_principal, get_state
from aicd.server.state import ServerState
from aicd.store.job_tokens import JobTokenScope
from aicd.store.runners import RunnerStore

router = APIRouter(tags=["workers"])

State = Annotated[ServerState, Depends(get_state)]


def _hub(state: ServerState) -> RemoteJobs:
    hub = state.dispatcher.remote
    if hub is None:
        raise ConflictError("this server sends no job to workers (it has no AICD_BROKER_URL)")
    return hub


def _job_scope(principal: Annotated[Principal, Depends(get_principal)]) -> JobTokenScope:
    """The attempt of the caller's job token (403 for any other token, before the body is read)."""
    if principal.job is None:
        raise PermissionDeniedError("only a running job's CI_JOB_TOKEN (JOB-TOKEN header) may do this")
    return principal.job


JobScope = Annotated[JobTokenScope, Depends(_job_scope)]


class ClaimOut(BaseModel):
    job_id: int
    commit_sha: str | None = Field(
        default=None, description="The pipeline's commit (the worker caches its source)"
    )
    attempt: int
    pipeline_id: int
    project_id: int | None
    token: str = Field(description="The attempt's CI_JOB_TOKEN (also among its variables)")
    job: dict[str, Any] = Field(description="The job, as the pipeline's IR has it")
    variables: list[dict[str, Any]] = Field(description="Its variables, lowest precedence first")
    artifact_sources: list[dict[str, Any]]
    job_env: dict[str, str]
    lease_s: float
    heartbeat_wait_s: float


@router.post(
    "/runners/jobs/{job_id}/claim",
    response_model=ClaimOut,
    summary="A worker takes a job attempt it got from the broker (RUNNER-TOKEN)",
    responses={409: {"description": "Taken, ended or given up before: drop the message"}},
)
async def claim_job(
    job_id: IdPath,
    state: State,
    runner_token: Annotated[str, Header(alias="RUNNER-TOKEN", description="The runner's token")],
) -> ClaimOut:
    hub = _hub(state)
    answer = await remote_jobs.claim(hub, RunnerStore(state.database), runner_token, job_id)
    return ClaimOut(**answer)


class HeartbeatIn(BaseModel):
    wait_s: float = Field(default=0.0, ge=0.0, le=10.0, description="Wait up to this long for a cancel")


class HeartbeatOut(BaseModel):
    status: str = Field(description="running, or canceled: stop the job and report")


@router.post("/job/heartbeat", response_model=HeartbeatOut, summary="A worker's heartbeat for its attempt")
async def heartbeat(state: State, scope: JobScope, body: HeartbeatIn | None = None) -> HeartbeatOut:
    status = await _hub(state).heartbeat(scope.job_id, (body or HeartbeatIn()).wait_s)
    return HeartbeatOut(status=status)


class LogOut(BaseModel):
    size: int = Field(description="The log's size on the server after this chunk")


@router.post("/job/log", response_model=LogOut, summary="Append to the attempt's log (JOB-TOKEN)")
async def append_log(
    request: Request,
    state: State,
    scope: JobScope,
    offset: Annotated[int, Query(ge=0, le=1 << 50, description="Where this chunk starts in the log")] = 0,
) -> LogOut:
    hub = _hub(state)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_LOG_CHUNK:
            raise HTTPException(413, f"a log chunk is at most {MAX_LOG_CHUNK} bytes")
    return LogOut(size=hub.append_log(scope.job_id, offset, bytes(data)))


@router.get(
    "/job/artifacts/{job_id}",
    summary="Artifacts of a job of the same pipeline, as tar.gz (JOB-TOKEN)",
    response_class=FileResponse,
    responses={200: {"content": {"application/gzip": {}}}},
)
async def download_artifacts(job_id: IdPath, state: State, scope: JobScope) -> FileResponse:
    folder = await run_in_threadpool(remote_jobs.artifacts_of, state.runs, scope.pipeline_id, job_id)
    work = Path(tempfile.mkdtemp(prefix="aicd-artifacts-"))
    archive = work / f"artifacts-{job_id}.tar.gz"
    await run_in_threadpool(remote_jobs.pack_dir, {"artifacts": folder}, archive)
    return FileResponse(
        archive,
        media_type="application/gzip",
        headers={"Cache-Control": "no-store"},
        background=BackgroundTask(shutil.rmtree, work, True),
    )


@router.put(
    "/job/artifacts", status_code=204, summary="Upload the attempt's artifacts and reports (JOB-TOKEN)"
)
async def upload_artifacts(request: Request, state: State, scope: JobScope) -> Response:
    attempt = _hub(state).live(scope.job_id)
    limit = remote_jobs.MAX_UPLOAD_BYTES
    work = Path(tempfile.mkdtemp(prefix="aicd-upload-"))
    try:
        archive = work / "upload.tar.gz"
        size = 0
        with archive.open("wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"artifacts and reports: at most {limit} bytes packed")
                out.write(chunk)
        await run_in_threadpool(remote_jobs.store_upload, attempt, archive)
    finally:
        await run_in_threadpool(shutil.rmtree, work, True)
    return Response(status_code=204)


class ResultIn(BaseModel):
    status: str = Field(description="success, failed or canceled")
    exit_code: int | None = None
    failure_reason: str | None = Field(default=None, max_length=64)
    started_at: float | None = None
    finished_at: float | None = None
    dotenv: list[dict[str, Any]] = Field(default_factory=list, max_length=10_000)
    tests: dict[str, int] | None = None
    metrics: dict[str, float] = Field(default_factory=dict, max_length=10_000)
    coverage: float | None = None
    error: str | None = Field(default=None, max_length=10_000)
    log_offset: int = Field(default=0, ge=0, le=1 << 50, description="Where log_tail starts in the log")
    log_tail: str | None = Field(
        default=None,
        max_length=(MAX_LOG_CHUNK + 2) // 3 * 4,
        description="The end of the log (base64, at most 1 MiB), appended as by POST /job/log before the "
        "result counts: one request for both",
    )


@router.post(
    "/job/result", status_code=204, summary="The attempt's result (JOB-TOKEN); refused once given up"
)
async def job_result(body: ResultIn, state: State, scope: JobScope) -> Response:
    hub = _hub(state)
    attempt = hub.live(scope.job_id)
    result = remote_jobs.ResultIn(**body.model_dump(exclude={"log_offset", "log_tail"}))
    outcome = remote_jobs.outcome_of(attempt, result)
    if body.log_tail is not None:
        try:
            tail = base64.b64decode(body.log_tail, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError("log_tail: not base64") from None
        hub.append_log(scope.job_id, body.log_offset, tail)
    hub.finish(scope.job_id, outcome)
    return Response(status_code=204)
