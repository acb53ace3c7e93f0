"""Environments, deployments and deployment events of a project (viewer); promote, abort and
roll back (developer), sent to the environment's agent as `aicd promote|abort|rollback` sends them.

A project's deploy jobs run with AICD_ENV_SCOPE set to the project's name, so its environments
are the rows of that scope in the deployment store (:mod:`aicd.store.deployments`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from aicd.core.access import Role
from aicd.server.deps import ProjectAccess, get_state, project_access
from aicd.server.state import ServerState
from aicd.store.deployments import DeployStore

router = APIRouter(tags=["environments"])

Viewer = Annotated[ProjectAccess, Depends(project_access(Role.VIEWER))]
Developer = Annotated[ProjectAccess, Depends(project_access(Role.DEVELOPER))]
State = Annotated[ServerState, Depends(get_state)]


class EnvironmentOut(BaseModel):
    id: int
    name: str
    tier: str | None = Field(description="production, staging, testing, development or other")
    status: str = Field(description="idle, deploying, paused, healthy, degraded, down or stopped")
    url: str | None = Field(description="the environment's stable address (its router)")
    stable_revision: str | None
    canary_revision: str | None
    weights: dict[str, int]
    created_at: float
    updated_at: float


class DeploymentOut(BaseModel):
    id: int
    environment: str
    number: int
    revision: str
    previous_revision: str | None
    strategy: str
    status: str = Field(description="running, paused, succeeded, failed, aborted, rolled_back or rejected")
    reason: str | None
    ref: str | None
    sha: str | None = Field(description="the deployed commit")
    commit_at: float | None
    pipeline_id: str | None
    job_id: str | None
    actor: str
    created_at: float = Field(description="when the deployment started")
    finished_at: float | None
    analysis: dict[str, Any] | None


class EventOut(BaseModel):
    id: int
    environment: str
    deployment_id: int | None
    at: float
    kind: str
    revision: str | None
    message: str
    actor: str
    data: dict[str, Any] | None


def _store(state: ServerState) -> DeployStore:
    return DeployStore(state.database)


@router.get(
    "/projects/{project}/environments",
    response_model=list[EnvironmentOut],
    summary="The project's environments (viewer)",
)
def list_environments(access: Viewer, state: State) -> list[EnvironmentOut]:
    records = _store(state).list_environments(scope=access.project.scope)
    return [EnvironmentOut.model_validate({**e.to_json(), "weights": e.weights or {}}) for e in records]


@router.get(
    "/projects/{project}/deployments",
    response_model=list[DeploymentOut],
    summary="The project's deployments, newest first (viewer)",
)
def list_deployments(
    access: Viewer,
    state: State,
    environment: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeploymentOut]:
    records = _store(state).list_deployments(environment=environment, scope=access.project.scope, limit=limit)
    return [
        DeploymentOut.model_validate({**d.to_json(), "sha": d.commit_sha, "created_at": d.started_at})
        for d in records
    ]


@router.get(
    "/projects/{project}/deployment-events",
    response_model=list[EventOut],
    summary="The events of the project's environments, oldest first (viewer)",
)
def list_events(
    access: Viewer,
    state: State,
    environment: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 500,
) -> list[EventOut]:
    records = _store(state).list_events(environment=environment, scope=access.project.scope, limit=limit)
    return [EventOut.model_validate(e.to_json()) for e in records]


class ActionIn(BaseModel):
    full: bool = Field(default=False, description="promote: skip the remaining canary steps")
    to: str | None = Field(default=None, max_length=20, description="rollback: the revision to go back to")
    variant: str | None = Field(
        default=None,
        max_length=20,
        pattern=r"^[a-z]$",
        description="promote, an experiment: this variant (a, b, ...) instead of the verdict's winner",
    )


ACTIONS = ("promote", "abort", "rollback")
Action = Literal["promote", "abort", "rollback"]


def environment_action(
    state: ServerState, access: ProjectAccess, env: str, action: str, body: ActionIn
) -> Any:
    """What `aicd promote|abort|rollback ENV` does, for the project's environment, by the caller.

    The environment's agent must be running (the server does not start one for a button):
    ConflictError otherwise. Answers the agent's answer (the deployment) as it is when it settles.
    """
    from aicd.deploy import client, control
    from aicd.errors import ConflictError

    client.check_env_name(env)
    scope = access.project.scope
    record = _store(state).get_environment(env, scope=scope)  # NotFoundError with suggestions
    location = client.Location(state.settings.home, state.settings.database_url, scope)
    socket = client.agent_socket(location, record.name)
    if not control.reachable(socket):
        raise ConflictError(f"environment {env}: its agent is not running (deploy to it again to start it)")
    request: dict[str, Any] = {"op": action, "actor": access.principal.name}
    if action == "promote":
        request["full"] = body.full
        if body.variant:
            request["variant"] = body.variant
    elif action == "rollback":
        request["to"] = body.to
    answer = control.request(socket, request)
    details = {k: v for k, v in request.items() if k in ("full", "to", "variant") and v}
    state.accounts.audit(
        access.principal.name,
        f"environment.{action}",
        project_id=access.project.id,
        target=env,
        details=details,
    )
    return answer


@router.post(
    "/projects/{project}/environments/{env:path}/{action}",
    summary="Promote (`full`: now), abort, or roll back (`to`: a revision) an environment (developer)",
)
async def act_on_environment(
    access: Developer,
    state: State,
    env: Annotated[str, Path(max_length=100)],
    action: Action,
    body: ActionIn | None = None,
) -> Any:
    return await run_in_threadpool(environment_action, state, access, env, action, body or ActionIn())
