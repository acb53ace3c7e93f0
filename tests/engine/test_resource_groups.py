"""Resource groups shared by several runs (what the server gives each project), real bash jobs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aicd.engine import PipelineResult, ResourceGroups, RunOptions, run_pipeline
from aicd.pipeline.ir import Pipeline

from .bash_executor import BashExecutor
from .support import STAGES, Recorder, job, max_overlap, span, stamp


def _two_runs(tmp_path: Path, groups: ResourceGroups | None) -> list[PipelineResult]:
    """Two pipelines at once, each with one job of group "prod" (and one free job)."""

    async def one(n: int) -> PipelineResult:
        pipeline = Pipeline(
            stages=STAGES,
            jobs=(
                job("deploy", stamp(tmp_path, f"deploy{n}", 0.4), resource_group="prod"),
                job("free", stamp(tmp_path, f"free{n}", 0.05)),  # the waiting run has nothing running
            ),
        )
        work = tmp_path / f"work{n}"
        work.mkdir()
        executor = BashExecutor(work)
        try:
            return await run_pipeline(
                pipeline,
                executor,
                Recorder(next_id=100 * n),
                pipeline_id=n,
                run_dir=tmp_path / f"run{n}",
                options=RunOptions(concurrency=4, resource_groups=groups),
            )
        finally:
            await executor.close()

    async def main() -> list[PipelineResult]:
        return list(await asyncio.gather(one(1), one(2)))

    return asyncio.run(main())


def test_a_shared_arbiter_keeps_one_job_per_group_across_runs(tmp_path: Path) -> None:
    groups = ResourceGroups()
    results = _two_runs(tmp_path, groups)
    assert [r.status for r in results] == ["success", "success"]
    assert max_overlap([span(tmp_path, "deploy1"), span(tmp_path, "deploy2")]) == 1
    # jobs without a group are not held back
    first_deploy_end = min(span(tmp_path, "deploy1")[1], span(tmp_path, "deploy2")[1])
    assert max(span(tmp_path, "free1")[0], span(tmp_path, "free2")[0]) < first_deploy_end
    assert groups.held() == frozenset()


def test_without_one_each_run_has_its_own_groups(tmp_path: Path) -> None:
    results = _two_runs(tmp_path, None)
    assert [r.status for r in results] == ["success", "success"]
    assert max_overlap([span(tmp_path, "deploy1"), span(tmp_path, "deploy2")]) == 2


def test_a_canceled_run_gives_its_group_back(tmp_path: Path) -> None:
    groups = ResourceGroups()
    pipeline = Pipeline(stages=STAGES, jobs=(job("deploy", "sleep 30", resource_group="prod"),))

    async def main() -> str:
        cancel = asyncio.Event()
        asyncio.get_running_loop().call_later(0.5, cancel.set)
        executor = BashExecutor(tmp_path)
        try:
            result = await run_pipeline(
                pipeline,
                executor,
                Recorder(),
                pipeline_id=1,
                run_dir=tmp_path / "run",
                options=RunOptions(concurrency=1, resource_groups=groups),
                cancel=cancel,
            )
        finally:
            await executor.close()
        return result.status

    assert asyncio.run(main()) == "canceled"
    assert groups.held() == frozenset()
