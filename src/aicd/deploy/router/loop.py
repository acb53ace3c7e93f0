"""The event loop the router's processes run on: uvloop where it is installed, else asyncio's own.

The router's data path is protocol callbacks on one event loop (see :mod:`.proxy`); with uvloop
(libuv, in C) the loop and the socket reads and writes cost less CPU per request than asyncio's
selector loop in Python: measured in ``benchmarks/results/router.md``. Nothing in the router depends
on the loop's kind: the same tests pass on both (``tests/deploy/test_router.py``).

``AICD_EVENT_LOOP=asyncio`` keeps the stock loop (for comparison, or to rule the loop out when
chasing a problem); ``uvloop`` insists on uvloop (an error when it is missing); unset or ``auto``:
uvloop when importable.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aicd.errors import ConfigError

T = TypeVar("T")
ENV = "AICD_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")


def loop_factory(choice: str | None = None) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """The loop's name and a factory for it (None: asyncio's default loop).

    ``choice`` defaults to ``$AICD_EVENT_LOOP`` (auto). ConfigError on an unknown choice, or on
    ``uvloop`` when it is not installed."""
    wanted = (choice if choice is not None else os.environ.get(ENV, "")).strip().lower() or "auto"
    if wanted not in CHOICES:
        raise ConfigError(f"{ENV}={wanted!r}: expected one of {', '.join(CHOICES)}")
    if wanted == "asyncio":
        return "asyncio", None
    try:
        import uvloop
    except ImportError:
        if wanted == "uvloop":
            raise ConfigError(
                f"{ENV}=uvloop but uvloop is not installed (pip install uvloop; Linux and macOS only)"
            ) from None
        return "asyncio", None
    return "uvloop", uvloop.new_event_loop


def run(coro: Coroutine[Any, Any, T], choice: str | None = None) -> T:
    """``asyncio.run(coro)`` on the chosen loop (see :func:`loop_factory`)."""
    try:
        _, factory = loop_factory(choice)
    except ConfigError:
        coro.close()
        raise
    if factory is None:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)
