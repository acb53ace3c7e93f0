"""RunStore: record and read pipelines and jobs.  (SKELETON: to be implemented)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aicd.store.records import JobRecord, PipelineRecord


@dataclass(frozen=True)
class NewJob:
    name: str
    stage: str
    when: str
    allow_failure: bool
    status: str = "created"
    attempt: int = 1


class RunStore:
    """Open with :meth:`open`; it creates the database and runs migrations."""

    @classmethod
    def open(cls, url: str) -> RunStore:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def create_pipeline(
        self, *, project_dir: str, ref: str, sha: str, source: str, file: str, run_dir_root: str
    ) -> PipelineRecord:
        """New pipeline in status 'created'; iid counts per project_dir.
        run_dir is f"{run_dir_root}/{id}"."""
        raise NotImplementedError

    def add_jobs(self, pipeline_id: int, jobs: Sequence[NewJob]) -> list[int]:
        """Insert job rows in one transaction; ids in the same order."""
        raise NotImplementedError

    def update_job(self, job_id: int, **fields: object) -> None:
        """Set any JobRecord fields except id/pipeline_id."""
        raise NotImplementedError

    def update_pipeline(self, pipeline_id: int, **fields: object) -> None:
        raise NotImplementedError

    def get_pipeline(self, pipeline_id: int) -> PipelineRecord:
        """Raises NotFoundError."""
        raise NotImplementedError

    def list_pipelines(self, *, project_dir: str | None = None, limit: int = 20) -> list[PipelineRecord]:
        raise NotImplementedError

    def list_jobs(self, pipeline_id: int, *, include_retried: bool = True) -> list[JobRecord]:
        raise NotImplementedError
