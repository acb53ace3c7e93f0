"""Every failure below SQL reaches the caller as StoreError with a clear message."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from store_backends import BACKENDS, Backend

from aicd.errors import StoreError
from aicd.store import NewJob, RunStore, current_revision, open_store, sqlite_pragmas, upgrade

_SQLITE_BACKENDS = [b for b in BACKENDS if b.dialect == "sqlite"]


def test_a_corrupted_sqlite_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "aicd.db"
    path.write_bytes(b"this is not a database, just some bytes\n" * 200)
    with pytest.raises(StoreError, match=f"^cannot open database at {path}: file is not a database"):
        RunStore.open(f"sqlite:///{path}")
    with pytest.raises(StoreError, match=f"^cannot open database at {path}: file is not a database"):
        open_store(f"sqlite:///{path}")  # the fast path steps aside; RunStore says what is wrong
    with pytest.raises(StoreError, match="file is not a database"):
        current_revision(f"sqlite:///{path}")


def test_a_folder_that_cannot_be_created_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "sub" / "aicd.db"
    with pytest.raises(StoreError, match=f"cannot open database at {path}: cannot create folder"):
        RunStore.open(f"sqlite:///{path}")


def test_an_unreachable_postgresql_is_a_store_error_without_the_password() -> None:
    url = "postgresql://postgres:s3cret@127.0.0.1:1/nowhere"  # plain postgresql:// means psycopg 3
    with pytest.raises(
        StoreError, match=r"^cannot open database at postgresql\+psycopg://postgres:\*\*\*@"
    ) as err:
        RunStore.open(url)
    assert "s3cret" not in str(err.value)
    assert "127.0.0.1" in str(err.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "invalid database URL 'not a url'"),
        ("mysql://u@h/db", "unsupported database URL mysql://u@h/db: aicd stores run history in SQLite or"),
    ],
)
def test_bad_urls_are_store_errors(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        RunStore.open(url)


@pytest.mark.parametrize("backend", _SQLITE_BACKENDS, ids=[b.name for b in _SQLITE_BACKENDS])
def test_a_lock_held_too_long_is_a_store_error(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_pragmas, "BUSY_TIMEOUT_S", 0.2)
    url = f"sqlite:///{tmp_path / 'aicd.db'}"
    upgrade(url)
    with backend.open(url) as store:
        record = store.create_pipeline(
            project_dir="/p", ref="main", sha="a" * 40, source="push", file="ci.yml", run_dir_root="/r"
        )
        holder = sqlite3.connect(tmp_path / "aicd.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match=r"cannot update pipeline \d+: database is locked \(another"):
                store.update_pipeline(record.id, status="running")
            assert store.get_pipeline(record.id).status == "created"  # readers are not blocked (WAL)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        store.update_pipeline(record.id, status="running")
        assert store.get_pipeline(record.id).status == "running"


def test_a_failed_add_jobs_writes_no_row(backend: Backend, backend_url: str) -> None:
    with backend.open(backend_url) as store:
        record = store.create_pipeline(
            project_dir="/p", ref="main", sha="a" * 40, source="push", file="ci.yml", run_dir_root="/r"
        )
        bad = NewJob(None, "test", "on_success", False)  # type: ignore[arg-type]
        good = NewJob("ok", "test", "on_success", False)
        with pytest.raises(StoreError, match=f"(?i)cannot add jobs to pipeline {record.id}: .*null"):
            store.add_jobs(record.id, [good, bad])
        assert store.list_jobs(record.id) == []


def test_values_the_columns_cannot_hold_are_store_errors(backend: Backend, backend_url: str) -> None:
    with backend.open(backend_url) as store:
        record = store.create_pipeline(
            project_dir="/p", ref="main", sha="a" * 40, source="push", file="ci.yml", run_dir_root="/r"
        )
        (job_id,) = store.add_jobs(record.id, [NewJob("ok", "test", "on_success", False)])
        with pytest.raises(StoreError, match=f"cannot update job {job_id}: .*Not a boolean value: 'yes'"):
            store.update_job(job_id, retried="yes")
        if backend.dialect == "sqlite":  # (on PostgreSQL psycopg raises TypeError itself)
            with pytest.raises(StoreError, match=f"cannot update job {job_id}: .*not JSON serializable"):
                store.update_job(job_id, metrics={"when": object()})
            with pytest.raises(StoreError, match=r"cannot create a pipeline: .*not JSON serializable"):
                store.create_pipeline(
                    project_dir="/p",
                    ref="main",
                    sha="a" * 40,
                    source="push",
                    file="ci.yml",
                    run_dir_root="/r",
                    variables={"X": b"bytes"},  # type: ignore[dict-item]
                )
        assert store.get_job(job_id).retried is False
        assert [p.iid for p in store.list_pipelines()] == [1]
