"""The three ways the store tests open a database (see conftest.backend)."""

from __future__ import annotations

from dataclasses import dataclass

from aicd.store import FastSqliteStore, RunStore, Store, open_store


@dataclass(frozen=True)
class Backend:
    """One implementation of the Store on one database."""

    name: str  # sqlalchemy-sqlite, sqlalchemy-postgresql, fast-sqlite
    dialect: str  # sqlite, postgresql

    @property
    def fast(self) -> bool:
        return self.name == "fast-sqlite"

    def open(self, url: str) -> Store:
        """This backend's store on a database at head (the fast one refuses anything else)."""
        if self.fast:
            return FastSqliteStore.open(url)
        return RunStore.open(url)

    def create(self, url: str) -> Store:
        """A store on a database that may not exist yet: the fast backend goes through
        open_store, which lets RunStore create it."""
        return open_store(url) if self.fast else RunStore.open(url)


BACKENDS = [
    Backend("sqlalchemy-sqlite", "sqlite"),
    Backend("sqlalchemy-postgresql", "postgresql"),
    Backend("fast-sqlite", "sqlite"),
]
