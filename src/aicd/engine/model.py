"""The engine's options and results."""

from __future__ import annotations

from dataclasses import dataclass, field

from aicd.engine.status import JobStatus
from aicd.executors.base import JobOutcome
from aicd.pipeline.ir import Job


@dataclass(frozen=True)
class RunOptions:
    concurrency: int  # jobs running at once, across the pipeline (at least 1)
    only: frozenset[str] | None = None  # run just these jobs (full names)...
    with_needs: bool = False  # ...and, transitively, the jobs they need
    play_manual: frozenset[str] = frozenset()  # manual jobs to run
    honour_delays: bool = True  # when: delayed waits start_in; False runs at once


@dataclass
class JobResult:
    job: Job
    job_id: int  # of the last attempt
    status: JobStatus = JobStatus.CREATED
    attempts: int = 0  # 0: never started
    outcome: JobOutcome | None = None  # of the last attempt
    allowed_failure: bool = False  # failed (or canceled), but allow_failure covers it: a warning
    blocked_by: str | None = None  # left `created`: waits for this unplayed blocking manual job

    @property
    def counts_as_failure(self) -> bool:
        """Whether this job makes the pipeline fail."""
        return self.status == JobStatus.FAILED and not self.allowed_failure


@dataclass
class PipelineResult:
    status: str  # success, failed, canceled
    jobs: list[JobResult] = field(default_factory=list)  # in definition order

    def job(self, name: str) -> JobResult:
        for result in self.jobs:
            if result.job.name == name:
                return result
        raise KeyError(name)

    @property
    def blocked(self) -> list[JobResult]:
        """Jobs that never started because an unplayed manual job blocks them."""
        return [r for r in self.jobs if r.blocked_by is not None and r.status == JobStatus.CREATED]


__all__ = ["JobResult", "PipelineResult", "RunOptions"]
