"""Store reads and writes, on three backends (see conftest.backend): RunStore on
SQLite and on PostgreSQL, and FastSqliteStore on SQLite."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_backends import Backend

from aicd.errors import NotFoundError
from aicd.store import FastSqliteStore, JobRecord, NewJob, PipelineRecord, Store


@pytest.fixture
def store(backend: Backend, backend_url: str) -> Iterator[Store]:
    with backend.open(backend_url) as opened:
        assert isinstance(opened, FastSqliteStore) == backend.fast
        yield opened


def _pipeline(store: Store, project: str = "/work/p", **extra: object) -> PipelineRecord:
    return store.create_pipeline(
        project_dir=project,
        ref="main",
        sha="0123456789abcdef0123456789abcdef01234567",
        source="push",
        file=".gitlab-ci.yml",
        run_dir_root=f"{project}/.aicd/runs",
        **extra,  # type: ignore[arg-type]
    )


def test_create_pipeline_returns_the_stored_record(store: Store) -> None:
    before = time.time()
    record = _pipeline(store, name="nightly", variables={"MODEL": "iris", "EMPTY": ""})

    assert record.iid == 1
    assert record.status == "created"
    assert record.run_dir == f"/work/p/.aicd/runs/{record.id}"
    assert before <= record.created_at <= time.time()
    assert record.started_at is None and record.finished_at is None and record.error is None
    assert record.name == "nightly"
    assert record.variables == {"MODEL": "iris", "EMPTY": ""}
    assert store.get_pipeline(record.id) == record


def test_update_pipeline_sets_only_the_given_fields(store: Store) -> None:
    record = _pipeline(store)
    store.update_pipeline(record.id, status="running", started_at=100.5)
    store.update_pipeline(record.id, status="failed", finished_at=160.25, error="job test failed")

    got = store.get_pipeline(record.id)
    assert (got.status, got.started_at, got.finished_at, got.error) == (
        "failed",
        100.5,
        160.25,
        "job test failed",
    )
    assert (got.ref, got.sha, got.iid, got.run_dir) == (record.ref, record.sha, record.iid, record.run_dir)


def test_iid_counts_per_project_and_lists_are_newest_first(store: Store) -> None:
    a1 = _pipeline(store, "/a")
    b1 = _pipeline(store, "/b")
    a2 = _pipeline(store, "/a")
    a3 = _pipeline(store, "/a")
    b2 = _pipeline(store, "/b")

    assert [p.iid for p in (a1, a2, a3)] == [1, 2, 3]
    assert [p.iid for p in (b1, b2)] == [1, 2]
    assert len({p.id for p in (a1, a2, a3, b1, b2)}) == 5
    assert [p.id for p in store.list_pipelines()] == [b2.id, a3.id, a2.id, b1.id, a1.id]
    assert [p.id for p in store.list_pipelines(project_dir="/a")] == [a3.id, a2.id, a1.id]
    assert [p.id for p in store.list_pipelines(project_dir="/a", limit=2)] == [a3.id, a2.id]
    assert store.list_pipelines(project_dir="/nowhere") == []
    assert store.get_pipeline_by_iid("/b", 2) == b2
    with pytest.raises(NotFoundError, match="pipeline #3 of /b does not exist"):
        store.get_pipeline_by_iid("/b", 3)


def test_add_jobs_keeps_order_for_a_large_pipeline(store: Store) -> None:
    record = _pipeline(store)
    new = [NewJob(f"job {i:03d}", f"stage{i % 4}", "on_success", i % 7 == 0) for i in range(200)]
    new.append(NewJob("deploy", "deploy", "manual", True, status="manual"))

    started = time.perf_counter()
    ids = store.add_jobs(record.id, new)
    elapsed = time.perf_counter() - started

    assert len(set(ids)) == len(new)
    jobs = store.list_jobs(record.id)
    assert [j.id for j in jobs] == ids
    assert [(j.name, j.stage, j.when, j.allow_failure, j.status) for j in jobs] == [
        (n.name, n.stage, n.when, n.allow_failure, n.status) for n in new
    ]
    assert all(j.pipeline_id == record.id and j.attempt == 1 and not j.retried for j in jobs)
    assert all(j.created_at is not None for j in jobs)
    assert store.add_jobs(record.id, []) == []
    assert elapsed < 2.0, f"201 jobs took {elapsed:.2f}s: not one transaction?"


def test_update_job_round_trips_every_field(store: Store, tmp_path: Path) -> None:
    record = _pipeline(store)
    (job_id,) = store.add_jobs(record.id, [NewJob("test", "test", "on_success", False)])
    store.update_job(job_id, status="running", started_at=10.0, log_path=tmp_path / "logs" / "1.log")
    store.update_job(
        job_id,
        status="failed",
        finished_at=12.5,
        exit_code=3,
        failure_reason="script_failure",
        tests_total=10,
        tests_passed=7,
        tests_failed=2,
        tests_skipped=1,
        coverage=81.25,
        metrics={"accuracy": 0.93, "loss": 0.2},
        artifacts_dir="/a/1",
    )

    job = store.get_job(job_id)
    assert job == JobRecord(
        id=job_id,
        pipeline_id=record.id,
        name="test",
        stage="test",
        status="failed",
        when="on_success",
        allow_failure=False,
        attempt=1,
        retried=False,
        exit_code=3,
        failure_reason="script_failure",
        started_at=10.0,
        finished_at=12.5,
        log_path=str(tmp_path / "logs" / "1.log"),
        tests_total=10,
        tests_passed=7,
        tests_failed=2,
        tests_skipped=1,
        coverage=81.25,
        created_at=job.created_at,
        artifacts_dir="/a/1",
        metrics={"accuracy": 0.93, "loss": 0.2},
    )
    assert job.duration_s == 2.5
    store.update_job(job_id, metrics=None, exit_code=None)
    assert (store.get_job(job_id).metrics, store.get_job(job_id).exit_code) == (None, None)


def test_a_retry_marks_earlier_attempts_retried(store: Store) -> None:
    record = _pipeline(store)
    first, other = store.add_jobs(
        record.id, [NewJob("flaky", "test", "on_success", False), NewJob("lint", "test", "on_success", False)]
    )
    (second,) = store.add_jobs(record.id, [NewJob("flaky", "test", "on_success", False, attempt=2)])
    (third,) = store.add_jobs(record.id, [NewJob("flaky", "test", "on_success", False, attempt=3)])

    every = {j.id: j for j in store.list_jobs(record.id)}
    assert [every[i].retried for i in (first, second, third, other)] == [True, True, False, False]
    assert [j.id for j in store.list_jobs(record.id, include_retried=False)] == [other, third]


def test_jobs_of_different_pipelines_do_not_mix(store: Store) -> None:
    one, two = _pipeline(store), _pipeline(store)
    store.add_jobs(one.id, [NewJob("a", "build", "on_success", False)])
    store.add_jobs(two.id, [NewJob("b", "build", "on_success", False)])
    assert [j.name for j in store.list_jobs(one.id)] == ["a"]
    assert [j.name for j in store.list_jobs(two.id)] == ["b"]
    empty = _pipeline(store)
    assert store.list_jobs(empty.id) == []


def test_update_jobs_writes_all_in_order_or_none(store: Store) -> None:
    record = _pipeline(store)
    a, b = store.add_jobs(
        record.id, [NewJob("a", "test", "on_success", False), NewJob("b", "test", "on_success", False)]
    )
    store.update_jobs([(a, {"status": "running", "started_at": 1.0}), (b, {"status": "running"})])
    store.update_jobs([(a, {"status": "success", "exit_code": 0}), (a, {"status": "failed"}), (b, {})])
    jobs = {j.name: j for j in store.list_jobs(record.id)}
    assert (jobs["a"].status, jobs["a"].exit_code, jobs["a"].started_at) == ("failed", 0, 1.0)  # later wins
    assert jobs["b"].status == "running"
    store.update_jobs([])
    # one missing row: the whole batch is rolled back
    with pytest.raises(NotFoundError, match="job 777 does not exist"):
        store.update_jobs([(b, {"status": "success"}), (777, {"status": "success"})])
    assert store.get_job(b).status == "running"
    with pytest.raises(TypeError, match="exit_cod"):
        store.update_jobs([(b, {"exit_cod": 1})])


def test_missing_rows_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match=r"^pipeline 4242 does not exist$"):
        store.get_pipeline(4242)
    with pytest.raises(NotFoundError, match="pipeline 4242 does not exist"):
        store.update_pipeline(4242, status="failed")
    with pytest.raises(NotFoundError, match="pipeline 4242 does not exist"):
        store.list_jobs(4242)
    with pytest.raises(NotFoundError, match="pipeline 4242 does not exist"):
        store.add_jobs(4242, [NewJob("a", "test", "on_success", False)])
    with pytest.raises(NotFoundError, match=r"^job 777 does not exist$"):
        store.get_job(777)
    with pytest.raises(NotFoundError, match="job 777 does not exist"):
        store.update_job(777, status="success")


def test_unknown_fields_are_refused(store: Store) -> None:
    record = _pipeline(store)
    (job_id,) = store.add_jobs(record.id, [NewJob("a", "test", "on_success", False)])
    with pytest.raises(
        TypeError, match='cannot set job field\\(s\\) exit_cod \\(did you mean "exit_code"\\?\\)'
    ):
        store.update_job(job_id, exit_cod=1)
    with pytest.raises(TypeError, match="pipeline_id"):
        store.update_job(job_id, pipeline_id=99)
    with pytest.raises(TypeError, match="iid"):
        store.update_pipeline(record.id, iid=5)
    assert store.get_job(job_id).status == "created"
    assert store.get_pipeline(record.id).iid == 1


def test_data_survives_reopening(backend: Backend, backend_new_url: str) -> None:
    with backend.create(backend_new_url) as store:
        record = _pipeline(store)
        (job_id,) = store.add_jobs(record.id, [NewJob("a", "test", "on_success", False)])
        store.update_job(job_id, status="success", exit_code=0)
    with backend.open(backend_new_url) as store:
        assert store.get_pipeline(record.id) == record
        assert store.get_job(job_id).status == "success"
        assert _pipeline(store).iid == 2


def test_a_closed_store_reconnects_on_next_use(backend: Backend, backend_url: str) -> None:
    store = backend.open(backend_url)
    record = _pipeline(store)
    store.close()
    store.close()  # twice is fine
    try:
        assert store.get_pipeline(record.id) == record
        assert _pipeline(store).iid == 2
    finally:
        store.close()


def test_where_names_the_database(backend: Backend, backend_url: str) -> None:
    with backend.open(backend_url) as store:
        if backend.dialect == "sqlite":
            assert store.where == backend_url.removeprefix("sqlite:///")
        else:
            assert store.where.startswith("postgresql+psycopg://")
