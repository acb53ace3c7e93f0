"""RemoteJobs, the server's table of attempts out on workers: claims (one per attempt), leases,
the stuck timeout, cancel, log offsets, and the fencing of results from attempts given up.

The broker and the database are replaced here by an in-memory `Book` and a list of sent
messages: this file checks the bookkeeping rules alone, with exact times. The real thing
(RabbitMQ, PostgreSQL, `aicd worker` processes) is tests/workers/.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from aicd.errors import ConflictError, JobDetached, StoreError
from aicd.executors.base import JobOutcome, JobRequest
from aicd.executors.celery_exec import RESEND_S, SEND_RETRY_S, CeleryExecutor, RemoteJobs, RemoteSettings
from aicd.pipeline.ir import Variable

from .contract import make_job


def in_loop(case: Callable[[Path], Awaitable[None]]) -> Callable[[Path], None]:
    @functools.wraps(case)
    def run(tmp_path: Path) -> None:
        asyncio.run(case(tmp_path))

    return run


class Book:
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self.claims: dict[int, int] = {}
        self.reason: str | None = "no worker with tags gpu"

    def queued(self, job_id: int) -> None:
        self.events.append(("queued", job_id))

    def claimed(self, job_id: int, runner_id: int, expires_at: float) -> bool:
        if job_id in self.claims:
            return False
        self.claims[job_id] = runner_id
        self.events.append(("claimed", job_id))
        return True

    def renewed(self, job_id: int, expires_at: float) -> None:
        pass

    def ended(self, job_id: int, end: str) -> None:
        self.events.append((end, job_id))

    def waiting_reason(self, tags: Sequence[str]) -> str | None:
        return self.reason

    def runner_of(self, job_id: int) -> int | None:
        return self.claims.get(job_id)


def _request(tmp_path: Path, job_id: int, tags: tuple[str, ...] = ()) -> JobRequest:
    job = make_job("echo hi", tags=tags)
    token = Variable("CI_JOB_TOKEN", "secret-token", expand=False, masked=True)
    return JobRequest(job, job_id, 1, 7, tmp_path / "run", (token,))


def _hub(sent: list[tuple[int, str]], book: Book, **settings: float) -> RemoteJobs:
    return RemoteJobs(
        lambda job_id, queue: sent.append((job_id, queue)), book, RemoteSettings("q", **settings)
    )


def _success() -> JobOutcome:
    now = time.time()
    return JobOutcome("success", 0, None, now, now, Path("/nonexistent"))


@in_loop
async def test_an_attempt_is_claimed_once_and_nothing_of_it_counts_after_its_result(tmp_path: Path) -> None:
    sent: list[tuple[int, str]] = []
    book = Book()
    hub = _hub(sent, book)
    executor = CeleryExecutor(hub, job_env={"AICD_ENV_SCOPE": "demo"}, project_id=3)
    handle = await executor.start(_request(tmp_path, 11, ("gpu", "cuda")), lambda _k, _t: None)
    assert sent == [(11, "q.tags.cuda+gpu")]  # only the attempt id travels, to its tag set's queue
    assert hub.pending_reason(11) == "no worker with tags gpu"
    attempt = await hub.claim(11, runner_id=5)
    assert attempt.job_env == {"AICD_ENV_SCOPE": "demo"} and hub.runner_of(11) == 5
    with pytest.raises(ConflictError, match="taken by a worker already"):
        await hub.claim(11, runner_id=6)  # a redelivered message: dropped
    assert hub.pending_reason(11) is None
    assert hub.running_by_runner() == {5: 1}
    assert await hub.heartbeat(11) == "running"
    hub.finish(11, _success())
    outcome = await asyncio.wait_for(handle.wait(), 5)
    assert outcome.status == "success"
    for late in (lambda: hub.finish(11, _success()), lambda: hub.append_log(11, 0, b"x")):
        with pytest.raises(ConflictError, match="not running on a worker any more"):
            late()
    with pytest.raises(ConflictError):
        await hub.heartbeat(11)
    assert book.events == [("queued", 11), ("claimed", 11), ("finished", 11)]


@in_loop
async def test_a_silent_worker_loses_the_attempt_and_its_late_result_is_refused(tmp_path: Path) -> None:
    hub = _hub([], Book(), lease_s=30.0)
    handle = await CeleryExecutor(hub).start(_request(tmp_path, 12), lambda _k, _t: None)
    attempt = await hub.claim(12, runner_id=5)
    hub.check_leases(now=attempt.expires_at - 1)
    assert not attempt.done  # within its lease
    hub.check_leases(now=attempt.expires_at + 0.1)
    outcome = await asyncio.wait_for(handle.wait(), 5)
    assert (outcome.status, outcome.failure_reason) == ("failed", "runner_system_failure")
    assert "sent no heartbeat" in outcome.log_path.read_text()
    with pytest.raises(ConflictError):  # the attempt id is a fencing token
        hub.finish(12, _success())


@in_loop
async def test_an_attempt_no_worker_takes_fails_as_stuck_with_the_reason(tmp_path: Path) -> None:
    hub = _hub([], Book(), stuck_timeout_s=60.0)
    handle = await CeleryExecutor(hub).start(_request(tmp_path, 13, ("gpu",)), lambda _k, _t: None)
    attempt = hub.attempts[13]
    hub.check_leases(now=attempt.queued_at + 59)
    assert not attempt.done
    hub.check_leases(now=attempt.queued_at + 61)
    outcome = await asyncio.wait_for(handle.wait(), 5)
    assert (outcome.status, outcome.failure_reason) == ("failed", "stuck_or_timeout_failure")
    assert "no worker with tags gpu" in outcome.log_path.read_text()


@in_loop
async def test_cancel_reaches_a_worker_waiting_on_its_heartbeat_at_once(tmp_path: Path) -> None:
    hub = _hub([], Book(), lease_s=30.0)
    handle = await CeleryExecutor(hub).start(_request(tmp_path, 14), lambda _k, _t: None)
    await hub.claim(14, runner_id=5)
    waiting = asyncio.ensure_future(hub.heartbeat(14, wait_s=10))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await handle.cancel("canceled")
    assert await asyncio.wait_for(waiting, 5) == "canceled"
    assert time.monotonic() - started < 1
    now = time.time()
    hub.finish(14, JobOutcome("canceled", None, "canceled", now, now, Path("/nonexistent")))
    assert (await handle.wait()).status == "canceled"

    # not taken yet: canceled at once; the job's timeout: failed, job_execution_timeout
    queued = await CeleryExecutor(hub).start(_request(tmp_path, 15), lambda _k, _t: None)
    await queued.cancel("canceled")
    assert (await queued.wait()).status == "canceled"
    timed = await CeleryExecutor(hub).start(_request(tmp_path, 16), lambda _k, _t: None)
    await hub.claim(16, runner_id=5)
    await timed.cancel("timeout")
    assert await hub.heartbeat(16) == "canceled"
    hub.finish(16, JobOutcome("canceled", None, "canceled", now, now, Path("/nonexistent")))
    outcome = await timed.wait()
    assert (outcome.status, outcome.failure_reason) == ("failed", "job_execution_timeout")


@in_loop
async def test_log_chunks_resent_are_skipped_and_a_gap_is_refused(tmp_path: Path) -> None:
    hub = _hub([], Book())
    await CeleryExecutor(hub).start(_request(tmp_path, 17), lambda _k, _t: None)
    await hub.claim(17, runner_id=5)
    assert hub.append_log(17, 0, b"one\n") == 4
    assert hub.append_log(17, 0, b"one\ntwo\n") == 8  # sent again after a lost answer
    with pytest.raises(ConflictError, match="send from 8"):
        hub.append_log(17, 20, b"gap")
    assert hub.attempts[17].log_path.read_bytes() == b"one\ntwo\n"


@in_loop
async def test_a_message_for_an_attempt_no_worker_took_is_sent_again(tmp_path: Path) -> None:
    sent: list[tuple[int, str]] = []
    hub = _hub(sent, Book())
    await CeleryExecutor(hub).start(_request(tmp_path, 19, ("gpu",)), lambda _k, _t: None)
    attempt = hub.attempts[19]
    hub.check_leases(now=attempt.sent_at + RESEND_S - 1)
    hub.check_leases(now=attempt.sent_at + RESEND_S + 1)
    for _ in range(100):
        if len(sent) == 2:
            break
        await asyncio.sleep(0.02)
    assert sent == [(19, "q.tags.gpu"), (19, "q.tags.gpu")]
    await hub.claim(19, runner_id=5)
    hub.check_leases(now=attempt.sent_at + 10 * RESEND_S)  # claimed: no more copies (lease aside)
    await asyncio.sleep(0.1)
    assert len(sent) == 2


@in_loop
async def test_an_adopted_attempt_is_followed_at_once_and_taken_over_without_a_message(
    tmp_path: Path,
) -> None:
    sent: list[tuple[int, str]] = []
    hub = _hub(sent, Book())
    early = hub.adopt(_request(tmp_path, 21), runner_id=5)
    assert await hub.heartbeat(21) == "running"  # before the engine got there
    assert hub.append_log(21, 0, b"line\n") == 5
    hub.finish(21, _success())  # it even ended before the engine started it again
    late = hub.adopt(_request(tmp_path, 22), runner_id=5)
    first = await CeleryExecutor(hub).start(_request(tmp_path, 21), lambda _k, _t: None)
    second = await CeleryExecutor(hub).start(_request(tmp_path, 22), lambda _k, _t: None)
    assert (first, second) == (early, late) and sent == []  # nothing sent again
    assert (await asyncio.wait_for(first.wait(), 5)).status == "success"
    hub.finish(22, _success())
    assert (await asyncio.wait_for(second.wait(), 5)).status == "success"


@in_loop
async def test_a_message_the_broker_refuses_is_sent_again_and_the_attempt_waits(tmp_path: Path) -> None:
    """A broker down or restarting loses no job: the attempt stays queued (its row `pending`), says
    why it waits, and its message is sent again a few seconds later."""
    sent: list[tuple[int, str]] = []
    down = [True]

    def send(job_id: int, queue: str) -> None:
        if down[0]:
            raise ConnectionRefusedError("broker down")
        sent.append((job_id, queue))

    hub = RemoteJobs(send, Book(), RemoteSettings("q"))
    handle = await CeleryExecutor(hub).start(_request(tmp_path, 18), lambda _k, _t: None)
    attempt = hub.attempts[18]
    assert not attempt.done and sent == []
    assert "the broker did not take its message yet (ConnectionRefusedError)" in str(hub.pending_reason(18))
    down[0] = False
    refused_at = time.time()
    hub.check_leases(now=refused_at + SEND_RETRY_S - 1)
    await asyncio.sleep(0.1)
    assert sent == []  # not at once: the broker may still be restarting
    hub.check_leases(now=refused_at + SEND_RETRY_S + 1)
    for _ in range(100):
        if sent:
            break
        await asyncio.sleep(0.02)
    assert sent == [(18, "q.untagged")]
    assert hub.pending_reason(18) == "no worker with tags gpu"  # the Book's reason: the broker has it
    await hub.claim(18, runner_id=5)
    hub.finish(18, _success())
    assert (await asyncio.wait_for(handle.wait(), 5)).status == "success"


@in_loop
async def test_a_detached_hub_lets_its_attempts_go_without_a_word_to_the_workers(tmp_path: Path) -> None:
    """A server with workers stopping cleanly: the engine's handles end (JobDetached), nothing is
    written, the workers are not told to stop, nothing is sent any more."""
    sent: list[tuple[int, str]] = []
    book = Book()
    hub = _hub(sent, book)
    await hub.start()
    running = await CeleryExecutor(hub).start(_request(tmp_path, 31), lambda _k, _t: None)
    queued = await CeleryExecutor(hub).start(_request(tmp_path, 32), lambda _k, _t: None)
    attempt = await hub.claim(31, runner_id=5)
    before = list(book.events)
    hub.detach()
    await running.cancel("canceled")
    await queued.cancel("canceled")
    for handle in (running, queued):
        with pytest.raises(JobDetached):
            await asyncio.wait_for(handle.wait(), 5)
    assert not attempt.cancel_event.is_set()  # the worker was not told to stop
    late = await CeleryExecutor(hub).start(_request(tmp_path, 33), lambda _k, _t: None)
    await late.cancel("canceled")
    assert book.events == before and len(sent) == 2  # nothing written, nothing sent
    await hub.close()


@in_loop
async def test_the_pending_row_is_committed_before_the_message_and_off_the_event_loop(tmp_path: Path) -> None:
    loop_thread = threading.get_ident()
    events: list[tuple[str, int, bool]] = []

    class ThreadBook(Book):
        def queued(self, job_id: int) -> None:
            events.append(("queued", job_id, threading.get_ident() == loop_thread))

    def send(job_id: int, _queue: str) -> None:
        events.append(("sent", job_id, threading.get_ident() == loop_thread))

    hub = RemoteJobs(send, ThreadBook(), RemoteSettings("q"))
    await CeleryExecutor(hub).start(_request(tmp_path, 41), lambda _k, _t: None)
    assert events == [("queued", 41, False), ("sent", 41, False)]  # in that order, in one thread

    class BrokenBook(Book):
        def queued(self, job_id: int) -> None:
            raise StoreError("the database is gone")

    sent: list[tuple[int, str]] = []
    broken = _hub(sent, BrokenBook())
    with pytest.raises(StoreError):
        await CeleryExecutor(broken).start(_request(tmp_path, 42), lambda _k, _t: None)
    assert sent == [] and 42 not in broken.attempts  # no row `pending`: no message


class SlowClaimBook(Book):
    """A claim whose commit takes a while (in its thread), so the event loop sees it under way."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def claimed(self, job_id: int, runner_id: int, expires_at: float) -> bool:
        self.go.wait(5)
        return super().claimed(job_id, runner_id, expires_at)


@in_loop
async def test_a_claim_being_written_is_not_taken_twice_and_a_cancel_meanwhile_reaches_the_worker(
    tmp_path: Path,
) -> None:
    book = SlowClaimBook()
    hub = _hub([], book, lease_s=30.0)
    handle = await CeleryExecutor(hub).start(_request(tmp_path, 43), lambda _k, _t: None)
    claiming = asyncio.ensure_future(hub.claim(43, runner_id=5))
    await asyncio.sleep(0.05)
    assert hub.attempts[43].claiming
    with pytest.raises(ConflictError, match="taken by a worker already"):
        await hub.claim(43, runner_id=6)  # a second copy of the message, while the first is written
    await handle.cancel("canceled")  # not ended under the claim's commit: handed to the worker
    assert not hub.attempts[43].done
    book.go.set()
    attempt = await asyncio.wait_for(claiming, 5)
    assert attempt.runner_id == 5 and not attempt.claiming
    assert await hub.heartbeat(43) == "canceled"
    assert attempt._grace is not None  # given up if its worker does not confirm
    now = time.time()
    hub.finish(43, JobOutcome("canceled", None, "canceled", now, now, Path("/nonexistent")))
    assert (await handle.wait()).status == "canceled"
    assert book.events == [("queued", 43), ("claimed", 43), ("canceled", 43)]
