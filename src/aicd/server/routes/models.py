"""The model registry over HTTP: /models, /objects (artifact upload), /lineage.

Models belong to projects (aicd.core.registry_access has the rules): members of a model's
project read it (and projects it granted reads to); developers register versions and move
ordinary aliases; protected aliases need a maintainer. A job token acts as a developer of its
job's project, and the server, not the job, writes the lineage of what it registers. A model the
caller may not read answers 404 as if it did not exist. Every registry change is written to the
audit log in the same transaction as the change (actor: the caller). Registering is two
requests: PUT /objects/{digest} with the artifact's bytes (a folder: its tar, as `aicd model
register` makes it), then POST /models/{name}/versions naming it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from aicd.core.access import Principal
from aicd.core.registry_access import RegistryAccess
from aicd.core.server_pipeline import project_url
from aicd.delivery.lineage import Lineage
from aicd.delivery.model_uri import LATEST, ModelURI, check_alias, check_name, check_version
from aicd.delivery.objects import CHUNK, ObjectStore, StoredObject, check_digest
from aicd.delivery.registry import ModelRecord, Registry, artifact_kind
from aicd.delivery.registry_json import alias_event_json, alias_json, model_json, version_json
from aicd.errors import ConfigError, NotFoundError, PermissionDeniedError
from aicd.server.deps import get_principal, get_state, project_ref, require_admin, roles_by_project
from aicd.server.routes.registry_schemas import (
    AliasEventOut,
    AliasIn,
    AliasOut,
    ModelOut,
    ModelPatch,
    ObjectOut,
    VersionIn,
    VersionOut,
)
from aicd.server.state import ServerState
from aicd.store.model_access import DEFAULT_PROTECTED_ALIASES, ModelAccessStore
from aicd.store.registry import RegistryStore
from aicd.suggest import did_you_mean

router = APIRouter(tags=["models"])

State = Annotated[ServerState, Depends(get_state)]
Caller = Annotated[Principal, Depends(get_principal)]
Admin = Annotated[Principal, Depends(require_admin)]


async def registry_access(request: Request, principal: Caller) -> RegistryAccess:
    """The caller's roles by project and the projects whose models they were granted to read."""
    state = get_state(request)
    roles = await run_in_threadpool(roles_by_project, state, principal)
    granted: frozenset[int] = frozenset()
    if roles:
        granted = frozenset(await run_in_threadpool(ModelAccessStore(state.database).granted_to, list(roles)))
    return RegistryAccess(principal, roles, granted)


Access = Annotated[RegistryAccess, Depends(registry_access)]


async def require_writer(access: Access) -> RegistryAccess:
    """Admins, job tokens, and users who are developer or more on at least one project."""
    if access.roles is None or access.developer_projects():
        return access
    raise PermissionDeniedError(
        "changing the model registry needs the developer role on at least one project (or admin)"
    )


Writer = Annotated[RegistryAccess, Depends(require_writer)]


def _registry(state: ServerState) -> Registry:
    return Registry(RegistryStore(state.database), ObjectStore(state.settings.home))


def _version_ref(name: str, version: str) -> ModelURI:
    check_name(name)
    if version == LATEST:
        return ModelURI(name=name)
    return ModelURI(name=name, version=check_version(version))


def _readable(registry: Registry, access: RegistryAccess, name: str) -> ModelRecord:
    """The model, when the caller may read it; else 404 naming only models they may read."""
    check_name(name)
    try:
        model = registry.store.get_model(name)
    except NotFoundError:
        model = None
    if model is None or not access.can_read(model.project_id):
        names = [m.name for m in registry.store.list_models() if access.can_read(m.project_id)]
        raise NotFoundError(f"no model named {name!r}{did_you_mean(name, names)}")
    return model


def _protected(state: ServerState, owner: int | None) -> tuple[str, ...]:
    if owner is None:
        return DEFAULT_PROTECTED_ALIASES
    return ModelAccessStore(state.database).protected_aliases(owner)


def _project_names(state: ServerState) -> dict[int, str]:
    return {p.id: p.name for p in state.projects.list()}


def _model_out(model: ModelRecord, names: dict[int, str]) -> dict[str, Any]:
    project = None if model.project_id is None else names.get(model.project_id)
    return {**model_json(model), "project": project}


def _new_model_project(state: ServerState, access: RegistryAccess, requested: str | None) -> int | None:
    """The project a new model will belong to."""
    job = access.principal.job
    if job is not None:
        if requested is not None and project_ref(requested) not in (job.project, job.project_id):
            raise PermissionDeniedError("a job token registers models only in its own project")
        return job.project_id
    if requested is not None:
        try:
            record = state.projects.get(project_ref(requested))
        except NotFoundError:
            raise NotFoundError(f"no project {requested!r}") from None
        role = access.role_on(record.id)
        if role is None:
            raise NotFoundError(f"no project {requested!r}")
        if record.id not in access.developer_projects() and access.roles is not None:
            raise PermissionDeniedError(
                f"project {record.name!r}: registering a model needs the developer role; you are {role.label}"
            )
        return record.id
    if access.roles is None:
        return None  # an admin's model, of no project
    mine = access.developer_projects()
    if not mine:
        raise PermissionDeniedError("registering a new model needs the developer role on a project")
    if len(mine) == 1:
        return mine[0]
    names = _project_names(state)
    choices = ", ".join(sorted(names.get(pid, str(pid)) for pid in mine))
    raise ConfigError(
        f"a new model belongs to a project: name it (--project, or 'project' in the body); yours: {choices}"
    )


def _job_lineage(state: ServerState, access: RegistryAccess) -> Lineage | None:
    """A job token's lineage, from the server's records (what the job sent is not used)."""
    job = access.principal.job
    if job is None:
        return None
    url = project_url(state.dispatcher.server_url, job.project) + f"/pipelines/{job.pipeline_id}"
    return Lineage(
        commit_sha=job.commit_sha,
        ref=job.ref,
        pipeline_id=job.pipeline_id,
        job_id=job.job_id,
        project=job.project,
        pipeline_url=url,
        user=job.user_login or access.principal.name,
    )


# -- models and versions ---------------------------------------------------------------------------


@router.get("/models", response_model=list[ModelOut], summary="The models you may read")
def list_models(state: State, access: Access) -> list[dict[str, Any]]:
    names = _project_names(state)
    models = _registry(state).store.list_models()
    return [_model_out(m, names) for m in models if access.can_read(m.project_id)]


@router.get("/models/{name}", response_model=ModelOut, summary="One model: latest version and aliases")
def get_model(name: str, state: State, access: Access) -> dict[str, Any]:
    return _model_out(_readable(_registry(state), access, name), _project_names(state))


@router.patch(
    "/models/{name}", response_model=ModelOut, summary="Give a model to another project, or to none (admin)"
)
def move_model(name: str, body: ModelPatch, state: State, admin: Admin) -> dict[str, Any]:
    registry = _registry(state)
    check_name(name)
    project_id = None
    if body.project is not None:
        try:
            project_id = state.projects.get(project_ref(body.project)).id
        except NotFoundError:
            raise NotFoundError(f"no project {body.project!r}") from None
    registry.store.set_project(name, project_id, actor=admin.name)
    return _model_out(registry.store.get_model(name), _project_names(state))


@router.get(
    "/models/{name}/versions",
    response_model=list[VersionOut],
    summary="The versions of a model, newest first",
)
def list_versions(name: str, state: State, access: Access) -> list[dict[str, Any]]:
    registry = _registry(state)
    _readable(registry, access, name)
    return [version_json(v) for v in registry.store.list_versions(name)]


@router.post(
    "/models/{name}/versions",
    response_model=VersionOut,
    status_code=201,
    summary="Register the next version of a model (its artifact uploaded first with PUT /objects/{digest})",
)
def register_version(name: str, body: VersionIn, state: State, access: Access) -> dict[str, Any]:
    registry = _registry(state)
    check_name(name)
    try:
        existing: ModelRecord | None = registry.store.get_model(name)
    except NotFoundError:
        existing = None
    if existing is not None:
        access.check_write(name, existing.project_id, "register a version")
        project_id = existing.project_id
        if body.project is not None and project_ref(body.project) not in (
            project_id,
            _project_names(state).get(project_id or 0),
        ):
            raise ConfigError(f"model {name!r} exists already and belongs to another project")
    else:
        project_id = _new_model_project(state, access, body.project)
    if body.alias is not None:
        access.check_alias(name, project_id, check_alias(body.alias), _protected(state, project_id))
    digest = check_digest(body.artifact.digest)
    path = registry.objects.path_of(digest)
    if not path.is_file():
        raise ConfigError(f"object {digest} is not on the server: upload it first with PUT /objects/{digest}")
    caller = access.principal
    record = registry.register_object(
        name,
        StoredObject(digest, path.stat().st_size),
        body.artifact.name,
        metrics=body.metrics,
        tags=body.tags,
        dataset_hash=body.dataset_hash,
        description=body.description,
        alias=body.alias,
        lineage=_job_lineage(state, access) or body.lineage.lineage(caller.name),
        actor=caller.name,
        project_id=project_id,
        check_owner=True,
    )
    return version_json(record)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=VersionOut,
    summary="One version (a number, or 'latest') with its lineage",
)
def get_version(name: str, version: str, state: State, access: Access) -> dict[str, Any]:
    registry = _registry(state)
    ref = _version_ref(name, version)
    _readable(registry, access, name)
    found = registry.lineage(ref)
    return version_json(found.version, found.pipeline)


@router.get(
    "/models/{name}/versions/{version}/artifact",
    response_class=FileResponse,
    summary="Download a version's artifact (a file, or a folder as a tar); X-Aicd-Digest names its digest",
    responses={200: {"content": {"application/octet-stream": {}, "application/x-tar": {}}}},
)
def download_artifact(name: str, version: str, state: State, access: Access) -> FileResponse:
    registry = _registry(state)
    ref = _version_ref(name, version)
    _readable(registry, access, name)
    record = registry.resolve(ref)
    if record.artifact_digest is None or record.artifact_name is None:
        raise ConfigError(f"{record.uri} has no artifact")
    path = registry.objects.verified_path(record.artifact_digest)
    is_dir = artifact_kind(record.artifact_name) == "dir"
    filename = record.artifact_name.rstrip("/") + (".tar" if is_dir else "")
    return FileResponse(
        path,
        media_type="application/x-tar" if is_dir else "application/octet-stream",
        filename=filename,
        headers={"X-Aicd-Digest": record.artifact_digest, "X-Aicd-Artifact-Name": record.artifact_name},
    )


# -- aliases ---------------------------------------------------------------------------------------


@router.get("/models/{name}/aliases", response_model=list[AliasOut], summary="The aliases of a model")
def list_aliases(name: str, state: State, access: Access) -> list[dict[str, Any]]:
    registry = _registry(state)
    _readable(registry, access, name)
    return [alias_json(a) for a in registry.store.list_aliases(name)]


@router.get(
    "/models/{name}/aliases/{alias}", response_model=VersionOut, summary="The version an alias points at"
)
def get_alias(name: str, alias: str, state: State, access: Access) -> dict[str, Any]:
    registry = _registry(state)
    _readable(registry, access, name)
    found = registry.lineage(ModelURI(name=name, alias=check_alias(alias)))
    return version_json(found.version, found.pipeline)


@router.put(
    "/models/{name}/aliases/{alias}",
    response_model=AliasOut,
    summary="Point an alias at a version (creating or moving it); a protected alias needs a maintainer",
)
def set_alias(name: str, alias: str, body: AliasIn, state: State, access: Access) -> dict[str, Any]:
    registry = _registry(state)
    model = _readable(registry, access, name)
    access.check_alias(name, model.project_id, check_alias(alias), _protected(state, model.project_id))
    record, previous = registry.set_alias(name, alias, body.version, actor=access.principal.name)
    return alias_json(record, previous)


@router.delete(
    "/models/{name}/aliases/{alias}",
    response_model=AliasOut,
    summary="Remove an alias; a protected alias needs a maintainer",
)
def delete_alias(name: str, alias: str, state: State, access: Access) -> dict[str, Any]:
    registry = _registry(state)
    model = _readable(registry, access, name)
    access.check_alias(name, model.project_id, check_alias(alias), _protected(state, model.project_id))
    return alias_json(registry.remove_alias(name, alias, actor=access.principal.name))


@router.get(
    "/models/{name}/history",
    response_model=list[AliasEventOut],
    summary="How the model's aliases moved, newest first",
)
def alias_history(
    name: str,
    state: State,
    access: Access,
    alias: Annotated[str | None, Query(description="Only this alias")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    registry = _registry(state)
    _readable(registry, access, name)
    events = registry.store.alias_history(name, None if alias is None else check_alias(alias), limit=limit)
    return [alias_event_json(e) for e in events]


# -- lineage and objects ---------------------------------------------------------------------------


@router.get(
    "/lineage/commits/{sha}",
    response_model=list[VersionOut],
    summary="The versions registered from a commit (a SHA prefix of 4+ hex digits) of models you may read",
)
def commit_versions(sha: str, state: State, access: Access) -> list[dict[str, Any]]:
    registry = _registry(state)
    owners = {m.name: m.project_id for m in registry.store.list_models()}
    found = registry.versions_for_commit(sha)
    return [version_json(v) for v in found if access.can_read(owners.get(v.model))]


@router.put(
    "/objects/{digest}",
    response_model=ObjectOut,
    status_code=201,
    summary="Upload an artifact's bytes; refused unless they have this digest (sha256:<hex>)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def put_object(
    digest: str, request: Request, response: Response, state: State, _writer: Writer
) -> ObjectOut:
    check_digest(digest)
    objects = ObjectStore(state.settings.home)
    with tempfile.TemporaryFile() as spool:
        async for chunk in request.stream():
            spool.write(chunk)
        spool.seek(0)
        if objects.has(digest):
            response.status_code = 200
        stored = await run_in_threadpool(objects.put_stream, _read_chunks(spool), digest)
    return ObjectOut(digest=stored.digest, size=stored.size)


def _read_chunks(fh: IO[bytes]) -> Iterator[bytes]:
    while chunk := fh.read(CHUNK):
        yield chunk
