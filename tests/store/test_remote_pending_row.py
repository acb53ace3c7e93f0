"""A remote attempt's row on its way to a worker (SQLite and PostgreSQL): the run's recorder does not
write it `running`; the job token's transaction writes it `pending` (one commit for both), and the
remote book then skips its own write of `pending` before the message goes; a row not written so is
written by the book. A trigger job (it runs on the server) is still written `running`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from aicd.core.job_tokens import JobTokenExecutor
from aicd.core.remote_jobs import StoreBook
from aicd.core.server_recorder import ServerRecorder
from aicd.engine import JobStatus
from aicd.executors.base import JobHandle, JobRequest, OutputCallback
from aicd.pipeline.ir import Job, Trigger
from aicd.store.db import connect
from aicd.store.job_leases import JobLeaseStore
from aicd.store.job_tokens import JobTokenStore
from aicd.store.records import NewJob
from aicd.store.repository import RunStore
from aicd.store.runners import RunnerStore
from aicd.store.schema import pipelines


class CountingRuns(RunStore):
    writes = 0

    def update_job(self, job_id: int, **fields: object) -> None:  # type: ignore[override]
        self.writes += 1
        super().update_job(job_id, **fields)  # type: ignore[arg-type]


class NoStart:
    name = "none"

    def __init__(self, rows: list[str], runs: RunStore) -> None:
        self.rows = rows
        self.runs = runs

    async def start(self, request: JobRequest, on_output: OutputCallback) -> JobHandle:
        self.rows.append(self.runs.get_job(request.job_id).status)  # as the broker's message would go
        raise RuntimeError("not sent here")

    async def close(self) -> None:
        pass


def test_a_remote_attempts_row_is_written_pending_with_its_token_and_not_again(
    migrated_url: str, tmp_path: Path
) -> None:
    database = connect(migrated_url)
    try:
        runs = CountingRuns(database)
        record = runs.create_pipeline(
            project_dir="server:shop",
            ref="main",
            sha="a" * 40,
            source="push",
            file="ci.yml",
            run_dir_root=str(tmp_path),
        )
        with database.read("the pipeline's project") as conn:
            project_id = conn.execute(
                select(pipelines.c.project_id).where(pipelines.c.id == record.id)
            ).scalar_one()
        job_id, other_id, bridge_id = runs.add_jobs(
            record.id,
            [
                NewJob("train", "test", "on_success", False, "created"),
                NewJob("lint", "test", "on_success", False, "created"),
                NewJob("child", "test", "on_success", False, "created"),
            ],
        )
        queued: set[int] = set()
        recorder = ServerRecorder(runs, record, remote=True)
        book = StoreBook(runs, JobLeaseStore(database), RunnerStore(database), pending_rows=queued)
        job = Job(name="train", base_name="train", stage="test", script=("echo hi",))

        recorder.job_status(job, job_id, 1, JobStatus.RUNNING, None)
        assert runs.writes == 0 and runs.get_job(job_id).status == "created"
        seen: list[str] = []
        tokens = JobTokenExecutor(
            NoStart(seen, runs), JobTokenStore(database), project_id=project_id, queued=queued
        )
        request = JobRequest(job, job_id, 1, record.id, Path(record.run_dir), ())
        with pytest.raises(RuntimeError, match="not sent here"):
            asyncio.run(tokens.start(request, lambda _k, _t: None))
        assert seen == ["pending"]  # committed with the token, before the executor was handed it
        assert runs.get_job(job_id).started_at is None and job_id not in queued  # start failed
        queued.add(job_id)
        book.queued(job_id)  # written with the token already: no second commit
        assert runs.writes == 0 and job_id not in queued

        book.queued(other_id)  # a row not written with a token: the book writes it
        assert runs.get_job(other_id).status == "pending" and runs.writes == 1

        runs.update_job(other_id, status="running")  # adopted after a restart: its row stays running
        queued.clear()
        other = JobRequest(job, other_id, 1, record.id, Path(record.run_dir), ())
        with pytest.raises(RuntimeError, match="not sent here"):
            asyncio.run(tokens.start(other, lambda _k, _t: None))
        assert seen == ["pending", "running"]

        bridge = Job(name="child", base_name="child", stage="test", trigger=Trigger(include="c.yml"))
        recorder.job_status(bridge, bridge_id, 1, JobStatus.RUNNING, None)
        assert runs.get_job(bridge_id).status == "running"  # a trigger job runs on the server
    finally:
        database.dispose()
