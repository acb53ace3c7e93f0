"""Running aicd's event loop.

On Python 3.11 asyncio's default child watcher starts one thread per child
process (ThreadedChildWatcher); a 200-job pipeline paid ~0.3 s for those
threads. On Linux a pidfd watcher waits for children on the event loop
itself (Python 3.12 does this by default).
"""

from __future__ import annotations

import asyncio
import os
import sys
import warnings
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def _use_pidfd_watcher() -> bool:
    if sys.version_info >= (3, 12) or not sys.platform.startswith("linux"):
        return False
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # kernel without pidfd (Linux < 5.3) or blocked by seccomp
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.get_event_loop_policy().set_child_watcher(asyncio.PidfdChildWatcher())
    return True


def run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` with the best child watcher for this platform.

    The pidfd watcher serves only the loop it was attached to; it is taken away again at the end,
    so that a later loop of the same process (an in-process server in a thread, a test) gets
    asyncio's default watcher instead of one bound to this closed loop."""
    if not _use_pidfd_watcher():
        return asyncio.run(coro)
    try:
        return asyncio.run(coro)
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.get_event_loop_policy().set_child_watcher(None)  # type: ignore[arg-type]
