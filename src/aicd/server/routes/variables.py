"""Project variables (maintainer): values encrypted at rest; masked values are never returned."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, Field

from aicd.core import projects as core
from aicd.core.access import Role
from aicd.server.deps import ProjectAccess, get_state, project_access
from aicd.server.state import ServerState

router = APIRouter(tags=["variables"])

State = Annotated[ServerState, Depends(get_state)]
Maintainer = Annotated[ProjectAccess, Depends(project_access(Role.MAINTAINER))]
Key = Annotated[str, Path(max_length=255, pattern=core.VARIABLE_KEY_PATTERN, description="Variable name")]


class VariableIn(BaseModel):
    value: str = Field(max_length=1_000_000)
    masked: bool = Field(default=False, description="Hidden in job logs and in this API")
    protected: bool = Field(default=False, description="Only given to pipelines of protected refs")
    file: bool = Field(default=False, description="A file variable: the job gets a path to a file")


class VariableOut(BaseModel):
    key: str
    value: str | None = Field(description="null for a masked variable")
    masked: bool
    protected: bool
    file: bool
    updated_at: float

    @classmethod
    def of(cls, view: core.VariableView) -> VariableOut:
        return cls(
            key=view.key,
            value=view.value,
            masked=view.masked,
            protected=view.protected,
            file=view.file,
            updated_at=view.updated_at,
        )


@router.get(
    "/projects/{project}/variables",
    response_model=list[VariableOut],
    summary="List the project's variables (maintainer); masked values are shown as null",
)
def list_variables(access: Maintainer, state: State) -> list[VariableOut]:
    records = state.projects.list_variables(access.project.id)
    return [VariableOut.of(core.view_variable(state, record)) for record in records]


@router.put(
    "/projects/{project}/variables/{key}",
    response_model=VariableOut,
    summary="Create or replace a project variable (maintainer)",
)
def set_variable(key: Key, body: VariableIn, access: Maintainer, state: State) -> VariableOut:
    record = core.set_variable(
        state,
        access.principal.name,
        access.project,
        key,
        body.value,
        masked=body.masked,
        protected=body.protected,
        file=body.file,
    )
    return VariableOut.of(core.view_variable(state, record))


@router.delete(
    "/projects/{project}/variables/{key}",
    status_code=204,
    response_class=Response,
    summary="Delete a project variable (maintainer)",
)
def delete_variable(key: Key, access: Maintainer, state: State) -> Response:
    core.delete_variable(state, access.principal.name, access.project, key)
    return Response(status_code=204)
