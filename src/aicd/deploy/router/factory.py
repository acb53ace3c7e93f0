"""The router an environment asked for in aicd.yml (``environments.<env>.router``): aicd's or HAProxy.

    router = make_router(plan.router, host, 0, field_count, env="production", state_dir=state / "router")

Both have the same surface (``start``/``stop``, ``set_backends``, ``weights``, ``in_flight``,
``wait_drained``, ``snapshot``, ``port``, ``url``, assignable ``listen_port``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aicd.deploy.haproxy.config import INSTALL_HINT, find_haproxy
from aicd.deploy.haproxy.router import HAProxyRouter
from aicd.deploy.plan import ROUTERS
from aicd.deploy.router.http import LIMITS, check_limits
from aicd.deploy.router.router import FieldCount, Router
from aicd.errors import ConfigError

AnyRouter = Router | HAProxyRouter


def _number(settings: Mapping[str, Any] | None, key: str) -> float | None:
    value = (settings or {}).get(key)
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None
    )


def make_router(
    kind: str,
    host: str,
    port: int,
    field_count: FieldCount | None = None,
    *,
    env: str | None = None,
    state_dir: Path | None = None,
    binary: str | None = None,
    limits: Mapping[str, int] | None = None,
    feedback: Mapping[str, Any] | None = None,
) -> AnyRouter:
    """A router of ``kind`` ("aicd" or "haproxy") listening on ``host:port`` once started (0: free port).

    ``env`` names the environment in error messages; ``state_dir`` is where haproxy's
    configuration, sockets and map go (a temp dir when None); ``binary`` overrides ``haproxy`` on PATH;
    ``limits``: aicd's router's request head limits (``environments.<env>.router_limits``);
    ``feedback``: ``environments.<env>.feedback`` (its ``window`` and ``max_requests`` bound the join
    of delayed labels; only aicd's router gives request ids and takes labels).
    ConfigError for an unknown kind, or for "haproxy" when it is not installed or too old.
    """
    key = f"environments.{env}.router" if env else "router"
    if kind == "aicd":
        chosen = {name: default for name, (default, _, _) in LIMITS.items()}
        chosen.update(check_limits(limits or {}, key + "_limits"))
        return Router(
            host,
            port,
            field_count=field_count,
            max_head_bytes=chosen["max_head_bytes"],
            max_headers=chosen["max_headers"],
            max_url_bytes=chosen["max_url_bytes"],
            feedback_window=_number(feedback, "window"),
            feedback_max_requests=int(_number(feedback, "max_requests") or 0) or None,
        )
    if kind == "haproxy":
        if find_haproxy(binary) is None:
            raise ConfigError(
                f"{key}: haproxy, but haproxy is not installed: {INSTALL_HINT}; or use router: aicd"
            )
        try:
            return HAProxyRouter(host, port, state_dir=state_dir, binary=binary, field_count=field_count)
        except ConfigError as exc:
            raise ConfigError(f"{key}: haproxy: {str(exc).removeprefix('router: ')}") from None
    raise ConfigError(f"{key}: {kind!r} is not a router; use one of: {', '.join(ROUTERS)}")
