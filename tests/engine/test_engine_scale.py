"""The engine at 5,000 jobs: every job runs after what it waits for, and the scheduling work grows
with the number of jobs, not with its square (issue 17).

The executor is an in-memory one that finishes each job at once (no process): what is measured
is the engine's own work. No wall-clock assertion: the work is counted (folds of upstream
statuses, visits of wait lists), and pytest's timeout is the hang guard.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from aicd.engine import RunOptions, run_pipeline
from aicd.engine import scheduler as scheduler_module
from aicd.executors.base import JobOutcome, JobRequest, OutputCallback
from aicd.pipeline.ir import Job, Need, Pipeline

from .support import Recorder

N = 5000
STAGES = ("s0", "s1", "s2", "s3", "s4")


class _Done:
    def __init__(self, request: JobRequest) -> None:
        self.request = request

    async def wait(self) -> JobOutcome:
        now = time.time()
        return JobOutcome("success", 0, None, now, now, self.request.log_path)

    async def cancel(self, reason: str = "canceled") -> None:
        return None


class InstantExecutor:
    """Finishes every job at once; keeps what each job was given."""

    def __init__(self) -> None:
        self.sources: dict[str, int] = {}

    async def start(self, request: JobRequest, on_output: OutputCallback) -> _Done:
        self.sources[request.job.name] = len(request.artifact_sources)
        return _Done(request)

    async def close(self) -> None:
        return None


def _job(i: int, stage: str, needs: tuple[Need, ...] | None = None) -> Job:
    return Job(name=f"j{i}", base_name=f"j{i}", stage=stage, script=("true",), needs=needs)


def independent() -> list[Job]:
    return [_job(i, "s0") for i in range(N)]


def stage_order() -> list[Job]:
    return [_job(i, STAGES[i * len(STAGES) // N]) for i in range(N)]


def needs_dag() -> list[Job]:
    per = N // len(STAGES)
    jobs = []
    for i in range(N):
        s = i // per
        needs = None
        if s > 0:
            names = dict.fromkeys(f"j{(s - 1) * per + (i * 7 + k) % per}" for k in range(2))
            needs = tuple(Need(job=n) for n in names)
        jobs.append(_job(i, STAGES[s], needs))
    return jobs


@pytest.mark.parametrize("shape", [independent, stage_order, needs_dag])
def test_five_thousand_jobs_run_in_order_with_linear_scheduling(
    shape: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = shape()  # type: ignore[operator]
    folds: list[int] = []
    real_fold = scheduler_module.upstream_status

    def counting_fold(deps, *, dag):  # type: ignore[no-untyped-def]
        deps = list(deps)
        folds.append(len(deps))
        return real_fold(deps, dag=dag)

    monkeypatch.setattr(scheduler_module, "upstream_status", counting_fold)
    rec = Recorder()
    executor = InstantExecutor()
    pipeline = Pipeline(stages=STAGES, jobs=tuple(jobs))
    result = asyncio.run(
        run_pipeline(
            pipeline, executor, rec, pipeline_id=1, run_dir=tmp_path, options=RunOptions(concurrency=8)
        )
    )
    assert result.status == "success"
    assert len(result.jobs) == N and all(str(r.status) == "success" for r in result.jobs)

    # every job started after every job it waits for had finished
    position: dict[tuple[str, str], int] = {}
    for i, e in enumerate(rec.events):
        position.setdefault((e.name, e.status), i)
    stage_of = {j.name: STAGES.index(j.stage) for j in jobs}
    last_done_of_stage = [-1] * len(STAGES)
    for j in jobs:
        s = stage_of[j.name]
        last_done_of_stage[s] = max(last_done_of_stage[s], position[(j.name, "success")])
    for j in jobs:
        started = position[(j.name, "running")]
        if j.needs is not None:
            assert all(position[(n.job, "success")] < started for n in j.needs), j.name
        elif stage_of[j.name] > 0:
            assert max(last_done_of_stage[: stage_of[j.name]]) < started, j.name

    # the work: jobs in stage order share one fold per stage (not one per job over every
    # earlier job); jobs with needs fold their own needs
    folded = sum(folds)
    if shape is stage_order:
        assert len(folds) == len(STAGES)
        assert folded == sum(N * s // len(STAGES) for s in range(len(STAGES)))  # each earlier job once
        # artifacts of every earlier job still reach each job, as in GitLab
        assert executor.sources["j4999"] == N * 4 // len(STAGES)
    else:  # one fold for the first stage (stage order, nothing before it), one per job with needs
        assert len(folds) == 1 + sum(1 for j in jobs if j.needs is not None)
        assert folded <= 2 * N
