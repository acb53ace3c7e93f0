"""The engine's vocabulary: job statuses, options, results and the listener."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from aicd.executors.base import JobOutcome
from aicd.pipeline.ir import Job


def failure_allowed(job: Job, outcome: JobOutcome | None) -> bool:
    """Whether `allow_failure` covers this failure (exit codes included)."""
    if not job.allow_failure:
        return False
    codes = job.allow_failure_exit_codes
    return not codes or (outcome is not None and outcome.exit_code in codes)


class JobStatus(StrEnum):
    CREATED = "created"
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"
    MANUAL = "manual"

    @property
    def is_finished(self) -> bool:
        return self in (JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.SKIPPED)


@dataclass(frozen=True)
class RunOptions:
    concurrency: int
    only: frozenset[str] | None = None  # run just these jobs (full names)...
    with_needs: bool = False  # ...and, transitively, the jobs they need
    play_manual: frozenset[str] = frozenset()  # manual jobs to run
    honour_delays: bool = True  # when: delayed waits start_in; False runs at once


@dataclass
class JobResult:
    job: Job
    job_id: int
    status: JobStatus = JobStatus.CREATED
    attempts: int = 0
    outcome: JobOutcome | None = None
    allowed_failure: bool = False  # failed, but allow_failure covers it (a warning)
    blocked_by: str | None = None  # waits for this unplayed manual job


@dataclass
class PipelineResult:
    status: str  # success, failed, canceled
    jobs: list[JobResult] = field(default_factory=list)

    def job(self, name: str) -> JobResult:
        for result in self.jobs:
            if result.job.name == name:
                return result
        raise KeyError(name)


class EngineListener(Protocol):
    """Told every state change; ids come from it (the store)."""

    def allocate_job_ids(self, jobs: Sequence[Job]) -> list[int]: ...

    def allocate_retry_id(self, job: Job, attempt: int) -> int: ...

    def job_status(
        self, job: Job, job_id: int, attempt: int, status: JobStatus, outcome: JobOutcome | None
    ) -> None: ...

    def job_output(self, job: Job, job_id: int, kind: str, text: str) -> None: ...

    def pipeline_status(self, status: str) -> None: ...
