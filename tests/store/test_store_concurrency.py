"""Several processes write the same database at once (two `aicd run` in parallel),
some through RunStore (SQLAlchemy), some through FastSqliteStore (sqlite3)."""

from __future__ import annotations

import multiprocessing
import shutil
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from aicd.store import FastSqliteStore, NewJob, RunStore, Store, current_revision, open_store
from aicd.store.db import connect
from aicd.store.migrations import HEAD

WORKERS = 4
PIPELINES_EACH = 15
JOBS_EACH = 3


_OPENERS: dict[str, Callable[[str], Store]] = {
    "sqlalchemy": RunStore.open,
    "fast": FastSqliteStore.open,
    "open_store": open_store,
}


def _worker(url: str, me: int, kind: str, start: Barrier, results: Queue[Any]) -> None:
    """Open the store (`kind`: a key of _OPENERS), then record pipelines alternately
    for two projects, as `aicd run` would."""
    try:
        start.wait(timeout=30)
        done: list[tuple[str, int, int]] = []
        with _OPENERS[kind](url) as store:
            opened = type(store).__name__
            for i in range(PIPELINES_EACH):
                project = f"/projects/{i % 2}"
                p = store.create_pipeline(
                    project_dir=project,
                    ref="main",
                    sha="a" * 40,
                    source="push",
                    file="ci.yml",
                    run_dir_root="/r",
                )
                store.update_pipeline(p.id, status="running", started_at=time.time())
                ids = store.add_jobs(
                    p.id, [NewJob(f"job{k}", "test", "on_success", False) for k in range(JOBS_EACH)]
                )
                for job_id in ids:
                    store.update_job(job_id, status="running", started_at=time.time())
                    store.update_job(job_id, status="success", finished_at=time.time(), exit_code=0)
                store.update_pipeline(p.id, status="success", finished_at=time.time())
                done.append((project, p.iid, p.id))
        results.put((me, (opened, done)))
    except BaseException:
        results.put((me, traceback.format_exc()))


def test_parallel_writers_never_lock_out_or_duplicate_iids(db_url: str) -> None:
    # A brand-new database: every worker races to create and migrate it; half go
    # through open_store, which takes the fast path once the schema is committed.
    opened = _run_workers(db_url, ["sqlalchemy", "open_store"] * (WORKERS // 2))
    assert opened[0::2] == ["RunStore"] * (WORKERS // 2)


def test_fast_and_sqlalchemy_writers_together(sqlite_template: Path, tmp_path: Path) -> None:
    path = tmp_path / "aicd.db"
    shutil.copyfile(sqlite_template, path)
    opened = _run_workers(f"sqlite:///{path}", ["sqlalchemy", "fast"] * (WORKERS // 2))
    assert opened == ["RunStore", "FastSqliteStore"] * (WORKERS // 2)


def _run_workers(db_url: str, kinds: list[str]) -> list[str]:
    """Run one worker per kind at once, check every row they wrote; the store each opened."""
    # fork: real separate processes without paying the interpreter start-up each time
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(len(kinds))
    results: Queue[Any] = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(db_url, me, kind, start, results)) for me, kind in enumerate(kinds)
    ]
    for proc in procs:
        proc.start()
    outputs = dict(results.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(timeout=10)
        assert proc.exitcode == 0

    created = []
    for me, out in sorted(outputs.items()):
        assert not isinstance(out, str), f"worker {me} ({kinds[me]}) failed:\n{out}"
        created.extend(out[1])
    assert len(created) == len(kinds) * PIPELINES_EACH

    iids: dict[str, list[int]] = defaultdict(list)
    for project, iid, _ in created:
        iids[project].append(iid)
    for project, numbers in iids.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), f"iids of {project}: {sorted(numbers)}"
    assert len({pipeline_id for _, _, pipeline_id in created}) == len(created)

    assert current_revision(db_url) == HEAD
    with RunStore.open(db_url) as store:
        pipelines = store.list_pipelines(limit=1000)
        assert len(pipelines) == len(created)
        assert {p.status for p in pipelines} == {"success"}
        for project, numbers in iids.items():
            assert len(store.list_pipelines(project_dir=project, limit=1000)) == len(numbers)
        for p in pipelines:
            jobs = store.list_jobs(p.id)
            assert [(j.name, j.status, j.exit_code) for j in jobs] == [
                (f"job{k}", "success", 0) for k in range(JOBS_EACH)
            ]
            assert all(j.started_at is not None and j.finished_at is not None for j in jobs)
    return [outputs[me][0] for me in range(len(kinds))]


def _first_connection(url: str, start: Barrier, results: Queue[Any]) -> None:
    try:
        database = connect(url)  # no connection yet: they all connect after the barrier
        start.wait(timeout=30)
        with database.writer.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        with database.engine.connect() as conn:
            results.put(conn.exec_driver_sql("PRAGMA journal_mode").scalar())
        database.dispose()
    except BaseException:
        results.put(traceback.format_exc())


def test_first_connections_to_a_new_sqlite_file_do_not_fail(tmp_path: Path) -> None:
    # SQLite answers "database is locked" at once (no busy wait) to a process that
    # asks for WAL while another one is switching a new file to it.
    ctx = multiprocessing.get_context("fork")
    for round_ in range(15):
        url = f"sqlite:///{tmp_path / f'{round_}.db'}"
        start = ctx.Barrier(6)
        results: Queue[Any] = ctx.Queue()
        procs = [ctx.Process(target=_first_connection, args=(url, start, results)) for _ in range(6)]
        for proc in procs:
            proc.start()
        answers = [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=10)
        assert answers == ["wal"] * 6, f"round {round_}: " + next(a for a in answers if a != "wal")
