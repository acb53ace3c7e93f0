"""The poller: fetches each project that has a poll interval, and runs what moved.

One asyncio task schedules the polls; each poll runs as its own short task
(so a slow remote does not delay the other projects), with git work in
threads. A project's polls never overlap (a lock per project), whether they
come from the schedule or from POST /projects/{project}/poll. The errors of
one project are logged and never stop the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from aicd.errors import AicdError
from aicd.triggers import mirror

if TYPE_CHECKING:
    from aicd.store.accounts import AccountStore
    from aicd.store.projects_repo import ProjectRecord, ProjectStore
    from aicd.store.records import PipelineRecord

log = logging.getLogger("aicd.poller")

ACTOR = "poller"
ZERO_SHA = "0" * 40  # CI_COMMIT_BEFORE_SHA of a new branch or tag
SOURCE = "push"  # GitLab's CI_PIPELINE_SOURCE for branch and tag pushes
MAX_SLEEP_S = 5.0  # how soon new projects and changed intervals are noticed without wake()


def short_ref(ref: str) -> str:
    """ "refs/heads/main" -> "main", "refs/tags/v1" -> "v1"."""
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


class PipelineSubmitter(Protocol):
    """Who runs what a poll finds (the server's `core.dispatcher.Dispatcher`)."""

    async def submit(
        self,
        project: ProjectRecord,
        *,
        ref: str,
        sha: str,
        source: str,
        actor: str,
        before_sha: str | None = None,
    ) -> PipelineRecord: ...


class _HomeSettings(Protocol):
    @property
    def home(self) -> Path: ...


class PollerDeps(Protocol):
    """What the poller uses from its host (the server's `ServerState` satisfies it): no server import."""

    @property
    def settings(self) -> _HomeSettings: ...

    @property
    def projects(self) -> ProjectStore: ...

    @property
    def accounts(self) -> AccountStore: ...

    @property
    def dispatcher(self) -> PipelineSubmitter: ...


def changed_refs(seen: dict[str, str], now: dict[str, str]) -> list[tuple[str, str]]:
    """Branches and tags that are new or moved: (full ref, sha), branches first, by name."""
    moved = [(ref, sha) for ref, sha in now.items() if seen.get(ref) != sha]
    return sorted(moved, key=lambda item: (not item[0].startswith("refs/heads/"), item[0]))


class Poller:
    def __init__(self, state: PollerDeps) -> None:
        self.state = state
        self._task: asyncio.Task[None] | None = None
        self._polls: dict[int, asyncio.Task[object]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._next_due: dict[int, float] = {}
        self._wake = asyncio.Event()
        self.last_error: dict[int, str] = {}  # project id -> message of its last failed poll

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="aicd-poller")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._polls.values()) if t is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._polls.clear()

    def wake(self) -> None:
        """Re-read the projects now (one was added, changed or removed)."""
        self._wake.set()

    def lock(self, project_id: int) -> asyncio.Lock:
        """The project's lock: held by its polls, and by webhooks while they fetch and submit."""
        return self._locks.setdefault(project_id, asyncio.Lock())

    async def poll_project(self, project: ProjectRecord) -> list[PipelineRecord]:
        """Fetch the project and submit a pipeline for each new or moved branch and tag.

        The first poll of a project (no refs recorded yet) records every ref and
        runs the default branch's head once. GitError when the fetch fails.
        """
        async with self.lock(project.id):
            try:
                created = await self._poll(project)
            except AicdError as exc:
                self.last_error[project.id] = str(exc)
                raise
            self.last_error.pop(project.id, None)
            return created

    async def _poll(self, project: ProjectRecord) -> list[PipelineRecord]:
        store = self.state.projects
        path = await asyncio.to_thread(mirror.sync_mirror, self.state.settings.home, project)
        now = await asyncio.to_thread(mirror.list_refs, path)
        seen = await asyncio.to_thread(store.get_refs, project.id)
        if seen:
            to_run = changed_refs(seen, now)
        else:
            head = f"refs/heads/{project.default_branch}"
            to_run = [(head, now[head])] if head in now else []
        updates: dict[str, str | None] = {ref: None for ref in seen if ref not in now}
        if not seen:
            updates.update(now)
        created: list[PipelineRecord] = []
        try:
            for ref, sha in to_run:
                # GITLAB_USER_*: the commit's author (a poll does not know who pushed)
                pipeline = await self.state.dispatcher.submit(
                    project,
                    ref=short_ref(ref),
                    sha=sha,
                    source=SOURCE,
                    actor=ACTOR,
                    before_sha=seen.get(ref) or ZERO_SHA,
                )
                created.append(pipeline)
                updates[ref] = sha
        finally:
            await asyncio.to_thread(self._record, project, updates, created)
        if created:
            log.info(
                "poll of %s: %d pipeline(s) for %s",
                project.name,
                len(created),
                ", ".join(short_ref(ref) for ref, _ in to_run),
            )
        return created

    def _record(
        self, project: ProjectRecord, updates: dict[str, str | None], created: list[PipelineRecord]
    ) -> None:
        """The refs seen, and an audit entry per pipeline started."""
        self.state.projects.set_refs(project.id, updates)
        for pipeline in created:
            details = {"sha": pipeline.sha, "pipeline_id": pipeline.id}
            self.state.accounts.audit(
                ACTOR, "poll.push", project_id=project.id, target=pipeline.ref, details=details
            )

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                sleep_s = await self._schedule()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be away for a moment: try again later
                log.warning("poller: cannot list projects: %s", exc)
                sleep_s = MAX_SLEEP_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=sleep_s)

    async def _schedule(self) -> float:
        """Start the polls that are due; seconds until the next one (at most MAX_SLEEP_S)."""
        projects = await asyncio.to_thread(self.state.projects.list)
        now = time.monotonic()
        sleep_s = MAX_SLEEP_S
        polled = {p.id for p in projects if p.poll_interval_s}
        for gone in set(self._next_due) - polled:
            del self._next_due[gone]
        for project in projects:
            interval = project.poll_interval_s
            if not interval:
                continue
            due = self._next_due.setdefault(project.id, now)
            due = min(due, now + interval)  # the interval was shortened
            if due <= now:
                due = now + interval
                if project.id not in self._polls:  # else the last poll is still running: skip a beat
                    task = asyncio.create_task(self._poll_logged(project), name=f"aicd-poll-{project.name}")
                    self._polls[project.id] = task
            self._next_due[project.id] = due
            sleep_s = min(sleep_s, max(due - now, 0.05))
        return sleep_s

    async def _poll_logged(self, project: ProjectRecord) -> object:
        try:
            return await self.poll_project(project)
        except asyncio.CancelledError:
            raise
        except AicdError as exc:
            log.warning("poll of project %s failed: %s", project.name, exc)
        except Exception:
            log.exception("poll of project %s failed", project.name)
        finally:
            self._polls.pop(project.id, None)
        return None
