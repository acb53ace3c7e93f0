"""Fixture `store_url`: a migrated database on SQLite and on the real PostgreSQL (a fresh schema each)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError

from aicd.store.migrate import upgrade
from pg_testing import admin_url as pg_admin_url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'aicd.db'}"
        upgrade(url)
        yield url
        return
    admin_url = pg_admin_url()
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    schema = f"trig_{secrets.token_hex(4)}"
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except SQLAlchemyError as exc:
        engine.dispose()
        pytest.fail(f"PostgreSQL at {admin_url.host} not reachable: {exc}", pytrace=False)
    url = admin_url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )
    try:
        upgrade(url)
        yield url
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()
