"""The model registry's pages: the models you may read; a model's versions, two versions' metrics
side by side (by default the newest against the one in `production`), its aliases and how they
moved, and each version's lineage to its pipeline, job and commit.

They read through the API's own route functions (aicd.server.routes.models) with the API's own
RegistryAccess: a model the caller may not read is "not found" here as there.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from aicd.core.registry_access import RegistryAccess
from aicd.server.deps import get_state
from aicd.server.routes import models as api_models
from aicd.server.state import ServerState
from aicd.web.auth import User, WebUser
from aicd.web.pages import WebRoute, page

router = APIRouter(route_class=WebRoute, include_in_schema=False)

BASELINE_ALIAS = "production"
VersionNumber = Annotated[int | None, Query(ge=1, le=2**31)]
ModelName = Annotated[str, Path(max_length=200)]


async def _access(request: Request, user: WebUser) -> RegistryAccess:
    return await api_models.registry_access(request, user.principal)


@router.get("/models")
async def models_page(request: Request, user: User) -> Response:
    access = await _access(request, user)
    models = await run_in_threadpool(api_models.list_models, get_state(request), access)
    return page(request, "models.html", user, models=models)


def project_of(version: dict[str, Any], local: Mapping[str, str] | None = None) -> str | None:
    """The server project a version came from (its pipeline's, else its lineage's); in a local home
    (`local`: its projects' names by folder), the local project of its pipeline, if any."""
    pipeline = version.get("pipeline")
    if local is not None:
        return local.get(str((pipeline or {}).get("project_dir", "")))
    if pipeline and str(pipeline.get("project_dir", "")).startswith("server:"):
        return str(pipeline["project_dir"]).removeprefix("server:")
    project = version["lineage"].get("project")
    return str(project) if project else None


def compare(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per metric of either version: both values and the change from b to a."""
    ma = (a or {}).get("metrics") or {}
    mb = (b or {}).get("metrics") or {}
    rows = []
    for name in sorted(set(ma) | set(mb)):
        va, vb = ma.get(name), mb.get(name)
        delta = va - vb if isinstance(va, int | float) and isinstance(vb, int | float) else None
        rows.append({"name": name, "a": va, "b": vb, "delta": delta})
    return rows


def _model_context(
    state: ServerState, access: RegistryAccess, name: str, a: int | None, b: int | None
) -> dict[str, Any]:
    model = api_models.get_model(name, state, access)  # 404 for a model the caller may not read
    versions = api_models.list_versions(name, state, access)
    aliases = api_models.list_aliases(name, state, access)
    history = api_models.alias_history(name, state, access, None, 50)
    numbers = [v["version"] for v in versions]
    baseline = model["aliases"].get(BASELINE_ALIAS)
    if a is None:
        a = numbers[0] if numbers else None
    if b is None:
        b = baseline if baseline is not None and baseline != a else next((n for n in numbers if n != a), None)
    first = api_models.get_version(name, str(a), state, access) if a is not None else None
    second = api_models.get_version(name, str(b), state, access) if b is not None and b != a else None
    return {
        "model": model,
        "versions": versions,
        "aliases": aliases,
        "history": history,
        "a": first,
        "b": second,
        "rows": compare(first, second),
        "baseline_alias": BASELINE_ALIAS,
    }


@router.get("/models/{name}")
async def model_page(
    request: Request, name: ModelName, user: User, a: VersionNumber = None, b: VersionNumber = None
) -> Response:
    access = await _access(request, user)
    context = await run_in_threadpool(_model_context, get_state(request), access, name, a, b)
    state = get_state(request)
    local = None
    if user.local:  # `aicd ui`: versions link to the local projects their pipelines ran in
        records = await run_in_threadpool(state.projects.list)
        local = {r.key: r.name for r in records if r.local}
    return page(request, "model.html", user, project_of=functools.partial(project_of, local=local), **context)
