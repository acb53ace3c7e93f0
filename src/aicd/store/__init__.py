"""Run history: the only package that speaks SQL.

SQLAlchemy 2 models, Alembic migrations, SQLite (WAL) by default and
PostgreSQL by URL. Callers get plain records, never ORM objects.
"""

from aicd.store.migrate import current_revision, upgrade
from aicd.store.records import JobRecord, PipelineRecord
from aicd.store.repository import NewJob, RunStore

__all__ = ["JobRecord", "NewJob", "PipelineRecord", "RunStore", "current_revision", "upgrade"]
