"""Typed ORM classes over the tables of :mod:`aicd.store.schema`.

For code that wants ORM objects inside the store (the server, later). The
repository itself uses Core statements on the same tables and never imports
this module, to keep ``sqlalchemy.orm`` out of every CLI start.
ORM objects never leave the store: callers get :mod:`aicd.store.records`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import DeclarativeBase, Mapped, relationship

from aicd.store import schema


class Base(DeclarativeBase):
    metadata = schema.metadata


class Project(Base):
    __table__ = schema.projects

    id: Mapped[int]
    path: Mapped[str]
    last_pipeline_iid: Mapped[int]
    created_at: Mapped[float]
    name: Mapped[str | None]
    repo_url: Mapped[str | None]
    default_branch: Mapped[str | None]
    pipeline_file: Mapped[str | None]
    poll_interval_s: Mapped[float | None]
    webhook_secret: Mapped[str | None]
    protected_aliases: Mapped[list[str] | None]

    pipelines: Mapped[list[Pipeline]] = relationship(back_populates="project", passive_deletes=True)


class Pipeline(Base):
    __table__ = schema.pipelines

    id: Mapped[int]
    project_id: Mapped[int]
    iid: Mapped[int]
    project_dir: Mapped[str]
    ref: Mapped[str]
    sha: Mapped[str]
    source: Mapped[str]
    file: Mapped[str]
    status: Mapped[str]
    name: Mapped[str | None]
    variables: Mapped[dict[str, Any] | None]
    created_at: Mapped[float]
    started_at: Mapped[float | None]
    finished_at: Mapped[float | None]
    run_dir: Mapped[str]
    error: Mapped[str | None]

    project: Mapped[Project] = relationship(back_populates="pipelines")
    jobs: Mapped[list[Job]] = relationship(back_populates="pipeline", order_by="Job.id", passive_deletes=True)


class Job(Base):
    __table__ = schema.jobs

    id: Mapped[int]
    pipeline_id: Mapped[int]
    name: Mapped[str]
    stage: Mapped[str]
    status: Mapped[str]
    when: Mapped[str]
    allow_failure: Mapped[bool]
    attempt: Mapped[int]
    retried: Mapped[bool]
    exit_code: Mapped[int | None]
    failure_reason: Mapped[str | None]
    created_at: Mapped[float | None]
    started_at: Mapped[float | None]
    finished_at: Mapped[float | None]
    log_path: Mapped[str | None]
    artifacts_dir: Mapped[str | None]
    tests_total: Mapped[int | None]
    tests_passed: Mapped[int | None]
    tests_failed: Mapped[int | None]
    tests_skipped: Mapped[int | None]
    coverage: Mapped[float | None]
    metrics: Mapped[dict[str, Any] | None]

    pipeline: Mapped[Pipeline] = relationship(back_populates="jobs")
