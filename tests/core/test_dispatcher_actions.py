"""Retry, play and cancel through the Dispatcher (in-process, real jobs, SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicd.errors import ConflictError

from .dispatcher_support import Harness
from .test_dispatcher import _until_running

FLAKY = """
stages: [build, test, deploy]
build:
  stage: build
  script:
    - echo "KEY=from-build" > build.env
  artifacts:
    reports:
      dotenv: build.env
flaky:
  stage: test
  # the first attempt leaves its mark in the project's cache (saved after a failure too); jobs are
  # sandboxed, so the cache is what they share
  cache: {key: marks, paths: [marks/], when: always}
  script:
    - 'if [ ! -f marks/ok ]; then mkdir -p marks; touch marks/ok; echo failing; exit 3; fi'
    - echo "passing with KEY=$KEY"
deploy:
  stage: deploy
  script:
    - echo deployed
"""


def test_retry_pipeline_runs_failed_jobs_again_and_what_they_held_back(
    tmp_path: Path, harness: Harness
) -> None:
    h = harness
    sha = h.commit({".gitlab-ci.yml": FLAKY})

    async def body() -> None:
        record = await h.submit(sha)
        assert (await h.finish(record.id)).status == "failed"
        first = h.jobs(record.id)
        assert {n: j.status for n, j in first.items()} == {
            "build": "success",
            "flaky": "failed",
            "deploy": "skipped",
        }
        with pytest.raises(ConflictError, match="only a finished job"):
            await h.state.dispatcher.retry_job(first["deploy"].id)
        again = await h.state.dispatcher.retry_pipeline(record.id)
        assert again.id == record.id
        done = await h.finish(record.id)
        assert done.status == "success", done.error
        jobs = h.jobs(record.id)
        assert jobs["build"].id == first["build"].id  # settled: kept, not run again
        assert jobs["flaky"].id != first["flaky"].id and jobs["flaky"].attempt == 2
        assert jobs["deploy"].id == first["deploy"].id and jobs["deploy"].status == "success"
        assert "passing with KEY=from-build" in h.log(jobs["flaky"])  # dotenv of a settled job
        old = h.state.runs.get_job(first["flaky"].id)
        assert old.retried and old.status == "failed" and "failing" in h.log(old)
        with pytest.raises(ConflictError, match="no failed or canceled job"):
            await h.state.dispatcher.retry_pipeline(record.id)

    h.run(body)


MANUAL = """
stages: [build, gate, deploy]
build:
  stage: build
  script: [echo built]
approve:
  stage: gate
  when: manual
  allow_failure: false
  script: [echo approved]
deploy:
  stage: deploy
  script: [echo deployed]
"""


def test_play_a_blocking_manual_job(harness: Harness) -> None:
    h = harness
    sha = h.commit({".gitlab-ci.yml": MANUAL})

    async def body() -> None:
        record = await h.submit(sha)
        done = await h.finish(record.id)
        assert done.status == "manual"  # blocked, as GitLab shows it
        jobs = h.jobs(record.id)
        assert {n: j.status for n, j in jobs.items()} == {
            "build": "success",
            "approve": "manual",
            "deploy": "created",
        }
        with pytest.raises(ConflictError, match="only a manual job"):
            await h.state.dispatcher.play_job(jobs["build"].id)
        played = await h.state.dispatcher.play_job(jobs["approve"].id)
        assert played.id == jobs["approve"].id and played.status == "pending"
        done = await h.finish(record.id)
        assert done.status == "success"
        after = h.jobs(record.id)
        assert {n: (j.id, j.status) for n, j in after.items()} == {
            n: (jobs[n].id, "success") for n in jobs
        }  # the same rows: they had never run
        assert "deployed" in h.log(after["deploy"])

    h.run(body)


def test_retry_one_job_and_refuse_while_running(harness_sqlite: Harness) -> None:
    h = harness_sqlite
    sha = h.commit({".gitlab-ci.yml": "a:\n  script: [echo a-ran]\nslow:\n  script: [sleep 1]\n"})

    async def body() -> None:
        record = await h.submit(sha)
        await _until_running(h, record.id, "slow")
        with pytest.raises(ConflictError, match="still running"):
            await h.state.dispatcher.retry_pipeline(record.id)
        assert (await h.finish(record.id)).status == "success"
        first = h.jobs(record.id)
        retried = await h.state.dispatcher.retry_job(first["a"].id)
        assert retried.attempt == 2 and retried.id != first["a"].id and retried.status == "pending"
        with pytest.raises(ConflictError, match="retried already"):
            await h.state.dispatcher.retry_job(first["a"].id)
        assert (await h.finish(record.id)).status == "success"
        jobs = h.jobs(record.id)
        assert jobs["a"].id == retried.id and jobs["a"].status == "success"
        assert jobs["slow"].id == first["slow"].id  # not run again
        assert "a-ran" in h.log(jobs["a"])

    h.run(body)


def test_cancel_a_running_pipeline(harness: Harness) -> None:
    h = harness
    ci = "stages: [a, b]\nslow:\n  stage: a\n  script: [echo go, sleep 30]\n"
    ci += "next:\n  stage: b\n  script: [echo never]\n"
    sha = h.commit({".gitlab-ci.yml": ci})

    async def body() -> None:
        record = await h.submit(sha)
        await _until_running(h, record.id, "slow")
        canceled = await h.state.dispatcher.cancel_pipeline(record.id)
        assert canceled.status == "canceled"
        jobs = h.jobs(record.id)
        assert {n: j.status for n, j in jobs.items()} == {"slow": "canceled", "next": "canceled"}
        assert "go" in h.log(jobs["slow"])
        # a finished pipeline is returned unchanged; retry runs the canceled jobs again
        assert (await h.state.dispatcher.cancel_pipeline(record.id)).status == "canceled"

    h.run(body)


def test_cancel_one_job(harness_sqlite: Harness) -> None:
    h = harness_sqlite
    sha = h.commit({".gitlab-ci.yml": "slow:\n  script: [sleep 30]\nquick:\n  script: [sleep 0.5]\n"})

    async def body() -> None:
        record = await h.submit(sha)
        await _until_running(h, record.id, "slow")
        job = h.jobs(record.id)["slow"]
        canceled = await h.state.dispatcher.cancel_job(job.id)
        assert canceled.status == "canceled"
        done = await h.finish(record.id)
        assert done.status == "canceled"
        assert h.jobs(record.id)["quick"].status == "success"
        with pytest.raises(ConflictError, match="only a pending or running job"):
            await h.state.dispatcher.cancel_job(job.id)

    h.run(body)


def test_cancel_a_blocked_pipeline(harness_sqlite: Harness) -> None:
    h = harness_sqlite
    sha = h.commit({".gitlab-ci.yml": MANUAL})

    async def body() -> None:
        record = await h.submit(sha)
        assert (await h.finish(record.id)).status == "manual"
        assert (await h.state.dispatcher.cancel_pipeline(record.id)).status == "canceled"
        jobs = h.jobs(record.id)
        assert {n: j.status for n, j in jobs.items()} == {
            "build": "success",
            "approve": "canceled",
            "deploy": "canceled",
        }

    h.run(body)


def test_stop_cancels_what_runs(harness_sqlite: Harness) -> None:
    h = harness_sqlite
    sha = h.commit({".gitlab-ci.yml": "slow:\n  script: [sleep 30]\n"})

    async def body() -> int:
        record = await h.submit(sha)
        await _until_running(h, record.id, "slow")
        return record.id

    pipeline_id = h.run(body)  # run() stops the dispatcher at the end
    assert h.state.runs.get_pipeline(pipeline_id).status == "canceled"
    assert h.jobs(pipeline_id)["slow"].status == "canceled"


def test_a_pipeline_left_created_by_a_crash_is_prepared_and_run_at_start(harness: Harness) -> None:
    h = harness
    sha = h.commit({".gitlab-ci.yml": 'job:\n  script: [echo "recovered $GIVEN"]\n'})
    # what a server killed right after recording the pipeline leaves: a row, nothing else
    record = h.state.runs.create_pipeline(
        project_dir=h.project.key,
        ref="main",
        sha=sha,
        source="push",
        file=".gitlab-ci.yml",
        run_dir_root=str(h.home / "runs"),
        variables={"GIVEN": "kept"},
    )
    local = h.state.runs.create_pipeline(  # an `aicd run` sharing the database is left alone
        project_dir="/some/local/dir", ref="main", sha=sha, source="push", file="x", run_dir_root="/tmp"
    )
    h.state.runs.update_pipeline(local.id, status="running")

    async def body() -> None:
        done = await h.finish(record.id)
        assert done.status == "success", done.error
        assert "recovered kept" in h.log(h.jobs(record.id)["job"])
        assert h.state.runs.get_pipeline(local.id).status == "running"

    h.run(body)
