"""FastSqliteStore and open_store: the schema they share with SQLAlchemy, the choice
of store, rows either store reads from the other, and a CLI start without SQLAlchemy."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Boolean
from sqlalchemy.engine import make_url

from aicd.errors import StoreError
from aicd.store import FastSqliteStore, NewJob, RunStore, Store, current_revision, open_store, schema
from aicd.store.base import JOB_FIELDS, PIPELINE_FIELDS
from aicd.store.migrations import HEAD
from aicd.store.sqlite_fast import (
    BOOLEAN_COLUMNS,
    JOB_COLUMNS,
    JSON_COLUMNS,
    PIPELINE_COLUMNS,
    PROJECT_COLUMNS,
    sqlite_path,
)


@pytest.fixture
def url(sqlite_template: Path, tmp_path: Path) -> str:
    """An empty SQLite database at head."""
    path = tmp_path / "aicd.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


# -- the schema is schema.py's ------------------------------------------------


def test_the_fast_store_knows_every_column_of_the_schema() -> None:
    # Fails when schema.py gains, loses or reorders a column: update sqlite_fast.py too.
    assert tuple(schema.projects.columns.keys()) == PROJECT_COLUMNS
    assert tuple(schema.pipelines.columns.keys()) == PIPELINE_COLUMNS
    assert tuple(schema.jobs.columns.keys()) == JOB_COLUMNS
    every = [*schema.projects.columns, *schema.pipelines.columns, *schema.jobs.columns]
    assert {c.name for c in every if isinstance(c.type, schema.Json)} == JSON_COLUMNS
    assert {c.name for c in every if isinstance(c.type, Boolean)} == BOOLEAN_COLUMNS
    assert set(PIPELINE_FIELDS) <= set(PIPELINE_COLUMNS)
    assert set(JOB_FIELDS) <= set(JOB_COLUMNS)
    # The fast store serves run history only; the server's and the registry's tables
    # are reached through SQLAlchemy (aicd.store.accounts, aicd.store.registry, ...).
    assert {"projects", "pipelines", "jobs"} <= set(schema.metadata.tables)


def test_the_fast_store_writes_every_column_of_the_records(url: str) -> None:
    every_job_field: dict[str, object] = {n: None for n in JOB_FIELDS if n not in ("id", "pipeline_id")}
    with FastSqliteStore.open(url) as store:
        record = store.create_pipeline(
            project_dir="/p", ref="main", sha="a" * 40, source="push", file="ci.yml", run_dir_root="/r"
        )
        (job_id,) = store.add_jobs(record.id, [NewJob("a", "test", "on_success", False)])
        every_job_field.update(name="b", stage="s", status="failed", when="always")
        every_job_field.update(allow_failure=True, attempt=1, retried=False)
        store.update_job(job_id, **every_job_field)
        store.update_pipeline(record.id, **{n: None for n in ("name", "started_at", "error", "variables")})
        assert store.get_job(job_id).name == "b"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////abs/path/aicd.db",
        "sqlite:///relative/aicd.db",
        "sqlite:///a%20b/c%25d.db",
        "sqlite:///~/x.db",
        "sqlite:///x#y.db",
        "sqlite+pysqlite:////abs/x.db",
    ],
)
def test_sqlite_path_reads_a_url_as_sqlalchemy_does(url: str) -> None:
    assert sqlite_path(url) == make_url(url).database


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite:///x.db?timeout=3",
        "sqlite:///file:x?mode=ro&uri=true",
        "postgresql+psycopg://u@h/db",
        "sqlite+aiosqlite:///x.db",
        "not a url",
    ],
)
def test_other_urls_are_left_to_sqlalchemy(url: str) -> None:
    assert sqlite_path(url) is None


# -- open_store picks the store ----------------------------------------------------


def test_open_store_is_fast_for_new_and_current_sqlite_databases(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'aicd.db'}"
    with open_store(url) as first:  # new: made from the head-schema snapshot
        assert isinstance(first, FastSqliteStore)
    assert current_revision(url) == HEAD
    with open_store(url) as second:
        assert isinstance(second, FastSqliteStore)

    empty = tmp_path / "empty.db"
    empty.touch()  # exists but empty: also made from the snapshot
    with open_store(f"sqlite:///{empty}") as store:
        assert isinstance(store, FastSqliteStore)
        assert store.list_pipelines() == []

    other = tmp_path / "other.db"  # a database with other tables and no version: RunStore migrates
    with sqlite3.connect(other) as raw:
        raw.execute("CREATE TABLE unrelated (x INTEGER)")
    with open_store(f"sqlite:///{other}") as store:
        assert isinstance(store, RunStore)
    assert isinstance(open_store(f"sqlite:///{other}"), FastSqliteStore)


def test_open_store_leaves_a_newer_database_to_runstore_which_refuses_it(url: str) -> None:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as raw:
        raw.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="is at revision 9999 which this aicd does not know"):
        open_store(url)
    with pytest.raises(StoreError, match=f"needs an existing SQLite file .* at schema revision {HEAD}"):
        FastSqliteStore.open(url)


def test_open_store_uses_runstore_for_postgresql(pg_migrated: str) -> None:
    with open_store(pg_migrated) as store:
        assert isinstance(store, RunStore)
    assert FastSqliteStore.try_open(pg_migrated) is None


_CLI_START = """
import json, sys, time
started = time.perf_counter()
from aicd.store import NewJob, open_store
imported = time.perf_counter()
if sys.argv[2] == "sqlalchemy":  # the path before FastSqliteStore, for comparison
    from aicd.store import RunStore
    store = RunStore.open(sys.argv[1])
else:
    store = open_store(sys.argv[1])
opened = time.perf_counter()
record = store.create_pipeline(
    project_dir="/p", ref="main", sha="a" * 40, source="push", file="ci.yml", run_dir_root="/r"
)
created = time.perf_counter()
ids = store.add_jobs(record.id, [NewJob(f"job{i}", "test", "on_success", False) for i in range(3)])
for job_id in ids:
    store.update_job(job_id, status="success", exit_code=0, metrics={"accuracy": 0.9})
store.update_pipeline(record.id, status="success")
jobs = store.list_jobs(record.id)
store.close()
print(json.dumps({
    "store": type(store).__name__,
    "import_ms": (imported - started) * 1000,
    "open_ms": (opened - imported) * 1000,
    "create_ms": (created - opened) * 1000,
    "statuses": [j.status for j in jobs],
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "alembic")),
}))
"""


def test_the_cli_path_never_imports_sqlalchemy(url: str) -> None:
    runs: dict[str, list[dict[str, Any]]] = {"fast": [], "sqlalchemy": []}
    for kind in ("fast", "sqlalchemy", "fast", "fast"):  # one SQLAlchemy run, for comparison
        done = subprocess.run(
            [sys.executable, "-c", _CLI_START, url, kind],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        runs[kind].append(json.loads(done.stdout))
    for run in runs["fast"]:
        assert run["store"] == "FastSqliteStore"
        assert run["modules"] == []
        assert run["statuses"] == ["success"] * 3
    best = {
        kind: min(r["import_ms"] + r["open_ms"] + r["create_ms"] for r in found)
        for kind, found in runs.items()
    }
    print(f"import aicd.store + open + create_pipeline, best run (ms): {best}")
    assert best["fast"] < best["sqlalchemy"] / 2, best
    assert best["fast"] < 200, best  # measured 55-90 ms on 2 busy cores (load 5-8)


# -- either store reads the other's rows --------------------------------------------


def _exercise(store: Store, tmp: Path) -> tuple[int, list[int]]:
    """Every write, with every kind of value."""
    record = store.create_pipeline(
        project_dir="/p",
        ref="feature/é",
        sha="b" * 40,
        source="web",
        file="ci.yml",
        run_dir_root="/r/",
        name="nightly ✓",
        variables={"MODEL": "iris", "EMPTY": "", "UNICODE": "naïve"},
    )
    store.create_pipeline(
        project_dir="/p", ref="main", sha="c" * 40, source="push", file="ci.yml", run_dir_root="/r"
    )
    ids = store.add_jobs(
        record.id,
        [
            NewJob("build", "build", "on_success", False),
            NewJob("flaky", "test", "on_success", True),
            NewJob("deploy", "deploy", "manual", True, status="manual"),
        ],
    )
    ids += store.add_jobs(record.id, [NewJob("flaky", "test", "on_success", True, attempt=2)])
    store.update_job(
        ids[0],
        status="success",
        started_at=10,  # an int into a float column
        finished_at=12.75,
        exit_code=0,
        log_path=tmp / "logs" / "1.log",
        tests_total=5,
        tests_passed=4,
        tests_failed=1,
        tests_skipped=0,
        coverage=88.5,
        metrics={"accuracy": 0.93, "loss": 1e-9, "epochs": 3, "nested": {"a": [1, 2.5, None, True]}},
        artifacts_dir="/a/1",
    )
    store.update_job(ids[1], status="failed", exit_code=1, failure_reason="script_failure", metrics=None)
    store.update_pipeline(
        record.id, status="failed", started_at=1.5, finished_at=2.25, error="job flaky failed"
    )
    return record.id, ids


def _dump(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every stored value with its SQLite storage class; times of creation masked."""
    out = {}
    with sqlite3.connect(url.removeprefix("sqlite:///")) as raw:
        for table, columns in (
            ("projects", PROJECT_COLUMNS),
            ("pipelines", PIPELINE_COLUMNS),
            ("jobs", JOB_COLUMNS),
        ):
            select = ", ".join("'now'" if c == "created_at" else f'typeof("{c}"), "{c}"' for c in columns)
            out[table] = raw.execute(f"SELECT {select} FROM {table} ORDER BY id").fetchall()
    return out


def test_both_stores_store_exactly_the_same_values(sqlite_template: Path, tmp_path: Path) -> None:
    urls = []
    for name, opener in (("sqlalchemy", RunStore.open), ("fast", FastSqliteStore.open)):
        path = tmp_path / f"{name}.db"
        shutil.copyfile(sqlite_template, path)
        urls.append(f"sqlite:///{path}")
        with opener(urls[-1]) as store:
            _exercise(store, tmp_path)
    by_sqlalchemy, by_fast = (_dump(u) for u in urls)
    assert by_fast == by_sqlalchemy
    assert len(by_fast["jobs"]) == 4


@pytest.mark.parametrize(("writer", "reader"), [("sqlalchemy", "fast"), ("fast", "sqlalchemy")])
def test_rows_written_by_one_store_read_the_same_in_the_other(
    url: str, tmp_path: Path, writer: str, reader: str
) -> None:
    open_as: dict[str, Callable[[str], Store]] = {"sqlalchemy": RunStore.open, "fast": FastSqliteStore.open}
    with open_as[writer](url) as store:
        pipeline_id, job_ids = _exercise(store, tmp_path)
        written = (store.list_pipelines(), store.list_jobs(pipeline_id), store.get_pipeline_by_iid("/p", 2))
    with open_as[reader](url) as store:
        read = (store.list_pipelines(), store.list_jobs(pipeline_id), store.get_pipeline_by_iid("/p", 2))
        assert read == written
        assert [j.id for j in store.list_jobs(pipeline_id, include_retried=False)] == job_ids[:1] + job_ids[
            2:
        ]
        assert store.get_job(job_ids[0]).metrics == {
            "accuracy": 0.93,
            "loss": 1e-9,
            "epochs": 3,
            "nested": {"a": [1, 2.5, None, True]},
        }
        assert store.get_pipeline(pipeline_id).variables == {"MODEL": "iris", "EMPTY": "", "UNICODE": "naïve"}
        # ...and the reader's writes continue the same counters.
        assert (
            store.create_pipeline(
                project_dir="/p", ref="main", sha="d" * 40, source="push", file="ci.yml", run_dir_root="/r"
            ).iid
            == 3
        )


def test_one_fast_store_serves_several_threads(url: str) -> None:
    errors: list[BaseException] = []
    iids: list[int] = []

    with FastSqliteStore.open(url) as store:

        def work() -> None:
            try:
                for _ in range(10):
                    record = store.create_pipeline(
                        project_dir="/p", ref="main", sha="a" * 40, source="push", file="f", run_dir_root="/r"
                    )
                    store.add_jobs(record.id, [NewJob("a", "test", "on_success", False)])
                    iids.append(record.iid)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert sorted(iids) == list(range(1, 41))
