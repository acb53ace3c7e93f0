"""Resource groups: at most one running job per group (GitLab's `resource_group`).

A `ResourceGroups` is the arbiter of the groups held by running jobs. Each run
makes its own unless `RunOptions.resource_groups` gives one to share: the
server gives every run of a project the same one, so jobs of one group never
overlap across that project's pipelines, as in GitLab.

Runs ask without waiting (`try_acquire`, from the engine's coordinator); a run
refused a group has its `wake` event set when the group is released, and asks
again. Which waiting job gets a released group is not ordered (GitLab's
`process_mode: unordered`, its default).
"""

from __future__ import annotations

import asyncio


class ResourceGroups:
    """The resource groups held now; shared by the runs given the same instance (one event loop)."""

    def __init__(self) -> None:
        self._held: set[str] = set()
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def try_acquire(self, name: str, wake: asyncio.Event) -> bool:
        """Take `name` if no job holds it; else False, and `wake` is set when it is released."""
        if name in self._held:
            self._waiters.setdefault(name, set()).add(wake)
            return False
        self._held.add(name)
        return True

    def release(self, name: str) -> None:
        """Give `name` back (call once per successful try_acquire) and wake the runs waiting for it."""
        self._held.discard(name)
        for wake in self._waiters.pop(name, ()):
            wake.set()

    def held(self) -> frozenset[str]:
        return frozenset(self._held)


__all__ = ["ResourceGroups"]
