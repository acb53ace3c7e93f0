"""Fixtures for the Dispatcher tests: a real server state (stores, SecretBox) on SQLite and on
the real PostgreSQL, a real git repository as the project's remote, and its mirror."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from .dispatcher_support import Harness

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _admin_url() -> URL:
    url = make_url(os.environ.get("AICD_TEST_POSTGRES_URL") or DEFAULT_ADMIN_URL)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


@pytest.fixture(scope="module")
def pg_core_database() -> Iterator[Engine]:
    """An AUTOCOMMIT engine on a new PostgreSQL database, dropped after the module."""
    admin_url = _admin_url()
    name = f"aicd_core_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    why = ""
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except SQLAlchemyError as exc:
        why = str(exc.orig if isinstance(exc, DBAPIError) else exc).strip()
        admin.dispose()
    if why:
        pytest.fail(f"PostgreSQL not reachable: {why}; start it or set AICD_TEST_POSTGRES_URL", pytrace=False)
    engine = create_engine(admin_url.set(database=name), isolation_level="AUTOCOMMIT")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


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
