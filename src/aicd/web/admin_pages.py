"""Admin pages (admins only): users and their roles, tokens (a new token is shown once, on the
answer to the form that made it), the audit log. Every action is the API's own route function
(aicd.server.routes.users, .audit): the same checks and the same audit entries."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from aicd.core.access import Principal, Role
from aicd.errors import ConfigError
from aicd.server.deps import IdPath, get_state, require_admin
from aicd.server.routes import audit as api_audit
from aicd.server.routes import users as api_users
from aicd.server.state import ServerState
from aicd.web.auth import CheckedUser, User, WebUser, access_to
from aicd.web.pages import WebRoute, page

router = APIRouter(route_class=WebRoute, include_in_schema=False)

AUDIT_LIMIT = 200
ROLES = tuple(role.label for role in Role)


async def _admin(user: WebUser) -> Principal:
    """PermissionDeniedError (403) for anyone but an admin: the API's own check."""
    return await require_admin(user.principal)


def _admin_context(state: ServerState, admin: Principal, project: str | None) -> dict[str, Any]:
    users = api_users.list_users(state, admin)
    projects = {p.id: p.name for p in state.projects.list()}
    roles = {
        u.id: sorted(
            (projects.get(pid, str(pid)), role) for pid, role in state.accounts.roles_of(u.id).items()
        )
        for u in users
    }
    audit = api_audit.all_audit(state, admin, project or None, AUDIT_LIMIT)
    return {
        "users": users,
        "roles": roles,
        "projects": sorted(projects.values()),
        "project_names": projects,
        "audit": audit,
        "audit_project": project or "",
    }


@router.get("/admin")
async def admin_page(
    request: Request, user: User, project: Annotated[str, Query(max_length=200)] = ""
) -> Response:
    admin = await _admin(user)
    context = await run_in_threadpool(_admin_context, get_state(request), admin, project.strip())
    return page(request, "admin.html", user, **context)


@router.post("/admin/users")
async def create_user(
    request: Request,
    user: CheckedUser,
    name: Annotated[str, Form(max_length=200)] = "",
    is_admin: Annotated[bool, Form()] = False,
) -> Response:
    admin = await _admin(user)
    try:
        body = api_users.UserIn(name=name.strip(), is_admin=is_admin)
    except ValidationError:
        raise ConfigError(
            "a user name is 1-200 letters, digits, '_', '.', '@' or '-', starting with a letter or digit"
        ) from None
    created = await run_in_threadpool(api_users.create_user, body, get_state(request), admin)
    return RedirectResponse(f"/admin/users/{created.id}", status_code=303)


def _user_context(state: ServerState, admin: Principal, user_id: int) -> dict[str, Any]:
    account = state.accounts.get_user(user_id)
    projects = {p.id: p.name for p in state.projects.list()}
    roles = sorted(
        (projects.get(pid, str(pid)), role) for pid, role in state.accounts.roles_of(user_id).items()
    )
    return {
        "account": account,
        "tokens": api_users.list_tokens(user_id, state, admin),
        "roles": roles,
        "projects": sorted(projects.values()),
        "role_names": ROLES,
    }


async def _user_page(
    request: Request, user: WebUser, user_id: int, status: int = 200, created: Any = None
) -> Response:
    admin = await _admin(user)
    context = await run_in_threadpool(_user_context, get_state(request), admin, user_id)
    return page(request, "admin_user.html", user, status, created=created, **context)


@router.get("/admin/users/{user_id}")
async def user_page(request: Request, user_id: IdPath, user: User) -> Response:
    return await _user_page(request, user, user_id)


@router.post("/admin/users/{user_id}/tokens")
async def create_token(
    request: Request,
    user_id: IdPath,
    user: CheckedUser,
    name: Annotated[str, Form(max_length=200)] = "token",
    days: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """The new token is in this answer only (not a redirect: nothing else ever shows it)."""
    admin = await _admin(user)
    lifetime = None
    if days.strip():
        if not days.strip().isdigit() or not 1 <= int(days) <= 3660:
            raise ConfigError("expires in: a whole number of days from 1 to 3660, or empty for never")
        lifetime = int(days) * 86400.0
    body = api_users.TokenIn(name=name.strip() or "token", expires_in_s=lifetime)
    created = await run_in_threadpool(api_users.create_token, user_id, get_state(request), admin, body)
    return await _user_page(request, user, user_id, 201, created=created)


@router.post("/admin/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: IdPath, user: CheckedUser) -> Response:
    admin = await _admin(user)
    revoked = await run_in_threadpool(api_users.revoke_token, token_id, get_state(request), admin)
    return RedirectResponse(f"/admin/users/{revoked.user_id}", status_code=303)


@router.post("/admin/users/{user_id}/roles")
async def set_role(
    request: Request,
    user_id: IdPath,
    user: CheckedUser,
    project: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    await _admin(user)
    access = await access_to(request, project, user, Role.MAINTAINER)
    state = get_state(request)
    if role == "none":
        await run_in_threadpool(api_users.remove_member, user_id, access, state)
    elif role in ROLES:
        body = api_users.MemberIn(role=role)  # type: ignore[arg-type]
        await run_in_threadpool(api_users.set_member, user_id, body, access, state)
    else:
        raise ConfigError(f"role {role!r}: one of {', '.join(ROLES)}, or none")
    return RedirectResponse(f"/admin/users/{user_id}", status_code=303)
