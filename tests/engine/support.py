"""Helpers for engine tests: a recording listener, job builders, a runner, timestamps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicd.engine import JobStatus, PipelineResult, RunOptions, run_pipeline
from aicd.executors.base import Executor, JobOutcome
from aicd.pipeline.ir import Job, Pipeline, Variable

from .bash_executor import BashExecutor

STAGES = (".pre", "build", "test", "deploy", ".post")


@dataclass
class Event:
    name: str
    job_id: int
    attempt: int
    status: str
    outcome: JobOutcome | None


@dataclass
class Recorder:
    """An EngineListener that keeps everything it is told."""

    next_id: int = 100
    events: list[Event] = field(default_factory=list)
    output: dict[str, list[str]] = field(default_factory=dict)  # job -> "out" lines
    info: dict[str, list[str]] = field(default_factory=dict)  # job -> "info" lines
    pipeline: list[str] = field(default_factory=list)
    retry_ids: list[tuple[str, int, int]] = field(default_factory=list)  # (job, attempt, id)
    allocated: list[list[str]] = field(default_factory=list)
    fail_on: Callable[[Event], bool] | None = None  # raise from job_status when true

    def allocate_job_ids(self, jobs: Sequence[Job]) -> list[int]:
        self.allocated.append([j.name for j in jobs])
        ids = list(range(self.next_id, self.next_id + len(jobs)))
        self.next_id += len(jobs)
        return ids

    def allocate_retry_id(self, job: Job, attempt: int) -> int:
        job_id = self.next_id
        self.next_id += 1
        self.retry_ids.append((job.name, attempt, job_id))
        return job_id

    def job_status(
        self, job: Job, job_id: int, attempt: int, status: JobStatus, outcome: JobOutcome | None
    ) -> None:
        event = Event(job.name, job_id, attempt, str(status), outcome)
        self.events.append(event)
        if self.fail_on is not None and self.fail_on(event):
            raise RuntimeError(f"listener broke on {job.name} {status}")

    def job_output(self, job: Job, job_id: int, kind: str, text: str) -> None:
        target = self.output if kind == "out" else self.info
        target.setdefault(job.name, []).append(text)

    def pipeline_status(self, status: str) -> None:
        self.pipeline.append(status)

    def statuses(self, name: str) -> list[str]:
        return [e.status for e in self.events if e.name == name]


def job(name: str, *script: str, stage: str = "test", **kw: Any) -> Job:
    return Job(name=name, base_name=name, stage=stage, script=tuple(script), **kw)


@dataclass
class Run:
    result: PipelineResult
    rec: Recorder
    executor: BashExecutor | None
    seconds: float

    def statuses(self) -> dict[str, str]:
        return {r.job.name: str(r.status) for r in self.result.jobs}

    def out(self, name: str) -> list[str]:
        return self.rec.output.get(name, [])


def run_jobs(
    tmp_path: Path,
    jobs: Sequence[Job],
    *,
    concurrency: int = 4,
    cancel_after: float | None = None,
    executor: Executor | None = None,
    variables: Sequence[Variable] = (),
    predefined: Sequence[Variable] = (),
    recorder: Recorder | None = None,
    **options: Any,
) -> Run:
    """Run `jobs` on the bash test executor (or `executor`); cancel after `cancel_after` s."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    rec = recorder or Recorder()
    bash = BashExecutor(work) if executor is None else None
    chosen: Executor = executor if executor is not None else bash  # type: ignore[assignment]
    pipeline = Pipeline(
        stages=STAGES, jobs=tuple(jobs), variables=tuple(variables), predefined=tuple(predefined)
    )

    async def main() -> PipelineResult:
        cancel = asyncio.Event()
        if cancel_after is not None:
            asyncio.get_running_loop().call_later(cancel_after, cancel.set)
        try:
            return await run_pipeline(
                pipeline,
                chosen,
                rec,
                pipeline_id=1,
                run_dir=tmp_path / "run",
                options=RunOptions(concurrency=concurrency, **options),
                cancel=cancel,
            )
        finally:
            await chosen.close()

    start = time.monotonic()
    result = asyncio.run(main())
    return Run(result, rec, bash, time.monotonic() - start)


def stamp(folder: Path, name: str, seconds: float = 0.2) -> str:
    """A script line writing `name.start`, sleeping, writing `name.end` (epoch seconds)."""
    return f"date +%s.%N > {folder}/{name}.start; sleep {seconds}; date +%s.%N > {folder}/{name}.end"


def span(folder: Path, name: str) -> tuple[float, float]:
    return float((folder / f"{name}.start").read_text()), float((folder / f"{name}.end").read_text())


def max_overlap(spans: Sequence[tuple[float, float]]) -> int:
    """The most spans open at one instant."""
    return max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
