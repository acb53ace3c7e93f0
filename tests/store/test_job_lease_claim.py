"""JobLeaseStore.claim on SQLite and PostgreSQL: one claim per attempt, and with `mark_running`
the job's row becomes `running` in the same transaction (or not at all)."""

from __future__ import annotations

import time

from aicd.store.db import connect
from aicd.store.job_leases import JobLeaseStore
from aicd.store.records import NewJob
from aicd.store.repository import RunStore


def test_a_claim_marks_the_job_running_in_the_same_transaction_once(migrated_url: str) -> None:
    with RunStore.open(migrated_url) as runs:
        pipeline = runs.create_pipeline(
            project_dir="server:shop",
            ref="main",
            sha="a" * 40,
            source="push",
            file="ci.yml",
            run_dir_root="/r",
        )
        job_id, other_id = runs.add_jobs(
            pipeline.id,
            [
                NewJob("train", "train", "on_success", False, "pending"),
                NewJob("test", "test", "on_success", False, "pending"),
            ],
        )
    database = connect(migrated_url)
    try:
        leases = JobLeaseStore(database)
        before = time.time()
        lease = leases.claim(job_id, 3, expires_at=before + 30, mark_running=True)
        assert lease is not None and lease.runner_id == 3
        assert leases.claim(job_id, 4, expires_at=before + 30, mark_running=True) is None  # taken
        assert leases.claim(other_id, 4, expires_at=before + 30) is not None  # the row left alone
        with RunStore.open(migrated_url) as runs:
            row = runs.get_job(job_id)
            other = runs.get_job(other_id)
        assert row.status == "running" and row.started_at is not None and before <= row.started_at
        assert row.started_at == lease.claimed_at
        assert other.status == "pending" and other.started_at is None
        got = leases.get(job_id)
        assert got is not None and got.runner_id == 3  # the second claim changed nothing
    finally:
        database.dispose()
