"""create_app(settings): the FastAPI application of `aicd server`.

The lifespan connects to the database and migrates it, builds the stores, the
SecretBox, the Dispatcher (which recovers pipelines a crash left running) and
the Poller, and bootstraps the first admin. Routers are the modules listed in
aicd.server.routes.ROUTER_MODULES that exist, each exposing `router`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from fastapi import APIRouter, FastAPI, Response
from fastapi.concurrency import run_in_threadpool

from aicd import __version__
from aicd.core.access import hash_token, new_token
from aicd.errors import AicdError, ConfigError
from aicd.server import errors
from aicd.server.inputs import RejectBadText
from aicd.server.routes import ROUTER_MODULES
from aicd.server.settings import ServerSettings
from aicd.server.state import ServerState

if TYPE_CHECKING:
    from aicd.web.local import LocalUI

API_PREFIX = "/api/v1"
ADMIN_NAME = "admin"
log = logging.getLogger("aicd.server")


def create_app(settings: ServerSettings, local: LocalUI | None = None) -> FastAPI:
    """The server's app; with `local` (and settings.local_ui), the UI of a local home (`aicd ui`)."""
    app = FastAPI(
        title="aicd",
        version=__version__,
        summary="Continuous delivery for AI services: pipelines, history, access control.",
        lifespan=_lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.startup_error = None
    errors.install(app)
    app.add_middleware(RejectBadText)
    for router in load_routers():
        app.include_router(router, prefix=API_PREFIX)
    _metrics_alias(app)
    from aicd.web import mount_ui  # the web UI at / (aicd.web)

    mount_ui(app, local)
    return app


def _metrics_alias(app: FastAPI) -> None:
    """`/metrics`, where Prometheus looks by default: the same page as /api/v1/metrics (same token)."""
    from aicd.server.routes.metrics import prometheus_metrics

    app.add_api_route(
        "/metrics", prometheus_metrics, methods=["GET"], response_class=Response, include_in_schema=False
    )


def load_routers() -> list[APIRouter]:
    """The `router` of every module of aicd.server.routes that exists (helpers add theirs)."""
    routers = []
    for name in ROUTER_MODULES:
        module_name = f"aicd.server.routes.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        router = getattr(module, "router", None)
        if isinstance(router, APIRouter):
            routers.append(router)
    return routers


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ServerSettings = app.state.settings
    try:
        state = await run_in_threadpool(build_state, settings)
    except AicdError as exc:
        app.state.startup_error = exc  # the CLI prints it (one line) after uvicorn stops
        raise
    app.state.aicd = state
    started: list[Any] = []
    try:
        if not settings.local_ui:  # `aicd ui` runs nothing: a local home's pipelines are `aicd run`'s
            await state.dispatcher.start()
            started.append(state.dispatcher)
        if settings.poll:
            await state.poller.start()
            started.append(state.poller)
        if state.monitor is not None:
            await state.monitor.start()
            started.append(state.monitor)
        if settings.environments:
            _restore_environments(state)
    except AicdError as exc:
        app.state.startup_error = exc
        for service in reversed(started):
            await service.stop()
        state.database.dispose()
        raise
    ready = getattr(app.state, "ready_message", None)
    if ready:
        print(ready, file=sys.stderr, flush=True)
    try:
        yield
    finally:
        for service in reversed(started):
            try:
                await service.stop()
            except Exception:
                log.exception("error while stopping %s", type(service).__name__)
        state.database.dispose()


def _restore_environments(state: ServerState) -> None:
    """After a reboot: start the agents of the environments that were serving (in the background)."""
    from aicd.deploy.restore import restore_agents
    from aicd.store.deployments import DeployStore

    settings = state.settings
    store = DeployStore(state.database)
    asyncio.get_running_loop().run_in_executor(
        None, restore_agents, store, settings.home, settings.database_url
    )


def build_state(settings: ServerSettings) -> ServerState:
    """Connect, migrate, open the stores, bootstrap the admin; Dispatcher and Poller not started."""
    from aicd.core.dispatcher import Dispatcher
    from aicd.core.secrets import SecretBox
    from aicd.store.accounts import AccountStore
    from aicd.store.db import connect
    from aicd.store.migrate import ensure_current
    from aicd.store.projects_repo import ProjectStore
    from aicd.store.repository import RunStore
    from aicd.triggers.poller import Poller

    try:
        settings.home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the aicd home {settings.home}: {exc}") from None
    secrets = SecretBox.load(settings.home, settings.secret_key)
    database = connect(settings.database_url)
    try:
        ensure_current(database)
        accounts = AccountStore(database)
        state = ServerState(
            settings=settings,
            database=database,
            runs=RunStore(database),
            accounts=accounts,
            projects=ProjectStore(database, local=settings.local_ui),
            secrets=secrets,
            dispatcher=cast(Dispatcher, None),
            poller=cast(Poller, None),
        )
        if settings.local_ui:  # `aicd ui`: follows the local home's `aicd run` processes, runs nothing
            from aicd.web.local import LocalRuns

            state.dispatcher = LocalRuns(state)
        else:
            state.dispatcher = Dispatcher(state)
        state.poller = Poller(state)
        if settings.environments:
            from aicd.reliability.monitor import server_monitor

            state.monitor = server_monitor(database, home=settings.home, database_url=settings.database_url)
        if not settings.local_ui:
            bootstrap_admin(state)
    except BaseException:
        database.dispose()
        raise
    return state


def bootstrap_admin(state: ServerState) -> Path | None:
    """With no users at all: create "admin" and a token, written to home/admin-token (0600)."""
    accounts = state.accounts
    if accounts.count_users() > 0:
        return None
    path = state.settings.admin_token_path
    token = new_token()
    user = accounts.create_user(ADMIN_NAME, is_admin=True)
    accounts.create_token(user.id, "bootstrap", hash_token(token))
    write_private(path, token + "\n")
    accounts.audit("system", "user.bootstrap", target=ADMIN_NAME)
    log.warning("admin token written to %s", path)
    return path


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600), replacing any older one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from None
