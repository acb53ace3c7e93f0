"""The SQLite head-schema snapshot equals what the Alembic migrations make."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from aicd.store.factory import open_store
from aicd.store.migrate import upgrade
from aicd.store.migrations import HEAD
from aicd.store.snapshot import generate, read_snapshot, schema_statements
from aicd.store.sqlite_fast import FastSqliteStore


def test_snapshot_file_is_current() -> None:
    # Fails after a new migration until `python -m aicd.store.snapshot` is run.
    assert read_snapshot() == [s.strip() for s in generate().split("\n;\n")[1:] if s.strip()]


def test_database_from_snapshot_equals_migrated_one(tmp_path: Path) -> None:
    migrated = tmp_path / "migrated.db"
    upgrade(f"sqlite:///{migrated}")
    fresh = tmp_path / "sub" / "fresh.db"
    store = open_store(f"sqlite:///{fresh}")
    assert isinstance(store, FastSqliteStore)
    store.close()
    a, b = sqlite3.connect(migrated), sqlite3.connect(fresh)
    try:
        assert schema_statements(a) == schema_statements(b)
        assert b.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
    finally:
        a.close()
        b.close()
    # and SQLAlchemy's store accepts it as current (no migration needed)
    from aicd.store.migrate import current_revision

    assert current_revision(f"sqlite:///{fresh}") == HEAD


def test_new_database_needs_no_sqlalchemy(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from aicd.store.factory import open_store\n"
        f"s = open_store('sqlite:///{tmp_path}/new/aicd.db')\n"
        "p = s.create_pipeline(\n"
        "    project_dir='/x', ref='main', sha='0'*40, source='push', file='f', run_dir_root='/r')\n"
        "s.close()\n"
        "assert p.iid == 1, p\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_concurrent_creation_makes_one_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/race.db"
    code = (
        "from aicd.store.factory import open_store\n"
        f"s = open_store('{url}')\n"
        "s.create_pipeline(\n"
        "    project_dir='/x', ref='main', sha='0'*40, source='push', file='f', run_dir_root='/r')\n"
        "s.close()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    store = open_store(url)
    try:
        iids = sorted(r.iid for r in store.list_pipelines(limit=10))
    finally:
        store.close()
    assert iids == [1, 2, 3, 4]
