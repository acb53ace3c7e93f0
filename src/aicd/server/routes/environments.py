"""Environments and deployments of a project (viewer): empty lists until deployments exist."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from aicd.core.access import Role
from aicd.server.deps import ProjectAccess, project_access

router = APIRouter(tags=["environments"])

Viewer = Annotated[ProjectAccess, Depends(project_access(Role.VIEWER))]


class EnvironmentOut(BaseModel):
    id: int
    name: str
    tier: str = Field(description="production, staging, testing, development or other")
    url: str | None
    state: str = Field(description="available or stopped")
    created_at: float


class DeploymentOut(BaseModel):
    id: int
    environment: str
    status: str
    ref: str
    sha: str
    pipeline_id: int | None
    job_id: int | None
    created_at: float
    finished_at: float | None


@router.get(
    "/projects/{project}/environments",
    response_model=list[EnvironmentOut],
    summary="The project's environments (viewer)",
)
def list_environments(access: Viewer) -> list[EnvironmentOut]:
    return []


@router.get(
    "/projects/{project}/deployments",
    response_model=list[DeploymentOut],
    summary="The project's deployments, newest first (viewer)",
)
def list_deployments(access: Viewer) -> list[DeploymentOut]:
    return []
