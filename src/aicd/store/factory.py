"""open_store(url): the fastest store that can serve the database at `url`.

An existing SQLite file at the schema head gets :class:`FastSqliteStore`
(stdlib ``sqlite3`` only: SQLAlchemy is never imported); so does a new
SQLite file, created from the head schema snapshot (:mod:`.snapshot`). Anything else (a new
database, one behind the head, PostgreSQL, an unusual URL, a broken file) gets
:class:`RunStore`, which creates and migrates, or raises the StoreError that
explains what is wrong.
"""

from __future__ import annotations

import os

from aicd.store.base import Store


def _is_new(path: str) -> bool:
    """No database there yet: a missing file, or a database without tables."""
    if not os.path.exists(path):
        return True
    import sqlite3

    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            (count,) = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            connection.close()
    except sqlite3.Error:
        return False
    return bool(count == 0)


def open_store(url: str) -> Store:
    """Open the run history at a SQLAlchemy-style URL. Raises StoreError."""
    from aicd.store.sqlite_fast import FastSqliteStore, create_sqlite_store, sqlite_path

    fast = FastSqliteStore.try_open(url)
    if fast is not None:
        return fast
    path = sqlite_path(url)
    if path is not None and _is_new(path):
        fast = create_sqlite_store(path)
        if fast is not None:
            return fast
    from aicd.store.repository import RunStore

    return RunStore.open(url)
