"""Projects: add (admin), list, show, change (maintainer), remove (admin), poll now (developer)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from aicd.core import projects as core
from aicd.core.access import Principal, Role
from aicd.errors import AicdError, PermissionDeniedError
from aicd.server.deps import (
    ProjectAccess,
    get_principal,
    get_state,
    project_access,
    require_admin,
    roles_by_project,
)
from aicd.server.state import ServerState
from aicd.store.projects_repo import ProjectRecord
from aicd.store.records import PipelineRecord
from aicd.triggers.mirror import redact
from aicd.triggers.webhooks import PROVIDERS

router = APIRouter(tags=["projects"])

State = Annotated[ServerState, Depends(get_state)]
Caller = Annotated[Principal, Depends(get_principal)]
Admin = Annotated[Principal, Depends(require_admin)]
Viewer = Annotated[ProjectAccess, Depends(project_access(Role.VIEWER))]
Developer = Annotated[ProjectAccess, Depends(project_access(Role.DEVELOPER))]
Maintainer = Annotated[ProjectAccess, Depends(project_access(Role.MAINTAINER))]
FINAL_STATUSES = frozenset({"success", "failed", "canceled", "skipped"})


class ProjectIn(BaseModel):
    name: str = Field(max_length=core.MAX_NAME, pattern=core.NAME_PATTERN, examples=["iris"])
    repo_url: str = Field(
        min_length=1, description="Path on the server, file://, https://, ssh:// or user@host:path"
    )
    default_branch: str = "main"
    pipeline_file: str = ".gitlab-ci.yml"
    poll_interval_s: float | None = Field(default=None, description="Seconds between polls; null: no polling")
    webhook_secret: str | None = Field(default=None, description="Write-only: never returned")


class ProjectPatch(BaseModel):
    repo_url: str | None = None
    default_branch: str | None = None
    pipeline_file: str | None = None
    poll_interval_s: float | None = Field(default=None, description="null: stop polling")
    webhook_secret: str | None = Field(default=None, description='Write-only; null or "": remove it')


class ProjectOut(BaseModel):
    id: int
    name: str
    repo_url: str = Field(description="Credentials in the URL are not shown")
    default_branch: str
    pipeline_file: str
    poll_interval_s: float | None
    has_webhook_secret: bool
    created_at: float
    webhook_paths: dict[str, str] = Field(description="Where each provider's webhook goes (under the server)")
    last_poll_error: str | None = None

    @classmethod
    def of(cls, project: ProjectRecord, state: ServerState | None = None) -> ProjectOut:
        error = None
        if state is not None and state.poller is not None:
            error = state.poller.last_error.get(project.id)
        return cls(
            id=project.id,
            name=project.name,
            repo_url=redact(project.repo_url),
            default_branch=project.default_branch,
            pipeline_file=project.pipeline_file,
            poll_interval_s=project.poll_interval_s,
            has_webhook_secret=project.has_webhook_secret,
            created_at=project.created_at,
            webhook_paths={p: f"/api/v1/projects/{project.name}/hooks/{p}" for p in PROVIDERS},
            last_poll_error=error,
        )


class PipelineBrief(BaseModel):
    id: int
    iid: int
    ref: str
    sha: str
    source: str
    status: str

    @classmethod
    def of(cls, pipeline: PipelineRecord) -> PipelineBrief:
        return cls(
            id=pipeline.id,
            iid=pipeline.iid,
            ref=pipeline.ref,
            sha=pipeline.sha,
            source=pipeline.source,
            status=pipeline.status,
        )


class PollOut(BaseModel):
    pipelines: list[PipelineBrief] = Field(description="Pipelines this poll started (none: nothing moved)")


def _wake_poller(state: ServerState) -> None:
    if state.poller is not None:
        state.poller.wake()


@router.post(
    "/projects",
    response_model=ProjectOut,
    status_code=201,
    summary="Add a project (admin): the repository must be reachable and have the default branch",
)
async def create_project(body: ProjectIn, state: State, admin: Admin) -> ProjectOut:
    spec = core.NewProject(
        name=body.name,
        repo_url=body.repo_url,
        default_branch=body.default_branch,
        pipeline_file=body.pipeline_file,
        poll_interval_s=body.poll_interval_s,
        webhook_secret=body.webhook_secret,
    )
    record = await asyncio.to_thread(core.add_project, state, admin.name, spec)
    _wake_poller(state)
    return ProjectOut.of(record, state)


@router.get("/projects", response_model=list[ProjectOut], summary="List the projects you have a role on")
def list_projects(state: State, caller: Caller) -> list[ProjectOut]:
    records = state.projects.list()
    mine = roles_by_project(state, caller)
    if mine is not None:
        records = [record for record in records if record.id in mine]
    return [ProjectOut.of(record, state) for record in records]


@router.get("/projects/{project}", response_model=ProjectOut, summary="Show a project (viewer)")
def show_project(access: Viewer, state: State) -> ProjectOut:
    return ProjectOut.of(access.project, state)


@router.patch(
    "/projects/{project}",
    response_model=ProjectOut,
    summary="Change a project's settings (maintainer); only the fields given change",
)
async def update_project(body: ProjectPatch, access: Maintainer, state: State) -> ProjectOut:
    given = body.model_fields_set
    record = await asyncio.to_thread(
        core.update_project,
        state,
        access.principal.name,
        access.project,
        repo_url=body.repo_url,
        default_branch=body.default_branch,
        pipeline_file=body.pipeline_file,
        poll_interval_s=body.poll_interval_s if "poll_interval_s" in given else core.UNSET,
        webhook_secret=body.webhook_secret if "webhook_secret" in given else core.UNSET,
    )
    _wake_poller(state)
    return ProjectOut.of(record, state)


@router.delete(
    "/projects/{project}",
    status_code=204,
    response_class=Response,
    summary="Remove a project with its pipelines, variables and mirror (admin)",
)
async def delete_project(access: Maintainer, state: State) -> Response:
    if not access.principal.is_admin:
        raise PermissionDeniedError("removing a project needs an admin")
    project = access.project
    pipelines = await asyncio.to_thread(state.runs.list_pipelines, project_dir=project.key, limit=1_000_000)
    for pipeline in pipelines:
        if pipeline.status not in FINAL_STATUSES:
            with contextlib.suppress(AicdError, NotImplementedError):
                await state.dispatcher.cancel_pipeline(pipeline.id)
    run_dirs = [p.run_dir for p in pipelines if p.run_dir]
    async with state.poller.lock(project.id):  # no poll or webhook of it is under way
        await asyncio.to_thread(core.remove_project, state, access.principal.name, project, run_dirs)
    _wake_poller(state)
    return Response(status_code=204)


@router.post(
    "/projects/{project}/poll",
    response_model=PollOut,
    summary="Poll the project's repository now (developer); starts pipelines for what moved",
)
async def poll_project(access: Developer, state: State) -> PollOut:
    created = await state.poller.poll_project(access.project)
    await run_in_threadpool(
        state.accounts.audit,
        access.principal.name,
        "project.poll",
        project_id=access.project.id,
        target=access.project.name,
        details={"pipelines": [p.id for p in created]},
    )
    return PollOut(pipelines=[PipelineBrief.of(p) for p in created])
