"""Incidents of a project's environments: list (viewer), declare and resolve (developer).

A project's environments are those of scope = the project's name (AICD_ENV_SCOPE in its jobs).
Declaring and resolving are written to the audit log, and to the environment's events, by the
same functions `aicd incident` calls (:mod:`aicd.reliability.monitor_incidents`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from aicd.core.access import Role
from aicd.reliability.monitor_incidents import (
    TEXT_MAX,
    TITLE_MAX,
    declare_incident,
    list_incidents,
    resolve_incident,
)
from aicd.server.deps import IdPath, ProjectAccess, get_state, project_access
from aicd.server.state import ServerState
from aicd.store.deployments import DeployStore, IncidentRecord

router = APIRouter(tags=["incidents"])

State = Annotated[ServerState, Depends(get_state)]
Viewer = Annotated[ProjectAccess, Depends(project_access(Role.VIEWER))]
Developer = Annotated[ProjectAccess, Depends(project_access(Role.DEVELOPER))]


class IncidentOut(BaseModel):
    id: int
    environment: str
    kind: str = Field(description="down, slo, change_failure or declared")
    title: str
    opened_at: float
    resolved_at: float | None = Field(description="null while it is open")
    deployment_id: int | None = Field(description="the deployment that caused it, when known")
    cause: str | None
    resolution: str | None
    data: dict[str, Any] | None
    opened_by: str
    resolved_by: str | None

    @classmethod
    def of(cls, record: IncidentRecord) -> IncidentOut:
        return cls(**record.to_json())


class IncidentIn(BaseModel):
    environment: str = Field(min_length=1, max_length=100, description="The environment's name")
    title: str = Field(min_length=1, max_length=TITLE_MAX, description="What is wrong")
    cause: str | None = Field(default=None, max_length=TEXT_MAX, description="Why, if known")


class ResolutionIn(BaseModel):
    resolution: str | None = Field(default=None, max_length=TEXT_MAX, description="How it was fixed")


def _store(state: ServerState) -> DeployStore:
    return DeployStore(state.database)


def _audit(state: ServerState, access: ProjectAccess, action: str, record: IncidentRecord) -> None:
    state.accounts.audit(
        access.principal.name,
        action,
        project_id=access.project.id,
        target=f"incident #{record.id}",
        details={"environment": record.environment, "kind": record.kind, "title": record.title},
    )


@router.get(
    "/projects/{project}/incidents",
    response_model=list[IncidentOut],
    summary="The incidents of the project's environments, newest first (viewer)",
)
def get_incidents(
    access: Viewer,
    state: State,
    environment: Annotated[str | None, Query(max_length=100)] = None,
    only_open: Annotated[bool, Query(alias="open", description="Only those not resolved yet")] = False,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> list[IncidentOut]:
    records = list_incidents(
        _store(state), scope=access.project.name, environment=environment, only_open=only_open, limit=limit
    )
    return [IncidentOut.of(r) for r in records]


@router.post(
    "/projects/{project}/incidents",
    response_model=IncidentOut,
    status_code=201,
    summary="Declare an incident in one of the project's environments (developer)",
)
async def declare(body: IncidentIn, access: Developer, state: State) -> IncidentOut:
    def work() -> IncidentRecord:
        store = _store(state)
        env = store.get_environment(body.environment, scope=access.project.name)
        record = declare_incident(store, env, title=body.title, cause=body.cause, actor=access.principal.name)
        _audit(state, access, "incident.declare", record)
        return record

    return IncidentOut.of(await run_in_threadpool(work))


@router.post(
    "/projects/{project}/incidents/{incident_id}/resolve",
    response_model=IncidentOut,
    summary="Resolve an open incident of the project's environments (developer)",
)
async def resolve(
    incident_id: IdPath,
    access: Developer,
    state: State,
    body: Annotated[ResolutionIn | None, Body()] = None,
) -> IncidentOut:
    def work() -> IncidentRecord:
        record = resolve_incident(
            _store(state),
            incident_id,
            actor=access.principal.name,
            scope=access.project.name,
            resolution=body.resolution if body is not None else None,
        )
        _audit(state, access, "incident.resolve", record)
        return record

    return IncidentOut.of(await run_in_threadpool(work))
