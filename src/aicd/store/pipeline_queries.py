"""Pipeline queries the server needs beyond the Store protocol (filters, unfinished runs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, select
from sqlalchemy.exc import SQLAlchemyError

from aicd.store.base import PIPELINE_FIELDS
from aicd.store.db import Database
from aicd.store.records import PipelineRecord
from aicd.store.schema import pipelines as pipeline_table

_COLUMNS: list[Column[Any]] = [pipeline_table.c[name] for name in PIPELINE_FIELDS]


def find_pipelines(
    database: Database,
    *,
    project_dir: str | None = None,
    ref: str | None = None,
    statuses: Sequence[str] | None = None,
    limit: int | None = 20,
    newest_first: bool = True,
) -> list[PipelineRecord]:
    """Pipelines matching every filter given. Raises StoreError."""
    c = pipeline_table.c
    query = select(*_COLUMNS).order_by(c.id.desc() if newest_first else c.id)
    if project_dir is not None:
        query = query.where(c.project_dir == project_dir)
    if ref is not None:
        query = query.where(c.ref == ref)
    if statuses is not None:
        query = query.where(c.status.in_(list(statuses)))
    if limit is not None:
        query = query.limit(limit)
    try:
        with database.engine.connect() as conn:
            return [PipelineRecord(*row) for row in conn.execute(query)]
    except SQLAlchemyError as exc:
        raise database.error("list pipelines", exc) from exc
