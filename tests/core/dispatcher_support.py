"""A real server state (no HTTP) around a Dispatcher, with a real git repository as the remote."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from aicd.pipeline.ir import Variable
from aicd.server.app import build_state
from aicd.server.settings import ServerSettings
from aicd.server.state import ServerState
from aicd.store.projects_repo import ProjectRecord
from aicd.store.records import JobRecord, PipelineRecord
from aicd.triggers.mirror import resolve_ref, sync_mirror
from aicd_testing import git, make_repo

T = TypeVar("T")


@dataclass
class Harness:
    state: ServerState
    repo: Path
    project: ProjectRecord

    @classmethod
    def create(cls, tmp_path: Path, url: str, *, concurrency: int = 4) -> Harness:
        home = tmp_path / "home"
        settings = ServerSettings(home=home, database_url=url, concurrency=concurrency, poll=False)
        state = build_state(settings)
        repo = make_repo(tmp_path / "remote", {"README": "hello\n"})
        project = state.projects.create("demo", str(repo), "main", ".gitlab-ci.yml", None, None)
        return cls(state, repo, project)

    def close(self) -> None:
        self.state.database.dispose()

    @property
    def home(self) -> Path:
        return self.state.settings.home

    def with_concurrency(self, n: int) -> None:
        from dataclasses import replace

        self.state.settings = replace(self.state.settings, concurrency=n)

    def commit(self, files: dict[str, str], message: str = "change", *, branch: str = "main") -> str:
        """Commit `files` on `branch` of the remote, fetch it into the mirror; the new sha."""
        if git(self.repo, "rev-parse", "--abbrev-ref", "HEAD") != branch:
            git(self.repo, "checkout", "-q", "-B", branch)
        for name, text in files.items():
            target = self.repo / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        git(self.repo, "add", "-A")
        git(self.repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", message)
        sync_mirror(self.home, self.project)
        return resolve_ref(self.home / "mirrors" / f"{self.project.id}.git", branch)

    def tag(self, name: str) -> str:
        git(self.repo, "tag", name)
        sync_mirror(self.home, self.project)
        return git(self.repo, "rev-parse", "HEAD")

    def run(self, body: Callable[[], Awaitable[T]]) -> T:
        """Start the dispatcher, run `body`, stop it (all in one event loop)."""

        async def main() -> T:
            await self.state.dispatcher.start()
            try:
                return await body()
            finally:
                await self.state.dispatcher.stop()

        return asyncio.run(main())

    async def submit(
        self, sha: str, *, ref: str = "main", variables: Sequence[Variable] = (), source: str = "push"
    ) -> PipelineRecord:
        return await self.state.dispatcher.submit(
            self.project, ref=ref, sha=sha, source=source, variables=variables, actor="tester"
        )

    async def finish(self, pipeline_id: int, timeout: float = 60) -> PipelineRecord:
        await self.state.dispatcher.wait_idle(timeout)
        return self.state.runs.get_pipeline(pipeline_id)

    def jobs(self, pipeline_id: int) -> dict[str, JobRecord]:
        """The latest attempt of each job, by name."""
        return {j.name: j for j in self.state.runs.list_jobs(pipeline_id, include_retried=False)}

    def log(self, job: JobRecord) -> str:
        assert job.log_path, f"job {job.name} has no log"
        return Path(job.log_path).read_text()

    def span(self, job: JobRecord) -> tuple[float, float]:
        """When a job that ran :data:`SPAN_SCRIPT` started and ended its sleep, from its log (jobs
        are sandboxed: they cannot leave marks in the test's folders)."""
        stamps = dict(re.findall(r"^(start|end) (\d+\.\d+)$", self.log(job), re.M))
        return float(stamps["start"]), float(stamps["end"])


# a job whose span :meth:`Harness.span` reads from its log
SPAN_SCRIPT = 'echo "start $(date +%s.%N)"; sleep 0.6; echo "end $(date +%s.%N)"'
