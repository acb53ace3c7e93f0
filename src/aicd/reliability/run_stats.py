"""Pipeline and job counts and durations per project and status, for `/api/v1/metrics`.

One aggregate query per table (never a row per pipeline), read-only.
TODO(store): this is the one place outside aicd.store that builds SQL; it belongs
beside store/pipeline_queries.py and should move there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.exc import SQLAlchemyError

from aicd.store.db import Database
from aicd.store.schema import jobs, pipelines


@dataclass(frozen=True)
class RunStat:
    """Pipelines (or job attempts) of one project in one status."""

    project_id: int
    status: str
    count: int
    timed: int  # how many have both a start and an end
    duration_sum_s: float  # sum of (finished_at - started_at) over those


def _stats(database: Database, table_name: str) -> list[RunStat]:
    table = pipelines if table_name == "pipelines" else jobs
    timed = table.c.started_at.is_not(None) & table.c.finished_at.is_not(None)
    query = select(
        pipelines.c.project_id,
        table.c.status,
        func.count(),
        func.sum(case((timed, 1), else_=0)),
        func.sum(case((timed, table.c.finished_at - table.c.started_at), else_=0.0)),
    )
    if table is jobs:
        query = query.select_from(jobs.join(pipelines, jobs.c.pipeline_id == pipelines.c.id))
    query = query.group_by(pipelines.c.project_id, table.c.status).order_by(
        pipelines.c.project_id, table.c.status
    )
    try:
        with database.engine.connect() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        raise database.error(f"count {table_name}", exc) from exc
    return [RunStat(int(p), str(s), int(n), int(t or 0), float(d or 0.0)) for p, s, n, t, d in rows]


def pipeline_stats(database: Database) -> list[RunStat]:
    return _stats(database, "pipelines")


def job_stats(database: Database) -> list[RunStat]:
    """Every attempt counts (a retried job's earlier attempts too)."""
    return _stats(database, "jobs")
