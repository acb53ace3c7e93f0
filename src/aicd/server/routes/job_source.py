"""A running job's own source: the tree of its pipeline's commit, for a worker on another host.

Only a live CI_JOB_TOKEN (the `JOB-TOKEN` header) gets it, and only its own
pipeline's commit: users' tokens get 403, so nothing but the attempt that runs
reads the tree through this route.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from aicd.core.access import Principal
from aicd.errors import PermissionDeniedError
from aicd.server.deps import get_principal, get_state
from aicd.server.state import ServerState
from aicd.triggers.archive import commit_archive
from aicd.triggers.mirror import mirror_path

router = APIRouter(tags=["jobs"])


@router.get(
    "/job/source",
    summary="The running job's source: its commit's tree as tar.gz (JOB-TOKEN only)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/gzip": {}}}},
)
async def job_source(
    state: Annotated[ServerState, Depends(get_state)],
    principal: Annotated[Principal, Depends(get_principal)],
) -> StreamingResponse:
    scope = principal.job
    if scope is None:
        raise PermissionDeniedError("only a running job's CI_JOB_TOKEN (JOB-TOKEN header) gets its source")
    project = await run_in_threadpool(state.projects.get, scope.project_id)
    mirror = mirror_path(state.settings.home, project)
    chunks = await run_in_threadpool(commit_archive, mirror, scope.commit_sha)
    name = f"{project.name}-{scope.commit_sha[:12]}.tar.gz"
    return StreamingResponse(
        chunks,
        media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )
