"""The model registry over HTTP: /models, /objects (artifact upload), /lineage.

Reads: any authenticated user. Writes (upload, register, move or remove an
alias): admins, or users with the developer role (or higher) on at least one
project. Every registry change is written to the audit log in the same
transaction as the change (actor: the caller). Registering is two requests:
PUT /objects/{digest} with the artifact's bytes (a folder: its tar, as
`aicd model register` makes it), then POST /models/{name}/versions naming it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from aicd.core.access import Principal, Role
from aicd.delivery.model_uri import LATEST, ModelURI, check_alias, check_name, check_version
from aicd.delivery.objects import CHUNK, ObjectStore, StoredObject, check_digest
from aicd.delivery.registry import Registry, artifact_kind
from aicd.delivery.registry_json import alias_event_json, alias_json, model_json, version_json
from aicd.errors import ConfigError, PermissionDeniedError
from aicd.server.deps import get_principal, get_state
from aicd.server.routes.registry_schemas import (
    AliasEventOut,
    AliasIn,
    AliasOut,
    ModelOut,
    ObjectOut,
    VersionIn,
    VersionOut,
)
from aicd.server.state import ServerState
from aicd.store.registry import RegistryStore

router = APIRouter(tags=["models"])

State = Annotated[ServerState, Depends(get_state)]
Caller = Annotated[Principal, Depends(get_principal)]


async def require_writer(request: Request, principal: Caller) -> Principal:
    """Admins, and users who are developer or more on at least one project."""
    if principal.is_admin:
        return principal
    state = get_state(request)
    roles = await run_in_threadpool(state.accounts.roles_of, principal.user_id)
    if any(Role.parse(role) >= Role.DEVELOPER for role in roles.values()):
        return principal
    raise PermissionDeniedError(
        "changing the model registry needs the developer role on at least one project (or admin)"
    )


Writer = Annotated[Principal, Depends(require_writer)]


def _registry(state: ServerState) -> Registry:
    return Registry(RegistryStore(state.database), ObjectStore(state.settings.home))


def _version_ref(name: str, version: str) -> ModelURI:
    check_name(name)
    if version == LATEST:
        return ModelURI(name=name)
    return ModelURI(name=name, version=check_version(version))


# -- models and versions ---------------------------------------------------------------------------


@router.get("/models", response_model=list[ModelOut], summary="Every registered model")
def list_models(state: State, _caller: Caller) -> list[dict[str, Any]]:
    return [model_json(m) for m in _registry(state).store.list_models()]


@router.get("/models/{name}", response_model=ModelOut, summary="One model: latest version and aliases")
def get_model(name: str, state: State, _caller: Caller) -> dict[str, Any]:
    return model_json(_registry(state).store.get_model(check_name(name)))


@router.get(
    "/models/{name}/versions",
    response_model=list[VersionOut],
    summary="The versions of a model, newest first",
)
def list_versions(name: str, state: State, _caller: Caller) -> list[dict[str, Any]]:
    return [version_json(v) for v in _registry(state).store.list_versions(check_name(name))]


@router.post(
    "/models/{name}/versions",
    response_model=VersionOut,
    status_code=201,
    summary="Register the next version of a model (its artifact uploaded first with PUT /objects/{digest})",
)
def register_version(name: str, body: VersionIn, state: State, caller: Writer) -> dict[str, Any]:
    registry = _registry(state)
    digest = check_digest(body.artifact.digest)
    path = registry.objects.path_of(digest)
    if not path.is_file():
        raise ConfigError(f"object {digest} is not on the server: upload it first with PUT /objects/{digest}")
    record = registry.register_object(
        check_name(name),
        StoredObject(digest, path.stat().st_size),
        body.artifact.name,
        metrics=body.metrics,
        tags=body.tags,
        dataset_hash=body.dataset_hash,
        description=body.description,
        alias=body.alias,
        lineage=body.lineage.lineage(caller.name),
        actor=caller.name,
    )
    return version_json(record)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=VersionOut,
    summary="One version (a number, or 'latest') with its lineage",
)
def get_version(name: str, version: str, state: State, _caller: Caller) -> dict[str, Any]:
    found = _registry(state).lineage(_version_ref(name, version))
    return version_json(found.version, found.pipeline)


@router.get(
    "/models/{name}/versions/{version}/artifact",
    response_class=FileResponse,
    summary="Download a version's artifact (a file, or a folder as a tar); X-Aicd-Digest names its digest",
    responses={200: {"content": {"application/octet-stream": {}, "application/x-tar": {}}}},
)
def download_artifact(name: str, version: str, state: State, _caller: Caller) -> FileResponse:
    registry = _registry(state)
    record = registry.resolve(_version_ref(name, version))
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
def list_aliases(name: str, state: State, _caller: Caller) -> list[dict[str, Any]]:
    return [alias_json(a) for a in _registry(state).store.list_aliases(check_name(name))]


@router.get(
    "/models/{name}/aliases/{alias}", response_model=VersionOut, summary="The version an alias points at"
)
def get_alias(name: str, alias: str, state: State, _caller: Caller) -> dict[str, Any]:
    found = _registry(state).lineage(ModelURI(name=check_name(name), alias=check_alias(alias)))
    return version_json(found.version, found.pipeline)


@router.put(
    "/models/{name}/aliases/{alias}",
    response_model=AliasOut,
    summary="Point an alias at a version (creating or moving it)",
)
def set_alias(name: str, alias: str, body: AliasIn, state: State, caller: Writer) -> dict[str, Any]:
    record, previous = _registry(state).set_alias(name, alias, body.version, actor=caller.name)
    return alias_json(record, previous)


@router.delete("/models/{name}/aliases/{alias}", response_model=AliasOut, summary="Remove an alias")
def delete_alias(name: str, alias: str, state: State, caller: Writer) -> dict[str, Any]:
    return alias_json(_registry(state).remove_alias(name, alias, actor=caller.name))


@router.get(
    "/models/{name}/history",
    response_model=list[AliasEventOut],
    summary="How the model's aliases moved, newest first",
)
def alias_history(
    name: str,
    state: State,
    _caller: Caller,
    alias: Annotated[str | None, Query(description="Only this alias")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    store = _registry(state).store
    store.get_model(check_name(name))
    events = store.alias_history(name, None if alias is None else check_alias(alias), limit=limit)
    return [alias_event_json(e) for e in events]


# -- lineage and objects ---------------------------------------------------------------------------


@router.get(
    "/lineage/commits/{sha}",
    response_model=list[VersionOut],
    summary="The model versions registered from a commit (a SHA prefix of 4+ hex digits)",
)
def commit_versions(sha: str, state: State, _caller: Caller) -> list[dict[str, Any]]:
    return [version_json(v) for v in _registry(state).versions_for_commit(sha)]


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
