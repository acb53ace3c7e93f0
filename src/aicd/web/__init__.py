"""aicd.web: the web UI, server-rendered pages on the server's FastAPI app (beside /api/v1).

Jinja2 templates, htmx (vendored, no build step) for the live parts, SVG for pictures.
`mount_ui(app)` adds the pages, the static files and the security headers.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def mount_ui(app: FastAPI) -> None:
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
