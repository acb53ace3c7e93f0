"""Who the browser is: the session cookie -> a Principal, the CSRF check of every POST, and the
caller's role on a project through the API's own dependency (aicd.server.deps.project_access)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool

from aicd.core.access import Principal, Role
from aicd.errors import AuthError, PermissionDeniedError
from aicd.server.deps import ProjectAccess, get_state, project_access
from aicd.web.sessions import COOKIE, SessionStore, WebSession, same_token

CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class WebUser:
    principal: Principal
    session: WebSession
    local: bool = False  # the local user of `aicd ui` (aicd.web.local): pipelines are read-only

    @property
    def csrf(self) -> str:
        return self.session.csrf


def sessions_of(request: Request) -> SessionStore:
    store = request.app.state.web_sessions
    assert isinstance(store, SessionStore)
    return store


async def current_user(request: Request) -> WebUser:
    """The signed-in person (AuthError: the pages send them to the sign-in form)."""
    sessions = sessions_of(request)
    session_id = request.cookies.get(COOKIE)
    session = sessions.get(session_id)
    if session is None:
        raise AuthError("sign in to see this page")
    local = getattr(request.app.state, "local_ui", None)
    if local is not None:  # `aicd ui`: the session was opened with the launch key, no token behind it
        return WebUser(local.principal, session, local=True)
    state = get_state(request)
    user = await run_in_threadpool(state.accounts.user_for_token_hash, session.token_hash)
    if user is None or user.id != session.user_id:  # the token was revoked or expired since
        sessions.close(session_id)
        raise AuthError("your token is no longer valid: sign in again")
    return WebUser(Principal(user_id=user.id, name=user.name, is_admin=user.is_admin), session)


async def checked_user(request: Request, user: Annotated[WebUser, Depends(current_user)]) -> WebUser:
    """current_user, for a POST: its CSRF token (form field or X-CSRF-Token header) must match."""
    given = request.headers.get(CSRF_HEADER)
    if not given:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not same_token(user.csrf, given):
        raise PermissionDeniedError("this form has expired or did not come from this site: reload the page")
    return user


def may_run(access: ProjectAccess, user: WebUser) -> bool:
    """Whether the pipeline buttons (run, cancel, retry, play) are for this person on this project."""
    return access.role >= Role.DEVELOPER and not user.local and not access.project.local


async def access_to(request: Request, project: str, user: WebUser, minimum: Role) -> ProjectAccess:
    """The API's role check (404 without a role, 403 below `minimum`), for a session's principal."""
    return await project_access(minimum)(request=request, project=project, principal=user.principal)


User = Annotated[WebUser, Depends(current_user)]
CheckedUser = Annotated[WebUser, Depends(checked_user)]
ProjectName = Annotated[str, Path(max_length=200)]
