"""Deploy a release to a project's environment (developer): what `aicd deploy` does in a server job.

The body is the release folder as a tar.gz (`aicd deploy` packs it; aicd.deploy.archive), with the
aicd.yml to deploy with at `.aicd/aicd.yml` (else the release's own aicd.yml). It is streamed to a
temporary file, refused beyond the server's `deploy_max_release_bytes` (413), and unpacked member by
member: an absolute name, `..`, a link out of the release or a special file is a 422. The
deployment's commit, ref, pipeline, job and user come from the caller's job token, never from the
request. The deployed service runs on the server's host, unsandboxed, as the server's user: so by
default every environment takes a deploy only from a job of a protected ref (the default branch or
a tag) or from a maintainer. With `AICD_DEPLOY_ANY_REF=1` only protected environments (tier
production: by aicd.yml, by the recorded environment, or by GitLab's guess from its name) keep that
rule, as protected model aliases do.

The answer streams the environment agent's own lines (JSON lines, as `aicd deploy` reads them from
the agent locally): progress events, then the deployment once the rollout finished (or started:
`wait=false`). A client that goes away does not stop the rollout.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from aicd.core.access import Role
from aicd.server.deps import ProjectAccess, get_state, project_access
from aicd.server.state import ServerState

router = APIRouter(tags=["environments"])

Developer = Annotated[ProjectAccess, Depends(project_access(Role.DEVELOPER))]
State = Annotated[ServerState, Depends(get_state)]
Strategy = Literal["recreate", "blue-green", "canary"]
Tier = Literal["production", "staging", "testing", "development", "other"]
UNPACKED_FACTOR = 4  # a release may unpack to this many times the body limit
CHUNK = 1 << 20


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        413, f"release archive larger than {limit} bytes (the server's AICD_DEPLOY_MAX_RELEASE_BYTES)"
    )


@router.post(
    "/projects/{project}/environments/{env:path}/deployments",
    summary="Deploy a release (a tar.gz body) to an environment (developer; protected: maintainer or "
    "a protected ref's job); streams the rollout's events and then the deployment as JSON lines",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-ndjson": {}}, "description": "The agent's answer lines"},
        413: {"description": "Body larger than the server's deploy_max_release_bytes"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def deploy_release(
    access: Developer,
    state: State,
    request: Request,
    env: Annotated[str, PathParam(max_length=100)],
    strategy: Strategy | None = None,
    step: Annotated[list[str] | None, Query(max_length=50)] = None,
    tier: Tier | None = None,
    model_version: Annotated[str | None, Query(max_length=100)] = None,
    wait: bool = True,
) -> StreamingResponse:
    from aicd.deploy.client import check_env_name

    check_env_name(env)
    steps = tuple(step or ())
    for text in steps:
        if len(text) > 200:
            raise HTTPException(422, "step: at most 200 characters each (e.g. weight=20, pause=30s)")
    limit = state.settings.deploy_max_release_bytes
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    work = Path(tempfile.mkdtemp(prefix="aicd-deploy-"))
    try:
        archive = work / "release.tar.gz"
        size = 0
        with archive.open("wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                out.write(chunk)
        options = {"strategy": strategy, "steps": steps, "tier": tier, "model_version": model_version}
        socket, body = await run_in_threadpool(
            _start, state, access, env, archive, work / "release", options, wait
        )
    finally:
        await run_in_threadpool(shutil.rmtree, work, True)
    meta = body["meta"]
    details = {k: v for k, v in (("strategy", strategy), ("pipeline_id", meta.get("pipeline_id"))) if v}
    await run_in_threadpool(
        state.accounts.audit,
        access.principal.name,
        "environment.deploy",
        project_id=access.project.id,
        target=env,
        details=details,
    )
    return StreamingResponse(_relay(socket, body), media_type="application/x-ndjson")


def _start(
    state: ServerState,
    access: ProjectAccess,
    env: str,
    archive: Path,
    release: Path,
    options: dict[str, Any],
    wait: bool,
) -> tuple[Path, dict[str, Any]]:
    from aicd.core.deploy_release import load_rollout, start_rollout
    from aicd.deploy import client
    from aicd.deploy.archive import CONFIG_MEMBER, extract_release
    from aicd.errors import ConfigError

    limit = state.settings.deploy_max_release_bytes
    extract_release(archive, release, max_bytes=limit * UNPACKED_FACTOR)
    config = release / CONFIG_MEMBER
    if not config.is_file():
        config = release / "aicd.yml"
    if not config.is_file() or config.is_symlink():
        raise ConfigError(
            "the release archive holds no aicd.yml (at .aicd/aicd.yml or at its top): deploying needs "
            "its `service:` section; `aicd deploy` packs it"
        )
    rollout = load_rollout(
        env,
        config,
        display="aicd.yml",
        strategy=options["strategy"],
        steps=options["steps"],
        tier=options["tier"],
    )
    scope = access.project.name
    _check_protected(state, access, env, rollout.plan.tier)
    location = client.Location(state.settings.home, state.settings.database_url, scope)
    meta = _meta(state, access, options["model_version"])
    return start_rollout(location, rollout, release, meta, wait=wait)


def _check_protected(state: ServerState, access: ProjectAccess, env: str, tier: str | None) -> None:
    """A production environment: a maintainer, or a job of a protected ref (PermissionDeniedError)."""
    from aicd.errors import NotFoundError, PermissionDeniedError
    from aicd.pipeline.predefined import guess_tier
    from aicd.store.deployments import DeployStore

    if state.settings.deploy_any_ref:
        tiers = {guess_tier(env), tier}
        with contextlib.suppress(NotFoundError):
            tiers.add(DeployStore(state.database).get_environment(env, scope=access.project.name).tier)
        if "production" not in tiers:
            return
        why = f"environment {env!r} is protected (tier production)"
    else:
        why = (
            f"environment {env!r} is protected: a deployed service runs unsandboxed on the server's host "
            "(an admin may let developers deploy to non-production environments with AICD_DEPLOY_ANY_REF=1)"
        )
    if access.role >= Role.MAINTAINER:
        return
    job = access.principal.job
    if job is not None:
        if job.protected_ref:
            return
        raise PermissionDeniedError(
            f"{why}; a job may deploy to it only in a pipeline of a protected ref "
            "(the default branch or a tag)"
        )
    raise PermissionDeniedError(f"{why}; deploying to it needs the maintainer role")


def _meta(state: ServerState, access: ProjectAccess, model_version: str | None) -> dict[str, Any]:
    """Who and what the deployment is, from the job token (a user's deploy: only who)."""
    job = access.principal.job
    if job is None:
        return {"actor": access.principal.name, "model_version": model_version}
    return {
        "commit_sha": job.commit_sha,
        "ref": job.ref,
        "pipeline_id": str(job.pipeline_id),
        "job_id": str(job.job_id),
        "pipeline_url": None,
        "model_version": model_version,
        "actor": job.user_login or access.principal.name,
        "commit_at": _commit_time(state, access, job.commit_sha),
    }


def _commit_time(state: ServerState, access: ProjectAccess, sha: str) -> float | None:
    """The commit's time from the server's mirror of the project (for DORA's lead time)."""
    from aicd.deploy.client import commit_time
    from aicd.triggers.mirror import mirror_path

    return commit_time(mirror_path(state.settings.home, access.project), sha)


async def _relay(socket: Path, body: dict[str, Any]) -> AsyncIterator[bytes]:
    """The agent's answer lines as they come (an unreachable agent: one error line)."""
    from aicd.deploy.control import arequest, encode_error

    try:
        async for message in arequest(socket, body):
            yield json.dumps(message).encode() + b"\n"
    except OSError as exc:
        error = encode_error(exc)
        yield json.dumps({"ok": False, "error": error}).encode() + b"\n"
