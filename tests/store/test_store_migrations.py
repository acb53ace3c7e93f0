"""Schema creation, versioning and the cheap reopen path, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.orm import Session

from aicd.errors import StoreError
from aicd.store import NewJob, RunStore, current_revision, upgrade
from aicd.store.db import connect
from aicd.store.migrate import alembic_config, make_revision
from aicd.store.migrations import HEAD, SCRIPT_LOCATION
from aicd.store.models import Job, Pipeline, Project
from aicd.store.schema import metadata

_REOPEN = """
import json, sys, time
from aicd.store import RunStore
times = []
for _ in range(5):
    t = time.perf_counter()
    store = RunStore.open(sys.argv[1])
    times.append(time.perf_counter() - t)
    store.close()
print(json.dumps({"best_ms": min(times) * 1000, "modules": sorted(sys.modules)}))
"""


def test_a_new_database_is_created_at_head(db_url: str) -> None:
    assert current_revision(db_url) is None
    with RunStore.open(db_url):
        pass
    assert current_revision(db_url) == HEAD
    engine = create_engine(db_url)
    try:
        assert {"projects", "pipelines", "jobs", "alembic_version"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)
    assert current_revision(db_url) == HEAD
    with RunStore.open(db_url) as store:
        assert store.list_pipelines() == []


def test_reopening_at_head_is_fast_and_never_imports_alembic(db_url: str) -> None:
    upgrade(db_url)
    done = subprocess.run(
        [sys.executable, "-c", _REOPEN, db_url], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    imported = set(report["modules"])
    assert "alembic" not in imported
    assert "sqlalchemy.orm" not in imported
    if db_url.startswith("sqlite"):
        assert "sqlalchemy.dialects.postgresql" not in imported
        assert report["best_ms"] < 30, (
            f"open() of an up-to-date SQLite database took {report['best_ms']:.1f} ms"
        )
    assert current_revision(db_url) == HEAD


def test_schema_module_matches_the_migrations(db_url: str) -> None:
    upgrade(db_url)
    database = connect(db_url)
    try:
        with database.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    finally:
        database.dispose()
    assert diff == []


def test_head_constant_is_alembic_head() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD


def test_orm_models_map_every_column(migrated_url: str) -> None:
    for model in (Project, Pipeline, Job):
        table = model.__table__
        assert set(model.__mapper__.columns.keys()) == set(table.columns.keys())
        assert set(table.columns.keys()) <= set(model.__annotations__)
    with RunStore.open(migrated_url) as store:
        record = store.create_pipeline(
            project_dir="/p", ref="main", sha="f" * 40, source="web", file="ci.yml", run_dir_root="/r"
        )
        store.add_jobs(
            record.id, [NewJob("b", "build", "on_success", False), NewJob("t", "test", "always", True)]
        )
    engine = connect(migrated_url).engine
    try:
        with Session(engine) as session:
            pipeline = session.scalars(select(Pipeline).where(Pipeline.id == record.id)).one()
            assert pipeline.project.path == "/p"
            assert [(j.name, j.allow_failure) for j in pipeline.jobs] == [("b", False), ("t", True)]
    finally:
        engine.dispose()


def test_a_database_from_a_newer_aicd_is_refused(db_url: str) -> None:
    upgrade(db_url)
    database = connect(db_url)
    try:
        with database.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    finally:
        database.dispose()
    with pytest.raises(
        StoreError, match=r"is at revision 9999 which this aicd does not know .*: upgrade aicd"
    ):
        RunStore.open(db_url)
    with pytest.raises(StoreError, match="upgrade aicd"):
        upgrade(db_url)
    assert current_revision(db_url) == "9999"


def test_sqlite_connections_use_wal_and_wait_for_locks(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "aicd.db"
    with RunStore.open(f"sqlite:///{path}") as store:
        assert path.is_file()
        engine = connect(f"sqlite:///{path}").engine
        with engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
            }
        engine.dispose()
        assert pragma == {"journal_mode": "wal", "busy_timeout": 30000, "foreign_keys": 1, "synchronous": 1}
        assert store.where == str(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_make_revision_writes_the_next_numbered_revision(tmp_path: Path) -> None:
    scripts = tmp_path / "migrations"
    shutil.copytree(SCRIPT_LOCATION, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    made = make_revision(f"sqlite:///{tmp_path / 'dev.db'}", "add nothing", script_location=scripts)

    assert made == scripts / "versions" / f"{int(HEAD) + 1:04d}_add_nothing.py"
    text = made.read_text()
    assert f"down_revision = {HEAD!r}" in text
    assert "op." not in text, "the schema module and the migrations differ:\n" + text
