"""FastAPI dependencies every router uses: the state, the caller, their role on a project."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from aicd.core.access import JOB_TOKEN_PREFIX, Principal, Role, hash_token
from aicd.errors import AuthError, NotFoundError, PermissionDeniedError
from aicd.server.state import ServerState
from aicd.store.job_tokens import JobTokenStore
from aicd.store.records import MAX_ID, parse_id

if TYPE_CHECKING:
    from aicd.store.projects_repo import ProjectRecord

# Declared as security schemes so that the OpenAPI document says how to authenticate.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API token>")
_private_token = APIKeyHeader(name="PRIVATE-TOKEN", auto_error=False, description="GitLab-style token header")
_job_token = APIKeyHeader(
    name="JOB-TOKEN", auto_error=False, description="A running job's CI_JOB_TOKEN (GitLab's header)"
)

# What a job token may do on its own project (and nothing on others).
JOB_ROLE = Role.DEVELOPER

# A numeric id in a path (user, token, pipeline, job): beyond the database's 64-bit ids is a 422.
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]


def get_state(request: Request) -> ServerState:
    state = request.app.state.aicd
    assert isinstance(state, ServerState)
    return state


async def get_principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
    private_token: Annotated[str | None, Depends(_private_token)] = None,
    job_token: Annotated[str | None, Depends(_job_token)] = None,
) -> Principal:
    """The caller, from "Authorization: Bearer <token>", "PRIVATE-TOKEN: <token>" or a running job's
    "JOB-TOKEN: <CI_JOB_TOKEN>" (AuthError: 401)."""
    if bearer is not None:
        token = bearer.credentials.strip()
    else:
        token = (private_token or job_token or "").strip()
    if not token:
        if request.headers.get("authorization"):
            raise AuthError("unsupported Authorization header: send 'Authorization: Bearer <token>'")
        raise AuthError("authentication required: send 'Authorization: Bearer <token>'")
    state = get_state(request)
    if token.startswith(JOB_TOKEN_PREFIX):
        scope = await run_in_threadpool(JobTokenStore(state.database).scope_for_hash, hash_token(token))
        if scope is None:
            raise AuthError("invalid or expired job token: a job token is valid only while its job runs")
        return Principal(user_id=0, name=f"job:{scope.job_id}", is_admin=False, job=scope)
    user = await run_in_threadpool(state.accounts.user_for_token_hash, hash_token(token))
    if user is None:
        raise AuthError("invalid, expired or revoked token")
    return Principal(user_id=user.id, name=user.name, is_admin=user.is_admin)


async def get_user_principal(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    """The caller, who must be a user: a job token cannot manage users, tokens or projects (403)."""
    if principal.job is not None:
        raise PermissionDeniedError("a job token cannot do this: it acts only for its job's project")
    return principal


def roles_by_project(state: ServerState, principal: Principal) -> dict[int, Role] | None:
    """The caller's role on each project they have one on (None: an admin, every project).
    A job token: developer on its own project."""
    if principal.is_admin:
        return None
    if principal.job is not None:
        return {principal.job.project_id: JOB_ROLE}
    return {pid: Role.parse(label) for pid, label in state.accounts.roles_of(principal.user_id).items()}


async def require_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if not principal.is_admin:
        raise PermissionDeniedError("this needs an admin")
    return principal


@dataclass(frozen=True)
class ProjectAccess:
    principal: Principal
    project: ProjectRecord
    role: Role  # admins: MAINTAINER


def project_ref(text: str) -> str | int:
    """A project path parameter: a numeric id (ASCII digits, within the ids' range), or a name."""
    number = parse_id(text)
    return text if number is None else number


def project_access(minimum: Role) -> Callable[..., Awaitable[ProjectAccess]]:
    """A dependency: the caller's access to the path's {project}, at least `minimum`.

    Unknown project, or one the caller has no role on: 404 (its existence is not
    revealed); a role below `minimum`: 403. Admins act as maintainers everywhere.
    """

    async def dependency(
        request: Request,
        project: Annotated[str, Path(description="Project name or numeric id")],
        principal: Annotated[Principal, Depends(get_principal)],
    ) -> ProjectAccess:
        state = get_state(request)
        try:
            record = await run_in_threadpool(state.projects.get, project_ref(project))
        except NotFoundError:
            raise NotFoundError(f"no project {project!r}") from None
        if principal.is_admin:
            return ProjectAccess(principal=principal, project=record, role=Role.MAINTAINER)
        if principal.job is not None:
            # a job token: developer on its own project, nothing elsewhere
            if principal.job.project_id != record.id:
                raise NotFoundError(f"no project {project!r}")
            if minimum > JOB_ROLE:
                raise PermissionDeniedError(
                    f"project {record.name!r}: this needs the {minimum.label} role; a job token has "
                    f"{JOB_ROLE.label} rights"
                )
            return ProjectAccess(principal=principal, project=record, role=JOB_ROLE)
        label = await run_in_threadpool(state.accounts.role_of, record.id, principal.user_id)
        if label is None:
            raise NotFoundError(f"no project {project!r}")
        role = Role.parse(label)
        if role < minimum:
            raise PermissionDeniedError(
                f"project {record.name!r}: this needs the {minimum.label} role; you are {role.label}"
            )
        return ProjectAccess(principal=principal, project=record, role=role)

    dependency.__name__ = f"project_access_{minimum.label}"
    return dependency
