"""Who besides its members reads a project's models, and which of its aliases are protected.

Read by viewers; changed by maintainers (audit entries: model_readers.grant, model_readers.revoke,
project.protected_aliases). A reader project named here reads every model of the project (list,
show, download, a gate's baseline); it changes none.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from aicd.core.access import Role
from aicd.delivery.model_uri import check_alias
from aicd.errors import ConfigError, NotFoundError
from aicd.server.deps import ProjectAccess, get_state, project_access, project_ref
from aicd.server.routes.registry_schemas import ModelReadersOut, ProtectedAliasesIn, ProtectedAliasesOut
from aicd.server.state import ServerState
from aicd.store.model_access import ModelAccessStore
from aicd.store.projects_repo import ProjectRecord

router = APIRouter(tags=["models"])

State = Annotated[ServerState, Depends(get_state)]
Viewer = Annotated[ProjectAccess, Depends(project_access(Role.VIEWER))]
Maintainer = Annotated[ProjectAccess, Depends(project_access(Role.MAINTAINER))]
Reader = Annotated[str, Path(max_length=200, description="The reader project's name or numeric id")]


def _readers(state: ServerState, access: ProjectAccess) -> ModelReadersOut:
    return ModelReadersOut(
        project=access.project.name, readers=ModelAccessStore(state.database).readers(access.project.id)
    )


def _reader(state: ServerState, access: ProjectAccess, reader: str) -> ProjectRecord:
    try:
        record = state.projects.get(project_ref(reader))
    except NotFoundError:
        raise NotFoundError(f"no project {reader!r}") from None
    if record.id == access.project.id:
        raise ConfigError(f"project {record.name!r} reads its own models already")
    return record


@router.get(
    "/projects/{project}/model-readers",
    response_model=ModelReadersOut,
    summary="The projects that may read this project's models (viewer)",
)
def list_readers(access: Viewer, state: State) -> ModelReadersOut:
    return _readers(state, access)


@router.put(
    "/projects/{project}/model-readers/{reader}",
    response_model=ModelReadersOut,
    summary="Let another project read this project's models (maintainer)",
)
def grant_reader(reader: Reader, access: Maintainer, state: State) -> ModelReadersOut:
    record = _reader(state, access, reader)
    ModelAccessStore(state.database).grant(
        access.project.id, record.id, record.name, actor=access.principal.name
    )
    return _readers(state, access)


@router.delete(
    "/projects/{project}/model-readers/{reader}",
    response_model=ModelReadersOut,
    summary="Stop another project reading this project's models (maintainer)",
)
def revoke_reader(reader: Reader, access: Maintainer, state: State) -> ModelReadersOut:
    record = _reader(state, access, reader)
    ModelAccessStore(state.database).revoke(
        access.project.id, record.id, record.name, actor=access.principal.name
    )
    return _readers(state, access)


@router.get(
    "/projects/{project}/protected-aliases",
    response_model=ProtectedAliasesOut,
    summary="The aliases of this project's models that only maintainers move or remove (viewer)",
)
def get_protected(access: Viewer, state: State) -> ProtectedAliasesOut:
    aliases = ModelAccessStore(state.database).protected_aliases(access.project.id)
    return ProtectedAliasesOut(project=access.project.name, aliases=list(aliases))


@router.put(
    "/projects/{project}/protected-aliases",
    response_model=ProtectedAliasesOut,
    summary="Set the protected aliases of this project's models (maintainer); [] protects none",
)
def set_protected(body: ProtectedAliasesIn, access: Maintainer, state: State) -> ProtectedAliasesOut:
    aliases = sorted({check_alias(a) for a in body.aliases})
    ModelAccessStore(state.database).set_protected_aliases(
        access.project.id, aliases, actor=access.principal.name
    )
    return ProtectedAliasesOut(project=access.project.name, aliases=aliases)
