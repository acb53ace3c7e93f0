"""What the stores built on one shared :class:`Database` have in common.

A store either borrows the server's database (``owns_database=False``: closing the store leaves it
open) or opened its own with :func:`open_current` (closing the store disposes of it).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from types import TracebackType
from typing import Self

from sqlalchemy.engine import Connection

from aicd.store.db import Database, connect
from aicd.store.migrate import ensure_current


def open_current(url: str) -> Database:
    """The database at a SQLAlchemy URL, created and migrated to the head revision when needed."""
    database = connect(url)
    try:
        ensure_current(database)
    except BaseException:
        database.dispose()
        raise
    return database


class DatabaseStore:
    """A store over a Database: context manager, `where`, transactions that raise StoreError."""

    def __init__(self, database: Database, *, owns_database: bool = False) -> None:
        self._db = database
        self._owns = owns_database

    @property
    def where(self) -> str:
        return self._db.where

    def close(self) -> None:
        if self._owns:
            self._db.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _write(self, action: str, *, conflict: str | None = None) -> AbstractContextManager[Connection]:
        return self._db.write(action, conflict=conflict)

    def _read(self, action: str) -> AbstractContextManager[Connection]:
        return self._db.read(action)
