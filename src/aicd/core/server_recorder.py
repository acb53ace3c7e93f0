"""The server's EngineListener: engine events -> job rows of the RunStore.

Unlike `aicd run`'s recorder it also stores `pending` (the API shows jobs
waiting for a slot), reuses the rows of jobs that never started when a
pipeline is resumed (leaving those still running on workers `running`), and numbers
the attempts of jobs run again. Once `frozen()`
says so (a server with workers stopping cleanly) it writes no status any more: the
rows stay as they are for the next server, which adopts the attempts out on workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from aicd.core.job_fields import job_fields
from aicd.engine import JobStatus
from aicd.executors.base import JobOutcome
from aicd.pipeline.ir import Job
from aicd.store.records import NewJob, PipelineRecord
from aicd.store.repository import RunStore

# What a reused row forgets of its earlier life.
_RESET: dict[str, object] = {
    "exit_code": None,
    "failure_reason": None,
    "started_at": None,
    "finished_at": None,
    "log_path": None,
    "tests_total": None,
    "tests_passed": None,
    "tests_failed": None,
    "tests_skipped": None,
    "coverage": None,
    "artifacts_dir": None,
    "metrics": None,
}


class ServerRecorder:
    def __init__(
        self,
        store: RunStore,
        record: PipelineRecord,
        *,
        reuse: Mapping[str, int] | None = None,
        prior_attempts: Mapping[str, int] | None = None,
        pending: frozenset[str] = frozenset(),
        frozen: Callable[[], bool] = lambda: False,
        running: frozenset[str] = frozenset(),
        remote: bool = False,
    ) -> None:
        self.store = store
        # jobs go to workers: the row of an attempt the engine starts is not written `running` here;
        # the job token's transaction makes it `pending` (aicd.core.job_tokens), a worker's claim
        # `running` (one commit on the way to the broker, not three)
        self.remote = remote
        self.frozen = frozen
        self.running = running  # reused rows still running on workers: no pending/running written
        self.record = record
        self.run_dir = Path(record.run_dir)
        self.reuse = dict(reuse or {})  # job name -> id of a row that never started
        self.prior = dict(prior_attempts or {})
        self.pending = pending  # reused rows already set pending for this run: not reset

    def allocate_job_ids(self, jobs: Sequence[Job]) -> list[int]:
        ids: dict[str, int] = {}
        fresh: list[Job] = []
        for job in jobs:
            row = self.reuse.get(job.name)
            if row is None:
                fresh.append(job)
                continue
            if job.name not in self.pending:
                status = "manual" if job.when == "manual" else "created"
                self.store.update_job(row, status=status, allow_failure=job.allow_failure, **_RESET)
            ids[job.name] = row
        rows = [
            NewJob(
                name=j.name,
                stage=j.stage,
                when=j.when,
                allow_failure=j.allow_failure,
                status="manual" if j.when == "manual" else "created",
                attempt=self.prior.get(j.name, 0) + 1,
            )
            for j in fresh
        ]
        for job, job_id in zip(fresh, self.store.add_jobs(self.record.id, rows), strict=True):
            ids[job.name] = job_id
        return [ids[j.name] for j in jobs]

    def allocate_retry_id(self, job: Job, attempt: int) -> int:
        row = NewJob(job.name, job.stage, job.when, job.allow_failure, "pending", attempt)
        return self.store.add_jobs(self.record.id, [row])[0]

    def job_status(
        self, job: Job, job_id: int, attempt: int, status: JobStatus, outcome: JobOutcome | None
    ) -> None:
        if self.frozen():
            return
        if (
            status in (JobStatus.PENDING, JobStatus.RUNNING)
            and job.name in self.running
            and self.reuse.get(job.name) == job_id
        ):
            return  # adopted: its row stays `running` (a worker's job token is valid only so)
        fields = job_fields(job, status, outcome, self.run_dir, job_id)
        if self.remote and status == JobStatus.RUNNING and job.trigger is None:
            return  # its row becomes `pending` with its job token (a trigger job runs here: written)
        self.store.update_job(job_id, **fields)

    def job_output(self, job: Job, job_id: int, kind: str, text: str) -> None:
        """The executor writes every line to the job's log file itself."""

    def pipeline_status(self, status: str) -> None:
        if status == "running" and not self.frozen():
            fields: dict[str, object] = {"status": "running", "finished_at": None}
            if self.record.started_at is None:
                fields["started_at"] = time.time()
            self.store.update_pipeline(self.record.id, **fields)
        # the final status is written by the dispatcher (a blocked pipeline is `manual`)
