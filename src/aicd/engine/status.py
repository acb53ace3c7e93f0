"""Job statuses, as GitLab names them, and whether a failure is allowed."""

from __future__ import annotations

from enum import StrEnum

from aicd.executors.base import JobOutcome
from aicd.pipeline.ir import Job


class JobStatus(StrEnum):
    CREATED = "created"  # not reached yet (or blocked by an unplayed manual job)
    PENDING = "pending"  # ready, waiting for a slot, its resource group or its delay
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"
    MANUAL = "manual"  # reached, waits for someone to play it

    @property
    def is_finished(self) -> bool:
        """Whether nothing more will happen to this job in this run."""
        return self in _FINISHED


_FINISHED = frozenset({JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.SKIPPED})


def failure_allowed(job: Job, outcome: JobOutcome | None) -> bool:
    """Whether `allow_failure` covers this failure.

    With `allow_failure:exit_codes` only those exit codes are allowed; an
    outcome without an exit code (a timeout, a cancel) is then not allowed.
    """
    if not job.allow_failure:
        return False
    codes = job.allow_failure_exit_codes
    return not codes or (outcome is not None and outcome.exit_code in codes)
