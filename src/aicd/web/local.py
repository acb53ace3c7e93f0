"""The UI of a local home (`aicd ui`): what `aicd run`, `aicd deploy` and `aicd model` wrote in a
`.aicd/` folder, served as `mlflow ui` serves a local tracking store.

There are no accounts in a local home: the person at this machine is signed in as the local user
(an admin of what the home holds) by opening the address `aicd ui` prints, which carries a random
key made at each launch (only its SHA-256 is kept). Another local user, or a web page in the same
browser, does not know it. Every request must name the bound address in its Host header (an IP
address or `localhost`, with the port): a DNS-rebinding page, whose Host is its own domain, is
refused. Pipelines are read-only here (`aicd run` runs them, not this process); the environments'
promote, abort and rollback go to their agents as `aicd promote|abort|rollback` send them. The
API, admin pages and token sign-in are not served.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from aicd.core.access import Principal
from aicd.core.dispatcher import Dispatcher
from aicd.core.run_owner import run_is_live
from aicd.errors import ConfigError

OPEN_PATH = "/local/open"  # ?key=<the launch key>: opens a session as the local user
LOCAL_SESSION = "local"  # WebSession.token_hash of a local session (no API token behind it)
_ACTIONS = re.compile(r"^/projects/[^/]+/environments/.+/(promote|abort|rollback)$")
_REFUSED = ("/api/", "/api", "/metrics", "/admin", "/signin")


@dataclass(frozen=True)
class LocalUI:
    """What a local UI's app knows: the launch key's SHA-256, who the local user is, the port."""

    key_hash: str
    principal: Principal
    port: int

    def accepts_key(self, key: str | None) -> bool:
        given = hashlib.sha256((key or "").encode("utf-8", "replace")).hexdigest()
        return bool(key) and hmac.compare_digest(given, self.key_hash)

    def accepts_host(self, host: str | None) -> bool:
        """`Host: <IP address or localhost>:<the port>`; a name (a rebinding page's) is refused."""
        if not host:
            return False
        name, sep, port = host.rpartition(":")
        if not sep or port != str(self.port):
            return False
        name = name.removeprefix("[").removesuffix("]")
        if name.lower() == "localhost":
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True


class LocalRuns(Dispatcher):
    """The dispatcher of a local UI: never started (it runs nothing); a pipeline is active while
    the `aicd run` process that runs it lives, so its page and its jobs' logs follow it live."""

    def is_active(self, pipeline_id: int) -> bool:
        return run_is_live(self.state.settings.home, pipeline_id)


def new_launch(port: int) -> tuple[LocalUI, str]:
    """A LocalUI for a server listening on `port`, and its key (for the address printed, only)."""
    key = secrets.token_urlsafe(32)
    principal = Principal(user_id=0, name=_login(), is_admin=True)
    return LocalUI(hashlib.sha256(key.encode()).hexdigest(), principal, port), key


def _login() -> str:
    try:
        return getpass.getuser() or "local"
    except (KeyError, OSError):
        return "local"


def check_home(home: Path) -> None:
    """A local home must exist already (the UI shows it; it does not make one)."""
    if not (home / "aicd.db").is_file():
        raise ConfigError(
            f"{home} holds no aicd history (no aicd.db): run `aicd run` in a project first, "
            "or give the home with --home (or AICD_HOME)"
        )


class LocalGuard:
    """Pure ASGI middleware of a local UI: the Host check, then what a local home does not serve."""

    def __init__(self, app: ASGIApp, local: LocalUI) -> None:
        self.app = app
        self.local = local

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        response: Response | None = None
        path = str(scope.get("path", ""))
        if not self.local.accepts_host(host):
            response = PlainTextResponse(
                "this is aicd ui: open it at the address it printed (http://127.0.0.1:<port>/...)",
                status_code=421,
            )
        elif path == "/signin":
            response = PlainTextResponse(
                "aicd ui has no sign-in: open the address `aicd ui` printed (it holds this launch's key)",
                status_code=401,
            )
        elif path.startswith(_REFUSED):
            response = PlainTextResponse("not served by aicd ui (a local home has no API nor accounts)", 404)
        elif scope.get("method") == "POST" and path != "/signout" and not _ACTIONS.match(path):
            response = PlainTextResponse(
                "a local home's pipelines are run with `aicd run` in the project, not from this page",
                status_code=403,
            )
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)


def open_response(local: LocalUI, key: str | None, session_id: str | None, https: bool) -> Response:
    """The answer to OPEN_PATH: with the right key and a new session id, the cookie and "/"."""
    if session_id is None or not local.accepts_key(key):
        return PlainTextResponse(
            "this address's key is not this launch's: open the address `aicd ui` printed last",
            status_code=403,
        )
    from aicd.web.sessions import COOKIE

    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, session_id, httponly=True, samesite="lax", secure=https, path="/")
    return response
