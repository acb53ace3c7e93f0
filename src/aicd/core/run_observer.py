"""What `aicd run` tells the CLI (or a test) while a pipeline runs."""

from __future__ import annotations

from typing import Protocol

from aicd.executors.base import JobOutcome
from aicd.pipeline.ir import Job, Pipeline
from aicd.store import PipelineRecord


class RunObserver(Protocol):
    """What the CLI (or a test) is told while the pipeline runs."""

    def pipeline_created(
        self, record: PipelineRecord, pipeline: Pipeline, only: frozenset[str] | None = None
    ) -> None:
        """``only``: the names of the jobs that will run, when some were selected."""

    def job_status(
        self, job: Job, job_id: int, attempt: int, status: str, outcome: JobOutcome | None
    ) -> None: ...

    def job_output(self, job: Job, job_id: int, kind: str, text: str) -> None: ...
