"""RunStore: record and read pipelines and jobs.

Core statements on the tables of :mod:`aicd.store.schema`; every write is one
short transaction (SQLite: BEGIN IMMEDIATE, so parallel ``aicd run`` processes
queue on the write lock instead of failing). Callers get frozen records.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from sqlalchemy import Column, Select, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert

from aicd.errors import NotFoundError
from aicd.store.base import JOB_FIELDS, JOB_UPDATABLE, PIPELINE_FIELDS, PIPELINE_UPDATABLE, checked_fields
from aicd.store.db import Database, connect
from aicd.store.migrate import ensure_current
from aicd.store.records import JobRecord, NewJob, PipelineRecord
from aicd.store.schema import jobs as job_table
from aicd.store.schema import pipelines as pipeline_table
from aicd.store.schema import projects as project_table

_PIPELINE_COLUMNS: list[Column[Any]] = [pipeline_table.c[name] for name in PIPELINE_FIELDS]
_JOB_COLUMNS: list[Column[Any]] = [job_table.c[name] for name in JOB_FIELDS]

__all__ = ["NewJob", "RunStore"]  # NewJob lives in aicd.store.records


class RunStore:
    """Open with :meth:`open`; it creates the database and runs migrations.

    Implements :class:`aicd.store.base.Store` (as does FastSqliteStore, its
    stdlib twin for up-to-date SQLite databases: keep the two in step).
    """

    def __init__(self, database: Database) -> None:
        self._db = database

    @classmethod
    def open(cls, url: str) -> RunStore:
        """Open (creating and migrating when needed) the database at a SQLAlchemy URL.

        SQLite (``sqlite:///path``, the folder is created) or PostgreSQL
        (``postgresql+psycopg://...``). Raises StoreError.
        """
        database = connect(url)
        try:
            ensure_current(database)
        except BaseException:
            database.dispose()
            raise
        return cls(database)

    @property
    def where(self) -> str:
        """The database, as messages name it (file path, or URL without password)."""
        return self._db.where

    def close(self) -> None:
        self._db.dispose()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- writes -------------------------------------------------------------

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
        """New pipeline in status 'created'; iid counts per project_dir.
        run_dir is f"{run_dir_root}/{id}"."""
        now = time.time()
        with self._write("create a pipeline") as conn:
            project_id, iid = conn.execute(self._next_iid(project_dir, now)).one()
            pipeline_id = conn.execute(
                insert(pipeline_table)
                .values(
                    project_id=project_id,
                    iid=iid,
                    project_dir=project_dir,
                    ref=ref,
                    sha=sha,
                    source=source,
                    file=file,
                    status="created",
                    name=name,
                    variables=dict(variables) if variables is not None else None,
                    created_at=now,
                    run_dir="",
                )
                .returning(pipeline_table.c.id)
            ).scalar_one()
            run_dir = f"{run_dir_root.rstrip('/')}/{pipeline_id}"
            conn.execute(
                update(pipeline_table).where(pipeline_table.c.id == pipeline_id).values(run_dir=run_dir)
            )
            row = conn.execute(_select_pipelines().where(pipeline_table.c.id == pipeline_id)).one()
        return PipelineRecord(*row)

    def _next_iid(self, project_dir: str, now: float) -> Insert:
        """Upsert on the project's counter: atomic on both backends, RETURNING (id, iid)."""
        values = {"path": project_dir, "last_pipeline_iid": 1, "created_at": now}
        bump = {"last_pipeline_iid": project_table.c.last_pipeline_iid + 1}
        returning = (project_table.c.id, project_table.c.last_pipeline_iid)
        if self._db.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            pg = postgresql.insert(project_table).values(values)
            return pg.on_conflict_do_update(index_elements=[project_table.c.path], set_=bump).returning(
                *returning
            )
        from sqlalchemy.dialects import sqlite

        lite = sqlite.insert(project_table).values(values)
        return lite.on_conflict_do_update(index_elements=[project_table.c.path], set_=bump).returning(
            *returning
        )

    def add_jobs(self, pipeline_id: int, jobs: Sequence[NewJob]) -> list[int]:
        """Insert job rows in one transaction; ids in the same order.

        A job with attempt > 1 is a retry: earlier attempts of the same name in
        the pipeline are marked ``retried`` in the same transaction.
        """
        if not jobs:
            return []
        now = time.time()
        rows = [
            {
                "pipeline_id": pipeline_id,
                "name": job.name,
                "stage": job.stage,
                "status": job.status,
                "when": job.when,
                "allow_failure": job.allow_failure,
                "attempt": job.attempt,
                "retried": False,
                "created_at": now,
            }
            for job in jobs
        ]
        with self._write(f"add jobs to pipeline {pipeline_id}") as conn:
            self._require_pipeline(conn, pipeline_id)
            ids = list(
                conn.execute(
                    insert(job_table).returning(job_table.c.id, sort_by_parameter_order=True), rows
                ).scalars()
            )
            for job in jobs:
                if job.attempt > 1:
                    conn.execute(
                        update(job_table)
                        .where(
                            job_table.c.pipeline_id == pipeline_id,
                            job_table.c.name == job.name,
                            job_table.c.attempt < job.attempt,
                            job_table.c.retried.is_(False),
                        )
                        .values(retried=True)
                    )
        return ids

    def update_job(self, job_id: int, **fields: object) -> None:
        """Set any JobRecord fields except id/pipeline_id."""
        values = checked_fields(fields, JOB_UPDATABLE, "job")
        if not values:
            return
        with self._write(f"update job {job_id}") as conn:
            result = conn.execute(update(job_table).where(job_table.c.id == job_id).values(values))
            if result.rowcount == 0:
                raise NotFoundError(f"job {job_id} does not exist")

    def update_jobs(self, updates: Sequence[tuple[int, Mapping[str, object]]]) -> None:
        """Several :meth:`update_job` in order, in one transaction (all or none)."""
        checked = [(job_id, checked_fields(dict(fields), JOB_UPDATABLE, "job")) for job_id, fields in updates]
        checked = [(job_id, values) for job_id, values in checked if values]
        if not checked:
            return
        what = f"update job {checked[0][0]}" if len(checked) == 1 else f"update {len(checked)} jobs"
        with self._write(what) as conn:
            for job_id, values in checked:
                result = conn.execute(update(job_table).where(job_table.c.id == job_id).values(values))
                if result.rowcount == 0:
                    raise NotFoundError(f"job {job_id} does not exist")

    def update_pipeline(self, pipeline_id: int, **fields: object) -> None:
        """Set any PipelineRecord fields except id/iid/project_dir."""
        values = checked_fields(fields, PIPELINE_UPDATABLE, "pipeline")
        if not values:
            return
        with self._write(f"update pipeline {pipeline_id}") as conn:
            result = conn.execute(
                update(pipeline_table).where(pipeline_table.c.id == pipeline_id).values(values)
            )
            if result.rowcount == 0:
                raise NotFoundError(f"pipeline {pipeline_id} does not exist")

    # -- reads --------------------------------------------------------------

    def get_pipeline(self, pipeline_id: int) -> PipelineRecord:
        """Raises NotFoundError."""
        with self._read(f"read pipeline {pipeline_id}") as conn:
            row = conn.execute(_select_pipelines().where(pipeline_table.c.id == pipeline_id)).first()
        if row is None:
            raise NotFoundError(f"pipeline {pipeline_id} does not exist")
        return PipelineRecord(*row)

    def get_pipeline_by_iid(self, project_dir: str, iid: int) -> PipelineRecord:
        """The pipeline numbered `iid` in the project (CI_PIPELINE_IID). Raises NotFoundError."""
        query = _select_pipelines().where(
            pipeline_table.c.project_dir == project_dir, pipeline_table.c.iid == iid
        )
        with self._read(f"read pipeline #{iid}") as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"pipeline #{iid} of {project_dir} does not exist")
        return PipelineRecord(*row)

    def list_pipelines(self, *, project_dir: str | None = None, limit: int = 20) -> list[PipelineRecord]:
        """Newest first (highest id first)."""
        query = _select_pipelines().order_by(pipeline_table.c.id.desc()).limit(limit)
        if project_dir is not None:
            query = query.where(pipeline_table.c.project_dir == project_dir)
        with self._read("list pipelines") as conn:
            return [PipelineRecord(*row) for row in conn.execute(query)]

    def get_job(self, job_id: int) -> JobRecord:
        """Raises NotFoundError."""
        with self._read(f"read job {job_id}") as conn:
            row = conn.execute(select(*_JOB_COLUMNS).where(job_table.c.id == job_id)).first()
        if row is None:
            raise NotFoundError(f"job {job_id} does not exist")
        return JobRecord(*row)

    def list_jobs(self, pipeline_id: int, *, include_retried: bool = True) -> list[JobRecord]:
        """In creation order (id). Raises NotFoundError when the pipeline does not exist."""
        query = select(*_JOB_COLUMNS).where(job_table.c.pipeline_id == pipeline_id).order_by(job_table.c.id)
        if not include_retried:
            query = query.where(job_table.c.retried.is_(False))
        with self._read(f"list jobs of pipeline {pipeline_id}") as conn:
            records = [JobRecord(*row) for row in conn.execute(query)]
            if not records:
                self._require_pipeline(conn, pipeline_id)
        return records

    # -- plumbing -----------------------------------------------------------

    @staticmethod
    def _require_pipeline(conn: Connection, pipeline_id: int) -> None:
        found = conn.execute(select(pipeline_table.c.id).where(pipeline_table.c.id == pipeline_id)).first()
        if found is None:
            raise NotFoundError(f"pipeline {pipeline_id} does not exist")

    def _write(self, action: str) -> AbstractContextManager[Connection]:
        return self._db.write(action)

    def _read(self, action: str) -> AbstractContextManager[Connection]:
        return self._db.read(action)


def _select_pipelines() -> Select[Any]:
    return select(*_PIPELINE_COLUMNS)
