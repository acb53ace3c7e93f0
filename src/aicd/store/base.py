"""What every store offers: the Store protocol and the rules both implementations share.

Two implementations: :class:`aicd.store.repository.RunStore` (SQLAlchemy Core;
creates and migrates databases; SQLite and PostgreSQL) and
:class:`aicd.store.sqlite_fast.FastSqliteStore` (stdlib ``sqlite3``, for an
existing SQLite database at the schema head). :func:`aicd.store.open_store`
picks one. Nothing here imports SQLAlchemy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import fields
from types import TracebackType
from typing import Protocol

from aicd.store.records import JobRecord, NewJob, PipelineRecord

PIPELINE_FIELDS = tuple(f.name for f in fields(PipelineRecord))
JOB_FIELDS = tuple(f.name for f in fields(JobRecord))
# What update_pipeline / update_job may set.
PIPELINE_UPDATABLE = frozenset(PIPELINE_FIELDS) - {"id", "iid", "project_dir"}
JOB_UPDATABLE = frozenset(JOB_FIELDS) - {"id", "pipeline_id"}


class Store(Protocol):
    """Record and read pipelines and jobs. Every method raises StoreError when the
    database fails, NotFoundError for a missing row, TypeError for an unknown field."""

    @property
    def where(self) -> str:
        """The database, as messages name it (file path, or URL without password)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Store: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def create_pipeline(
        self,
        *,
        project_dir: str,
        ref: str,
        sha: str,
        source: str,
        file: str,
        run_dir_root: str,
        name: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> PipelineRecord:
        """New pipeline in status 'created'; iid counts per project_dir; run_dir is f"{run_dir_root}/{id}"."""
        ...

    def add_jobs(self, pipeline_id: int, jobs: Sequence[NewJob]) -> list[int]:
        """Insert job rows in one transaction; ids in the same order. A job with
        attempt > 1 marks earlier attempts of the same name ``retried``."""
        ...

    def update_job(self, job_id: int, **fields: object) -> None:
        """Set any JobRecord fields except id/pipeline_id."""
        ...

    def update_jobs(self, updates: Sequence[tuple[int, Mapping[str, object]]]) -> None:
        """Several :meth:`update_job` in order, in one transaction (all or none)."""
        ...

    def update_pipeline(self, pipeline_id: int, **fields: object) -> None:
        """Set any PipelineRecord fields except id/iid/project_dir."""
        ...

    def get_pipeline(self, pipeline_id: int) -> PipelineRecord: ...

    def get_pipeline_by_iid(self, project_dir: str, iid: int) -> PipelineRecord: ...

    def list_pipelines(self, *, project_dir: str | None = None, limit: int = 20) -> list[PipelineRecord]:
        """Newest first (highest id first)."""
        ...

    def get_job(self, job_id: int) -> JobRecord: ...

    def list_jobs(self, pipeline_id: int, *, include_retried: bool = True) -> list[JobRecord]:
        """In creation order (id). Raises NotFoundError when the pipeline does not exist."""
        ...


def checked_fields(given: Mapping[str, object], allowed: frozenset[str], what: str) -> dict[str, object]:
    """The fields to set, paths as strings; TypeError names an unknown field (with a hint)."""
    unknown = sorted(set(given) - allowed)
    if unknown:
        from aicd.suggest import did_you_mean

        hint = did_you_mean(unknown[0], sorted(allowed))
        raise TypeError(f"cannot set {what} field(s) {', '.join(unknown)}{hint}")
    return {key: os.fspath(v) if isinstance(v, os.PathLike) else v for key, v in given.items()}
