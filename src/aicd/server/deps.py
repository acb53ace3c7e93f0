"""FastAPI dependencies every router uses: the state, the caller, their role on a project."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from aicd.core.access import Principal, Role, hash_token
from aicd.errors import AuthError, NotFoundError, PermissionDeniedError
from aicd.server.state import ServerState
from aicd.store.records import MAX_ID, parse_id

if TYPE_CHECKING:
    from aicd.store.projects_repo import ProjectRecord

# Declared as security schemes so that the OpenAPI document says how to authenticate.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API token>")
_private_token = APIKeyHeader(name="PRIVATE-TOKEN", auto_error=False, description="GitLab-style token header")

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
) -> Principal:
    """The caller, from "Authorization: Bearer <token>" or "PRIVATE-TOKEN: <token>" (AuthError: 401)."""
    token = bearer.credentials.strip() if bearer is not None else (private_token or "").strip()
    if not token:
        if request.headers.get("authorization"):
            raise AuthError("unsupported Authorization header: send 'Authorization: Bearer <token>'")
        raise AuthError("authentication required: send 'Authorization: Bearer <token>'")
    state = get_state(request)
    user = await run_in_threadpool(state.accounts.user_for_token_hash, hash_token(token))
    if user is None:
        raise AuthError("invalid, expired or revoked token")
    return Principal(user_id=user.id, name=user.name, is_admin=user.is_admin)


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
