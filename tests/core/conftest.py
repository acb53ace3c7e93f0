"""Fixtures for the Dispatcher tests: a real server state (stores, SecretBox) on SQLite and on
the real PostgreSQL, a real git repository as the project's remote, and its mirror."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from pg_testing import fresh_database

from .dispatcher_support import Harness


@pytest.fixture(scope="module")
def pg_core_database() -> Iterator[Engine]:
    """An AUTOCOMMIT engine on a new PostgreSQL database, dropped after the module."""
    with fresh_database("aicd_core") as engine:
        yield engine


def _url(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'home' / 'aicd.db'}"
    engine: Engine = request.getfixturevalue("pg_core_database")
    schema = f"s_{secrets.token_hex(4)}"
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = engine.url.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """A server state with one project "demo" whose remote is a fresh git repository."""
    h = Harness.create(tmp_path, _url(request, tmp_path, request.param))
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def harness_sqlite(tmp_path: Path) -> Iterator[Harness]:
    h = Harness.create(tmp_path, _url(None, tmp_path, "sqlite"))  # type: ignore[arg-type]
    try:
        yield h
    finally:
        h.close()
