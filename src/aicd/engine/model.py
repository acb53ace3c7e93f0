"""The engine's options and results."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from aicd.engine.resource_groups import ResourceGroups
from aicd.engine.status import JobStatus
from aicd.executors.base import JobOutcome
from aicd.pipeline.ir import Job, Variable


@dataclass(frozen=True)
class SettledJob:
    """A job that already has its result from an earlier run of the same pipeline (a resume).

    It keeps its id, does not run, and counts with this status for its
    dependants' decisions and as an artifact (and dotenv) source.
    """

    job_id: int
    status: JobStatus  # success, failed, canceled, skipped or manual
    attempts: int = 1
    allowed_failure: bool = False  # failed, but allow_failure covered it
    dotenv: tuple[Variable, ...] = ()  # its artifacts:reports:dotenv, for the jobs it feeds


@dataclass(frozen=True)
class RunOptions:
    """How to run a pipeline: concurrency, selection, manual jobs, shared limits, resumed jobs."""

    concurrency: int  # jobs running at once, across the pipeline (at least 1)
    only: frozenset[str] | None = None  # run just these jobs (full names)...
    with_needs: bool = False  # ...and, transitively, the jobs they need
    play_manual: frozenset[str] = frozenset()  # manual jobs to run
    honour_delays: bool = True  # when: delayed waits start_in; False runs at once
    # Resume: jobs (by name) settled by an earlier run; they keep their ids and do not run.
    settled: Mapping[str, SettledJob] = field(default_factory=dict)
    # Jobs that already made this many attempts (a retry or a recovery): the first
    # attempt of this run is number n + 1, and `retry:max` counts them all.
    prior_attempts: Mapping[str, int] = field(default_factory=dict)
    # Slots shared with other runs (a server's global job limit): a job holds one
    # while it runs, and waits `pending` for one.
    slots: asyncio.Semaphore | None = None
    # Resource groups shared with other runs (the server: one per project, so a group holds
    # across its pipelines); None: this run's own.
    resource_groups: ResourceGroups | None = None
    # CI_JOB_URL is this followed by the job id (None: CI_PROJECT_URL/-/jobs/<id>).
    job_url_base: str | None = None


@dataclass
class JobResult:
    """One job's state and result in a run."""

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
    """A run's status and its jobs' results."""

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


__all__ = ["JobResult", "PipelineResult", "RunOptions", "SettledJob"]
