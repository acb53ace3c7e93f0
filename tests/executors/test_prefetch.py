"""LocalExecutor.prefetch: the jobs' Git checkout started before the first job (issue 17).

The first job whose checkout it is takes it; the job sees what it would have seen without it;
a job with other Git settings gets its own; a failure is the job's, as if it had started it;
and closing the executor waits for it and removes what it made.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aicd.executors import local as local_mod
from aicd.executors.local import LocalExecutor
from aicd.pipeline.ir import Variable

from .contract import Runner, Session, git, make_job, make_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project", {"README.md": "committed\n"})


def _variables(project: Path, **extra: str) -> dict[str, str]:
    sha = git(project, "rev-parse", "HEAD")
    return {"CI_COMMIT_SHA": sha, "CI_COMMIT_BRANCH": "main", "CI_COMMIT_REF_NAME": "main", **extra}


def _session(project: Path, tmp_path: Path, body: object) -> object:
    runner = Runner(lambda p, h: LocalExecutor(p, h), project, project / ".aicd", tmp_path / "run")
    return runner.session(body)  # type: ignore[arg-type]


def test_the_first_job_takes_the_prefetched_checkout(project: Path, tmp_path: Path) -> None:
    values = _variables(project)

    async def body(s: Session) -> tuple[list[str], int, int]:
        executor = s.executor
        assert isinstance(executor, LocalExecutor)
        executor.prefetch(values)
        assert len(executor._prefetched) == 1
        variables = [Variable(k, v) for k, v in values.items()]
        ran = await s.run(make_job("git rev-parse HEAD; cat README.md", name="a"), variables=variables)
        again = await s.run(make_job("git status --porcelain | wc -l", name="b"), variables=variables)
        assert ran.outcome.status == again.outcome.status == "success"
        return ran.out, len(executor._templates), len(executor._prefetched)

    out, templates, pending = _session(project, tmp_path, body)  # type: ignore[misc]
    assert out == [values["CI_COMMIT_SHA"], "committed"]
    assert (templates, pending) == (1, 0)


def test_other_git_settings_get_their_own_checkout(project: Path, tmp_path: Path) -> None:
    values = _variables(project)

    async def body(s: Session) -> tuple[str, tuple[int, int]]:
        executor = s.executor
        assert isinstance(executor, LocalExecutor)
        executor.prefetch(values)
        variables = [Variable(k, v) for k, v in {**values, "GIT_DEPTH": "1"}.items()]
        ran = await s.run(make_job("git rev-parse HEAD", name="a"), variables=variables)
        return ran.out[0], (len(executor._templates), len(executor._prefetched))

    head, counts = _session(project, tmp_path, body)  # type: ignore[misc]
    assert head == values["CI_COMMIT_SHA"]
    assert counts == (1, 1)  # the job's own, and the prefetched one kept for a job with its settings


def test_a_failed_prefetch_is_the_jobs_failure(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def broken(self: LocalExecutor, sha: str, ref: object, settings: object) -> object:
        calls.append(sha)
        raise OSError("disk full")

    monkeypatch.setattr(local_mod.LocalExecutor, "_make_checkout", broken)
    values = _variables(project)

    async def body(s: Session) -> str:
        executor = s.executor
        assert isinstance(executor, LocalExecutor)
        executor.prefetch(values)
        await asyncio.sleep(0)
        variables = [Variable(k, v) for k, v in values.items()]
        with pytest.raises(local_mod.ExecutorError) as caught:
            await s.start(make_job("true", name="a"), variables=variables)
        return str(caught.value)

    message = _session(project, tmp_path, body)
    assert message == f"cannot check out {values['CI_COMMIT_SHA'][:12]} of {project}: disk full"
    assert len(calls) == 1  # the job took the prefetch's result, it did not check out again


def test_close_waits_for_the_prefetch_and_removes_it(project: Path, tmp_path: Path) -> None:
    async def body(s: Session) -> Path | None:
        executor = s.executor
        assert isinstance(executor, LocalExecutor)
        executor.prefetch(_variables(project))
        await executor.close()
        assert not executor._prefetched
        return executor._snapshot_dir

    snapshot_dir = _session(project, tmp_path, body)
    assert isinstance(snapshot_dir, Path) and not snapshot_dir.exists()


def test_no_prefetch_without_a_commit_or_a_checkout(project: Path, tmp_path: Path) -> None:
    async def body(s: Session) -> int:
        executor = s.executor
        assert isinstance(executor, LocalExecutor)
        executor.prefetch({"CI_COMMIT_SHA": "0" * 40})
        executor.prefetch({**_variables(project), "GIT_STRATEGY": "none"})
        return len(executor._prefetched)

    assert _session(project, tmp_path, body) == 0
