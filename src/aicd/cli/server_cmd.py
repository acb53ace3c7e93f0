"""`aicd server`: the HTTP API, the dispatcher and the poller in one process (uvicorn, one event loop)."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
from typing import Any

import click

from aicd.errors import AicdError, ConfigError

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@click.command("server")
@click.option("--host", default=None, help="Address to listen on (env AICD_HOST; default 127.0.0.1).")
@click.option(
    "--port", type=int, default=None, help="Port to listen on (env AICD_PORT; default 8080; 0: a free one)."
)
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="Where mirrors, runs, objects and keys live (env AICD_HOME; default ~/.aicd).",
)
@click.option(
    "--database-url",
    default=None,
    help="SQLAlchemy URL (env AICD_DATABASE_URL; default sqlite:///HOME/aicd.db).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=None,
    help="Jobs running at once across all pipelines (env AICD_CONCURRENCY; default: CPU count).",
)
@click.option("--no-poll", is_flag=True, help="Do not poll repositories (webhooks and the API still work).")
@click.option(
    "--no-environments",
    is_flag=True,
    help="Do not monitor the environments nor start their agents again at start (deployments still work).",
)
@click.option(
    "--unsafe-no-sandbox",
    is_flag=True,
    help="Run jobs without the sandbox, as the server's user, able to read its keys and database "
    "(env AICD_UNSAFE_NO_SANDBOX=1). Only for a server whose every pusher is trusted.",
)
@click.option(
    "--allowed-repo-root",
    "allowed_repo_roots",
    multiple=True,
    type=click.Path(file_okay=False),
    help="A folder whose Git repositories admins may add as projects by path or file:// "
    "(repeatable; env AICD_ALLOWED_REPO_ROOTS, ':'-separated). Default: none.",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="warning", show_default=True)
def server(
    host: str | None,
    port: int | None,
    home: str | None,
    database_url: str | None,
    concurrency: int | None,
    no_poll: bool,
    no_environments: bool,
    unsafe_no_sandbox: bool,
    allowed_repo_roots: tuple[str, ...],
    log_level: str,
) -> None:
    """Serve the REST API (/api/v1), run pipelines on pushes, keep the history."""
    from aicd.server.settings import ServerSettings

    settings = ServerSettings.load(
        home=home,
        database_url=database_url,
        host=host,
        port=port,
        concurrency=concurrency,
        poll=False if no_poll else None,
        environments=False if no_environments else None,
        unsafe_no_sandbox=True if unsafe_no_sandbox else None,
        allowed_repo_roots=allowed_repo_roots or None,
    )
    # Unsandboxed jobs (and `aicd model` inside them) see the same home and database as the
    # server; the sandbox never passes these on.
    os.environ["AICD_HOME"] = str(settings.home)
    os.environ["AICD_DATABASE_URL"] = settings.database_url
    serve(settings, log_level=log_level)


def serve(settings: Any, *, log_level: str = "warning") -> None:
    """Listen, then run the app until stopped; settings.local_ui: `aicd ui` (the launch key's address)."""
    import uvicorn

    from aicd.server.app import create_app

    _configure_logging(log_level)
    sock = _bind(settings.host, settings.port)
    # the port it listens on (--port 0 picks one): CI_SERVER_URL and the URLs built on it say this one
    settings = dataclasses.replace(settings, port=int(sock.getsockname()[1]))
    opening = ""
    if settings.local_ui:
        from aicd.web.local import OPEN_PATH, new_launch

        launch, key = new_launch(settings.port)
        app = create_app(settings, launch)
        opening = f"{OPEN_PATH}?key={key}"
    else:
        app = create_app(settings)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        # the stock loop, not uvloop (which uvicorn picks when installed, as it is for the router):
        # the server runs the engine and its jobs' subprocesses on the loop its tests run on
        loop="asyncio",
        timeout_graceful_shutdown=10,
        log_config=None,
    )
    uvicorn_server = uvicorn.Server(config)
    logging.getLogger("uvicorn.error").addFilter(_StartupErrorFilter(app))
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    # Printed by the lifespan once the server is ready (tests read the port from it with --port 0).
    app.state.ready_message = f"aicd server listening on http://{shown}:{port} (home {settings.home})"
    if settings.local_ui:
        app.state.ready_message = (
            f"aicd ui: the local home {settings.home}\n"
            f"open http://{shown}:{port}{opening}\n"
            "(this address signs you in; it is valid until aicd ui stops: Ctrl+C)"
        )
    try:
        uvicorn_server.run(sockets=[sock])
    except SystemExit:
        if app.state.startup_error is None:
            raise  # uvicorn's own start-up failure, already logged
    finally:
        sock.close()
    error = app.state.startup_error
    if isinstance(error, AicdError):
        raise error
    if not uvicorn_server.started:
        raise AicdError("the server did not start (see the messages above)")


def _bind(host: str, port: int) -> socket.socket:
    """Listen now, so that a port in use is one clear error before anything else starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: cannot resolve it: {exc.strerror}") from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        why = "the port is in use (another aicd server?)" if exc.errno == 98 else exc.strerror or str(exc)
        raise ConfigError(f"cannot listen on {host}:{port}: {why}; pick another --port") from None
    sock.set_inheritable(False)
    return sock


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("aicd", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler] if name != "uvicorn.error" else []
        logger.setLevel(level.upper())
    logging.getLogger("uvicorn.error").propagate = True
    logging.getLogger("uvicorn.access").disabled = True


class _StartupErrorFilter(logging.Filter):
    """Hide uvicorn's traceback of a start-up failure that is an AicdError: the CLI prints it in one line."""

    def __init__(self, app: Any) -> None:
        super().__init__()
        self._app = app

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(self._app.state, "startup_error", None) is None
