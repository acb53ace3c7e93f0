"""aicd.web: the web UI, server-rendered pages on the server's FastAPI app (beside /api/v1).

Jinja2 templates, htmx (vendored, no build step) for the live parts, SVG for pictures.
`mount_ui(app)` adds the pages, the static files and the security headers; with a LocalUI
(`aicd ui`, aicd.web.local), the local home's door: its launch address and its guard.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

if TYPE_CHECKING:
    from aicd.web.local import LocalUI

STATIC = Path(__file__).parent / "static"


def mount_ui(app: FastAPI, local: LocalUI | None = None) -> None:
    from aicd.web import admin_pages, env_pages, models_pages, reliability_pages
    from aicd.web.pages import router
    from aicd.web.security import SecurityHeaders
    from aicd.web.sessions import SessionStore

    app.state.web_sessions = SessionStore()
    app.include_router(router)
    for extra in (models_pages.router, env_pages.router, reliability_pages.router, admin_pages.router):
        app.include_router(extra)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(SecurityHeaders)
    app.state.local_ui = local
    if local is not None:
        _mount_local(app, local)


def _mount_local(app: FastAPI, local: LocalUI) -> None:
    from aicd.web.local import LOCAL_SESSION, OPEN_PATH, LocalGuard, open_response

    async def open_local(request: Request, key: str | None = None) -> Response:
        session_id = None
        if local.accepts_key(key):
            session_id, _ = app.state.web_sessions.open(local.principal.user_id, LOCAL_SESSION)
        return open_response(local, key, session_id, request.url.scheme == "https")

    app.add_api_route(OPEN_PATH, open_local, methods=["GET"], include_in_schema=False)
    app.add_middleware(LocalGuard, local=local)  # outermost: the Host check comes first
