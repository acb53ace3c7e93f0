"""Pipelines of a project: trigger (developer), list and show (viewer), cancel and retry
(developer), jobs and test report (viewer)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from aicd.core.access import Role
from aicd.core.projects import check_variable
from aicd.core.test_report import build_report
from aicd.errors import GitError, NotFoundError
from aicd.pipeline.ir import Variable
from aicd.server.deps import IdPath, ProjectAccess, get_state, project_access
from aicd.server.routes.run_models import JobOut, PipelineOut
from aicd.server.state import ServerState
from aicd.store.pipeline_queries import find_pipelines
from aicd.store.projects_repo import ProjectRecord
from aicd.store.records import PipelineRecord
from aicd.triggers.refs import check_ref_name

router = APIRouter(tags=["pipelines"])

State = Annotated[ServerState, Depends(get_state)]
Viewer = Annotated[ProjectAccess, Depends(project_access(Role.VIEWER))]
Developer = Annotated[ProjectAccess, Depends(project_access(Role.DEVELOPER))]
StatusName = Literal["created", "pending", "running", "success", "failed", "canceled", "skipped", "manual"]
MAX_VARIABLES = 200


class VariableIn(BaseModel):
    key: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    value: str = Field(max_length=100_000)
    masked: bool = Field(default=False, description="Masked in logs and never returned")


class PipelineIn(BaseModel):
    ref: str = Field(min_length=1, max_length=255, description="Branch or tag")
    sha: str | None = Field(default=None, description="Commit to run (default: the ref's head)")
    variables: list[VariableIn] = Field(default_factory=list, max_length=MAX_VARIABLES)


class TestCaseOut(BaseModel):
    name: str
    classname: str
    status: Literal["success", "failed", "error", "skipped"]
    execution_time: float
    system_output: str | None


class TestSuiteOut(BaseModel):
    name: str
    job_id: int
    total_count: int
    success_count: int
    failed_count: int
    skipped_count: int
    error_count: int
    total_time: float
    test_cases: list[TestCaseOut]


class TestReportOut(BaseModel):
    total_count: int
    success_count: int
    failed_count: int
    skipped_count: int
    error_count: int
    total_time: float
    test_suites: list[TestSuiteOut]


def pipeline_of(state: ServerState, project: ProjectRecord, pipeline_id: int) -> PipelineRecord:
    """The pipeline, if it belongs to the project (NotFoundError otherwise)."""
    try:
        record = state.runs.get_pipeline(pipeline_id)
    except NotFoundError:
        record = None
    if record is None or record.project_dir != project.key:
        raise NotFoundError(f"project {project.name!r} has no pipeline {pipeline_id}")
    return record


def _audit(state: ServerState, access: ProjectAccess, action: str, target: str, **details: Any) -> None:
    state.accounts.audit(
        access.principal.name, action, project_id=access.project.id, target=target, details=details or None
    )


def _commit_of(state: ServerState, project: ProjectRecord, ref: str, sha: str | None) -> tuple[str, str]:
    """Fetch the repository (a failing fetch is fine if the mirror has what is asked), resolve."""
    from aicd.triggers import mirror

    home = state.settings.home
    path = mirror.mirror_path(home, project)
    try:
        mirror.sync_mirror(home, project)
    except GitError:
        if not (path / "HEAD").is_file():
            raise
    check_ref_name(ref, what="ref")
    full, head = mirror.resolve_branch_or_tag(path, ref, project=project.name)
    short = full.removeprefix("refs/heads/")  # a tag keeps "refs/tags/" only if it was given so
    if ref.startswith("refs/tags/"):
        short = ref
    elif full.startswith("refs/tags/"):
        short = full.removeprefix("refs/tags/")
    if sha is None:
        return short, head
    if not mirror.has_commit(path, sha):
        raise GitError(f"commit {sha!r} is not in the repository of project {project.name!r}")
    commit = mirror.resolve_ref(path, sha, project=project.name)
    if not mirror.is_reachable(path, commit, full):
        # GitLab too: a commit runs only with a ref that holds it (protected variables go by the ref).
        raise GitError(
            f"commit {commit} is not on {full.removeprefix('refs/heads/')} of project {project.name!r}: "
            "give the branch or tag that holds it"
        )
    return short, commit


@router.post(
    "/projects/{project}/pipelines",
    response_model=PipelineOut,
    status_code=201,
    summary="Run a pipeline on a branch or tag (developer)",
)
async def create_pipeline(body: PipelineIn, access: Developer, state: State) -> PipelineOut:
    project = access.project
    for variable in body.variables:  # what a job's environment cannot hold is refused here, not at run time
        check_variable(variable.key, variable.value, masked=False)
    ref, sha = await asyncio.to_thread(_commit_of, state, project, body.ref, body.sha)
    variables = [Variable(v.key, v.value, masked=v.masked) for v in body.variables]
    record = await state.dispatcher.submit(
        project,
        ref=ref,
        sha=sha,
        source="api",
        variables=variables,
        actor=access.principal.name,
        user_login=access.principal.name,
    )
    await run_in_threadpool(
        _audit,
        state,
        access,
        "pipeline.create",
        ref,
        pipeline_id=record.id,
        sha=sha,
        variables=sorted(v.key for v in variables),
    )
    return PipelineOut.of(record, project.name)


@router.get(
    "/projects/{project}/pipelines",
    response_model=list[PipelineOut],
    summary="List the project's pipelines, newest first (viewer)",
)
def list_pipelines(
    access: Viewer,
    state: State,
    ref: Annotated[str | None, Query(description="Only this branch or tag")] = None,
    status: Annotated[StatusName | None, Query(description="Only this status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[PipelineOut]:
    records = find_pipelines(
        state.database,
        project_dir=access.project.key,
        ref=ref,
        statuses=[status] if status else None,
        limit=limit,
    )
    return [PipelineOut.of(r, access.project.name) for r in records]


@router.get(
    "/projects/{project}/pipelines/{pipeline_id}",
    response_model=PipelineOut,
    summary="One pipeline (viewer)",
)
def get_pipeline(pipeline_id: IdPath, access: Viewer, state: State) -> PipelineOut:
    return PipelineOut.of(pipeline_of(state, access.project, pipeline_id), access.project.name)


@router.get(
    "/projects/{project}/pipelines/{pipeline_id}/jobs",
    response_model=list[JobOut],
    summary="The pipeline's jobs, in creation order (viewer)",
)
def list_pipeline_jobs(
    pipeline_id: IdPath,
    access: Viewer,
    state: State,
    include_retried: Annotated[bool, Query(description="Also earlier attempts of retried jobs")] = False,
) -> list[JobOut]:
    pipeline_of(state, access.project, pipeline_id)
    jobs = state.runs.list_jobs(pipeline_id, include_retried=include_retried)
    return [JobOut.of(j, state.dispatcher.remote) for j in jobs]


@router.post(
    "/projects/{project}/pipelines/{pipeline_id}/cancel",
    response_model=PipelineOut,
    summary="Cancel the pipeline's running and waiting jobs (developer)",
)
async def cancel_pipeline(pipeline_id: IdPath, access: Developer, state: State) -> PipelineOut:
    await run_in_threadpool(pipeline_of, state, access.project, pipeline_id)
    record = await state.dispatcher.cancel_pipeline(pipeline_id)
    await run_in_threadpool(_audit, state, access, "pipeline.cancel", str(pipeline_id))
    return PipelineOut.of(record, access.project.name)


@router.post(
    "/projects/{project}/pipelines/{pipeline_id}/retry",
    response_model=PipelineOut,
    summary="Run the pipeline's failed and canceled jobs again (developer)",
)
async def retry_pipeline(pipeline_id: IdPath, access: Developer, state: State) -> PipelineOut:
    await run_in_threadpool(pipeline_of, state, access.project, pipeline_id)
    record = await state.dispatcher.retry_pipeline(pipeline_id)
    await run_in_threadpool(_audit, state, access, "pipeline.retry", str(pipeline_id))
    return PipelineOut.of(record, access.project.name)


@router.get(
    "/projects/{project}/pipelines/{pipeline_id}/test_report",
    response_model=TestReportOut,
    summary="The pipeline's JUnit test results, one suite per job (viewer)",
)
def test_report(pipeline_id: IdPath, access: Viewer, state: State) -> TestReportOut:
    from pathlib import Path

    record = pipeline_of(state, access.project, pipeline_id)
    report = build_report(Path(record.run_dir), state.runs.list_jobs(pipeline_id, include_retried=False))
    return TestReportOut.model_validate(dataclasses.asdict(report))
