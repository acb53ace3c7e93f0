"""Response models of pipelines and jobs, shared by the pipelines and jobs routers."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field

from aicd.core.pipeline_links import PipelineLink, children_of, parent_of
from aicd.store.records import JobRecord, PipelineRecord


class TestsOut(BaseModel):
    total: int
    passed: int
    failed: int
    skipped: int


class PipelineLinkOut(BaseModel):
    pipeline_id: int = Field(
        description="The other pipeline: the parent (in parent) or the child (in children)"
    )
    job_id: int = Field(description="The trigger job (a job of the parent pipeline)")
    job: str = Field(description="The trigger job's name")

    @classmethod
    def of(cls, link: PipelineLink | None) -> PipelineLinkOut | None:
        return None if link is None else cls(pipeline_id=link.pipeline_id, job_id=link.job_id, job=link.job)


class PipelineOut(BaseModel):
    id: int
    iid: int = Field(description="Number of the pipeline in its project (CI_PIPELINE_IID)")
    project: str
    ref: str
    sha: str
    source: str = Field(description="CI_PIPELINE_SOURCE: push, api, web, trigger, ...")
    status: str = Field(description="created, pending, running, success, failed, canceled, skipped, manual")
    name: str | None
    file: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    duration_s: float | None
    error: str | None = Field(description="Why it could not run (e.g. the pipeline file's errors)")
    variables: dict[str, str] = Field(description="Variables given for this run (masked ones left out)")
    parent: PipelineLinkOut | None = Field(
        default=None, description="For a child pipeline: its parent pipeline and the trigger job that made it"
    )
    children: list[PipelineLinkOut] = Field(
        default_factory=list, description="Child pipelines made by this pipeline's trigger jobs, oldest first"
    )

    @classmethod
    def of(cls, record: PipelineRecord, project: str) -> PipelineOut:
        duration = None
        if record.started_at is not None and record.finished_at is not None:
            duration = round(record.finished_at - record.started_at, 3)
        run_dir = Path(record.run_dir)
        return cls(
            id=record.id,
            iid=record.iid,
            project=project,
            ref=record.ref,
            sha=record.sha,
            source=record.source,
            status=record.status,
            name=record.name,
            file=record.file,
            created_at=record.created_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
            duration_s=duration,
            error=record.error,
            variables=dict(record.variables or {}),
            parent=PipelineLinkOut.of(parent_of(run_dir)),
            children=[c for c in map(PipelineLinkOut.of, children_of(run_dir)) if c is not None],
        )


class JobOut(BaseModel):
    id: int
    pipeline_id: int
    name: str
    stage: str
    status: str = Field(description="created, pending, running, success, failed, canceled, skipped, manual")
    when: str
    allow_failure: bool = Field(description="For a failed job: whether allow_failure covered the failure")
    attempt: int
    retried: bool = Field(description="A later attempt of this job exists")
    exit_code: int | None
    failure_reason: str | None
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    duration_s: float | None
    coverage: float | None
    tests: TestsOut | None
    metrics: dict[str, float] | None
    has_artifacts: bool
    pending_reason: str | None = Field(
        default=None, description='Why a pending job waits for a worker ("no worker with tags gpu")'
    )
    runner_id: int | None = Field(default=None, description="The worker's runner that runs it")

    @classmethod
    def of(cls, job: JobRecord, remote: RemoteView | None = None) -> JobOut:
        tests = None
        if job.tests_total is not None:
            tests = TestsOut(
                total=job.tests_total,
                passed=job.tests_passed or 0,
                failed=job.tests_failed or 0,
                skipped=job.tests_skipped or 0,
            )
        duration = job.duration_s
        return cls(
            id=job.id,
            pipeline_id=job.pipeline_id,
            name=job.name,
            stage=job.stage,
            status=job.status,
            when=job.when,
            allow_failure=job.allow_failure,
            attempt=job.attempt,
            retried=job.retried,
            exit_code=job.exit_code,
            failure_reason=job.failure_reason,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            duration_s=round(duration, 3) if duration is not None else None,
            coverage=job.coverage,
            tests=tests,
            metrics=job.metrics,
            has_artifacts=job.artifacts_dir is not None,
            pending_reason=(
                remote.pending_reason(job.id) if remote is not None and job.status == "pending" else None
            ),
            runner_id=remote.runner_of(job.id) if remote is not None else None,
        )


class RemoteView(Protocol):
    """What a job's JSON shows of the workers (the dispatcher's RemoteJobs)."""

    def pending_reason(self, job_id: int) -> str | None: ...

    def runner_of(self, job_id: int) -> int | None: ...
