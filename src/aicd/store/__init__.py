"""Run history: the only package that speaks SQL.

SQLAlchemy 2 Core tables (:mod:`aicd.store.schema`), Alembic migrations,
SQLite (WAL) by default and PostgreSQL by URL. Callers get plain records,
never ORM objects, from a :class:`Store` that :func:`open_store` picks:
:class:`FastSqliteStore` (stdlib sqlite3) for an up-to-date SQLite file,
:class:`RunStore` (SQLAlchemy) otherwise.

Importing this package does not import SQLAlchemy: RunStore, FastSqliteStore,
current_revision and upgrade load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aicd.store.base import Store
from aicd.store.factory import open_store
from aicd.store.records import JobRecord, NewJob, PipelineRecord

if TYPE_CHECKING:
    from aicd.store.migrate import current_revision, upgrade
    from aicd.store.repository import RunStore
    from aicd.store.sqlite_fast import FastSqliteStore

_LAZY = {
    "RunStore": "aicd.store.repository",
    "FastSqliteStore": "aicd.store.sqlite_fast",
    "current_revision": "aicd.store.migrate",
    "upgrade": "aicd.store.migrate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "FastSqliteStore",
    "JobRecord",
    "NewJob",
    "PipelineRecord",
    "RunStore",
    "Store",
    "current_revision",
    "open_store",
    "upgrade",
]
