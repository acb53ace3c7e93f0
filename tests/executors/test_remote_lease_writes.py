"""RemoteJobs' bookkeeping on the hot path of jobs on workers: when a job started (its worker's
first heartbeat, on the server's clock) and how often a lease reaches the database.

As in test_celery_exec.py, the database is an in-memory book here (the rules alone, with exact
times); tests/workers/ runs the real thing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from aicd.core.remote_jobs import ResultIn, outcome_of
from aicd.executors.base import JobRequest
from aicd.executors.celery_exec import RENEW_WRITE_SHARE, CeleryExecutor, RemoteJobs, RemoteSettings
from aicd.pipeline.ir import Variable

from .contract import make_job


class CountingBook:
    def __init__(self) -> None:
        self.renewals: list[float] = []
        self.claims: dict[int, float] = {}

    def queued(self, job_id: int) -> None:
        pass

    def claimed(self, job_id: int, runner_id: int, expires_at: float) -> bool:
        self.claims[job_id] = expires_at
        return True

    def renewed(self, job_id: int, expires_at: float) -> None:
        self.renewals.append(expires_at)

    def ended(self, job_id: int, end: str) -> None:
        pass

    def waiting_reason(self, tags: Sequence[str]) -> str | None:
        return None

    def runner_of(self, job_id: int) -> int | None:
        return None


def _request(tmp_path: Path, job_id: int) -> JobRequest:
    token = Variable("CI_JOB_TOKEN", "secret-token", expand=False, masked=True)
    return JobRequest(make_job("echo hi"), job_id, 1, 7, tmp_path / "run", (token,))


async def _claimed(tmp_path: Path, book: CountingBook, lease_s: float = 30.0) -> RemoteJobs:
    hub = RemoteJobs(lambda _job, _queue: None, book, RemoteSettings("q", lease_s=lease_s))
    await CeleryExecutor(hub).start(_request(tmp_path, 21), lambda _k, _t: None)
    await hub.claim(21, runner_id=4)
    return hub


def test_a_job_started_when_its_worker_first_heartbeats_on_the_servers_clock(tmp_path: Path) -> None:
    async def case() -> None:
        hub = await _claimed(tmp_path, CountingBook())
        attempt = hub.attempts[21]
        assert attempt.started_at is None and attempt.claimed_at is not None
        before = time.time()
        await hub.heartbeat(21)
        started = attempt.started_at
        assert started is not None and before <= started <= time.time()
        await hub.heartbeat(21)
        assert attempt.started_at == started  # the first one counts
        result = ResultIn("success", 0, None, 1.0, 2.0, [], None, {}, None, None)
        outcome = outcome_of(attempt, result)
        assert outcome.started_at == started  # not the worker's clock (1.0), nor the claim

    asyncio.run(case())


def test_log_chunks_and_heartbeats_write_the_lease_only_when_it_moved_on_enough(tmp_path: Path) -> None:
    async def case() -> None:
        book = CountingBook()
        hub = await _claimed(tmp_path, book, lease_s=30.0)
        attempt = hub.attempts[21]
        offset = 0
        for _ in range(50):
            offset = hub.append_log(21, offset, b"line\n")
            await hub.heartbeat(21)
        # the claim wrote the lease; 100 renewals within far less than 3 s (a tenth of 30 s) wrote none
        assert book.renewals == []
        assert attempt.expires_at > book.claims[21] - 1  # in memory it is always the newest
        attempt.booked_until -= 30.0 * RENEW_WRITE_SHARE + 0.1  # as if the lease moved on that long
        await hub.heartbeat(21)
        assert book.renewals == [attempt.expires_at]
        hub.append_log(21, offset, b"more\n")
        assert len(book.renewals) == 1

    asyncio.run(case())
