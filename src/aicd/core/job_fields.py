"""The job-row fields a state change sets: one mapping for `aicd run` and the server."""

from __future__ import annotations

import time
from pathlib import Path

from aicd.engine import JobStatus, failure_allowed
from aicd.executors.base import JobOutcome, job_log_path
from aicd.pipeline.ir import Job


def job_fields(
    job: Job, status: JobStatus, outcome: JobOutcome | None, run_dir: Path, job_id: int
) -> dict[str, object]:
    """What Store.update_job gets when `job` (attempt `job_id`, of the run in `run_dir`) reaches `status`."""
    fields: dict[str, object] = {"status": str(status)}
    now = time.time()
    if status == JobStatus.RUNNING:
        fields["started_at"] = now
        fields["log_path"] = str(job_log_path(run_dir, job_id))
    if outcome is not None:
        fields.update(
            exit_code=outcome.exit_code,
            failure_reason=outcome.failure_reason,
            started_at=outcome.started_at,
            finished_at=outcome.finished_at,
            log_path=str(outcome.log_path),
            coverage=outcome.coverage,
            allow_failure=failure_allowed(job, outcome) if status == JobStatus.FAILED else job.allow_failure,
            metrics=outcome.metrics or None,
            artifacts_dir=str(outcome.artifacts_dir) if outcome.artifacts_dir else None,
        )
        if outcome.tests is not None:
            fields.update(
                tests_total=outcome.tests.total,
                tests_passed=outcome.tests.passed,
                tests_failed=outcome.tests.failed + outcome.tests.errors,
                tests_skipped=outcome.tests.skipped,
            )
    elif status in (JobStatus.CANCELED, JobStatus.SKIPPED):
        fields["finished_at"] = now
    return fields
