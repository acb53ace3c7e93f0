"""open_store(url): the fastest store that can serve the database at `url`.

An existing SQLite file at the schema head gets :class:`FastSqliteStore`
(stdlib ``sqlite3`` only: SQLAlchemy is never imported). Anything else (a new
database, one behind the head, PostgreSQL, an unusual URL, a broken file) gets
:class:`RunStore`, which creates and migrates, or raises the StoreError that
explains what is wrong.
"""

from __future__ import annotations

from aicd.store.base import Store


def open_store(url: str) -> Store:
    """Open the run history at a SQLAlchemy-style URL. Raises StoreError."""
    from aicd.store.sqlite_fast import FastSqliteStore

    fast = FastSqliteStore.try_open(url)
    if fast is not None:
        return fast
    from aicd.store.repository import RunStore

    return RunStore.open(url)
