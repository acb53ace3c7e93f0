"""The Celery executor: job attempts run by `aicd worker`s on other hosts, through a broker.

The server's engine hands an attempt to :class:`CeleryExecutor` as to any executor.
The attempt is registered in :class:`RemoteJobs` (the server's table of attempts
out on workers) and a message carrying only its id goes to the broker queue of its
tag set (``aicd.core.runners.queue_for``). The database stays the truth of the
attempt's state; the broker only carries work, and the message holds no secret.

A worker that takes the message *claims* the attempt through the server's API
(its runner token): one claim per attempt id (a redelivered message finds the
attempt claimed and is dropped), which gives it the job, its variables and its
CI_JOB_TOKEN. With that token it heartbeats (each heartbeat moves its lease on and
answers ``canceled`` when the attempt is to stop), appends its log, uploads its
artifacts and reports its result. The attempt id is a fencing token: once an
attempt ended here (its result came, it was canceled, or its lease expired and it
was failed with ``runner_system_failure``), nothing more of it is accepted.

An attempt no worker claims within the stuck timeout fails with GitLab's
``stuck_or_timeout_failure``. Messages: durable queues, persistent messages,
``acks_late`` with ``task_reject_on_worker_lost`` and a prefetch of one. The message of
an attempt no worker claimed yet is sent again every ``resend_s`` (a broker may have lost
it), and one the broker refused (down, restarting) a few seconds later: the attempt stays
queued, as its row stays ``pending``.

A server that stops cleanly *detaches* (:meth:`RemoteJobs.detach`): its attempts run on,
nothing of them is canceled, written or sent any more, and the engine's handles end with
:class:`~aicd.errors.JobDetached`; the next server adopts them (:meth:`RemoteJobs.adopt`).

Celery is imported lazily (only where a broker is used): it is not on ``aicd run``'s path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aicd.errors import ConflictError, ExecutorError, JobDetached
from aicd.executors.base import (
    FailureReason,
    JobOutcome,
    JobRequest,
    OutcomeStatus,
    OutputCallback,
    job_log_path,
)

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger("aicd.remote")

TASK_NAME = "aicd.run_job"
DEFAULT_LEASE_S = 30.0  # an attempt whose worker was not heard from for this long is given up
DEFAULT_STUCK_TIMEOUT_S = 3600.0  # GitLab's: a job no runner picked within an hour fails
CANCEL_GRACE_S = 10.0  # a canceled attempt's worker has this long to confirm before it is given up
RESEND_S = 60.0  # a message for an attempt no worker claimed yet is sent again (a broker may lose it)
SEND_RETRY_S = 5.0  # a message the broker refused is sent again after this long
MONITOR_S = 0.25
RENEW_WRITE_SHARE = 0.1  # the database's copy of a lease is written when it moved this share of lease_s
MAX_LOG_CHUNK = 1 << 20


def celery_app(broker_url: str, *, queues: Iterable[str] = ()) -> Celery:
    """A Celery app on `broker_url` with aicd's delivery settings (and these queues declared)."""
    from celery import Celery

    app = Celery("aicd", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,  # acknowledged when the task ends, not when it starts
        task_reject_on_worker_lost=True,  # a worker killed mid-task: the message goes back
        worker_prefetch_multiplier=1,  # a worker holds no more messages than it runs
        task_ignore_result=True,  # results go to the server's API, never to a result backend
        task_default_delivery_mode="persistent",
        task_create_missing_queues=True,
        task_queues=[_queue(name) for name in queues],
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"confirm_publish": True},
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # after a broker restart, the worker takes messages again at once at its full prefetch (Celery's
        # gradual restoration, which calls basic.qos from the pool's threads, left a worker idle)
        worker_enable_prefetch_count_reduction=False,
    )
    return app


def _queue(name: str) -> Any:
    from kombu import Queue

    return Queue(name, durable=True, routing_key=name)


class BrokerSender:
    """Sends attempt ids to queues (blocking: call it in a thread)."""

    def __init__(self, broker_url: str) -> None:
        self.app = celery_app(broker_url)

    def send(self, job_id: int, queue: str) -> None:
        self.app.send_task(
            TASK_NAME,
            args=[job_id],
            queue=_queue(queue),
            routing_key=queue,
            retry=True,
            retry_policy={"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2},
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.app.close()


class AttemptBook(Protocol):
    """What the server records of remote attempts (the database: the truth of their state)."""

    def queued(self, job_id: int) -> None:
        """The attempt waits for a worker: its row `pending`."""

    def claimed(self, job_id: int, runner_id: int, expires_at: float) -> bool:
        """A worker took it: its lease recorded, its row `running`; False if it was claimed before."""

    def renewed(self, job_id: int, expires_at: float) -> None: ...

    def ended(self, job_id: int, end: str) -> None: ...

    def waiting_reason(self, tags: Sequence[str]) -> str | None:
        """Why a job with these tags waits (no worker may take it), or None."""

    def runner_of(self, job_id: int) -> int | None:
        """The runner that claimed the attempt, if one did."""


@dataclass(frozen=True)
class RemoteSettings:
    queue_prefix: str = "aicd.jobs"
    lease_s: float = DEFAULT_LEASE_S
    stuck_timeout_s: float = DEFAULT_STUCK_TIMEOUT_S
    resend_s: float = RESEND_S


class RemoteAttempt:
    """One attempt out on the workers: the engine's JobHandle."""

    def __init__(
        self,
        hub: RemoteJobs,
        request: JobRequest,
        *,
        queue: str,
        job_env: Mapping[str, str],
        project_id: int | None,
    ) -> None:
        self.hub = hub
        self.request = request
        self.queue = queue
        self.tags = tuple(sorted(set(request.job.tags)))
        self.job_env = dict(job_env)
        self.project_id = project_id
        self.log_path = request.log_path or job_log_path(
            Path(os.path.abspath(request.run_dir)), request.job_id
        )
        self.queued_at = time.time()
        self.sent_at = self.queued_at
        self.runner_id: int | None = None
        self.started_at: float | None = None  # its worker's first heartbeat: the job started there
        self.booked_until = 0.0  # the lease's end as the database has it
        self.claimed_at: float | None = None
        self.claiming = False  # a worker's claim is being written
        self.expires_at = 0.0
        self.cancel_reason: str | None = None
        self.send_error: str | None = None  # why the broker did not take its last message
        self.cancel_event = asyncio.Event()
        self.future: asyncio.Future[JobOutcome] = asyncio.get_running_loop().create_future()
        self._grace: asyncio.TimerHandle | None = None

    @property
    def job_id(self) -> int:
        return self.request.job_id

    @property
    def done(self) -> bool:
        return self.future.done()

    async def wait(self) -> JobOutcome:
        return await asyncio.shield(self.future)

    async def cancel(self, reason: str = "canceled") -> None:
        self.hub.cancel(self, reason)


class RemoteJobs:
    """The server's attempts out on workers: claims, heartbeats and leases, logs, results, cancel."""

    def __init__(
        self,
        send: Callable[[int, str], None],
        book: AttemptBook,
        settings: RemoteSettings | None = None,
    ) -> None:
        self._send = send  # blocking; run in a thread
        self.book = book
        self.settings = settings or RemoteSettings()
        self.attempts: dict[int, RemoteAttempt] = {}
        self._monitor: asyncio.Task[None] | None = None
        self._resends: set[asyncio.Future[None]] = set()
        # attempts a restarted server adopted, until its engine starts them again (by their ids)
        self.adopted: dict[int, RemoteAttempt] = {}
        self.detached = False  # the server stops cleanly: its attempts are left to the next one

    # -- life cycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._monitor is None:
            self._monitor = asyncio.ensure_future(self._watch())

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._monitor
            self._monitor = None

    def detach(self) -> None:
        """The server stops cleanly and leaves its attempts to the next one: from now on nothing is
        sent, no lease is checked, nothing is written, and a cancel lets the engine's handle go
        (JobDetached) without telling the worker. Their leases stay live, so the next server adopts
        the claimed ones; the unclaimed ones are still `pending` rows, which it sends again."""
        self.detached = True
        if self._monitor is not None:
            self._monitor.cancel()

    def queue_for(self, tags: Iterable[str]) -> str:
        found = sorted(set(tags))
        prefix = self.settings.queue_prefix
        return f"{prefix}.tags.{'+'.join(found)}" if found else f"{prefix}.untagged"

    # -- the engine's side ---------------------------------------------------------------------------

    def adopt(self, request: JobRequest, runner_id: int) -> RemoteAttempt:
        """An attempt a worker still runs from before this server started: followed as if this
        server had sent it (heartbeats, log, result are accepted at once), with a fresh lease; the
        engine's `submit` of the same attempt id takes it over instead of sending a message."""
        attempt = RemoteAttempt(
            self, request, queue=self.queue_for(request.job.tags), job_env={}, project_id=None
        )
        attempt.runner_id = runner_id
        attempt.claimed_at = time.time()
        attempt.expires_at = attempt.claimed_at + self.settings.lease_s
        self.attempts[attempt.job_id] = attempt
        self.adopted[attempt.job_id] = attempt
        self._renew(attempt)
        return attempt

    async def submit(
        self, request: JobRequest, *, job_env: Mapping[str, str], project_id: int | None
    ) -> RemoteAttempt:
        adopted = self.adopted.pop(request.job_id, None)
        if adopted is not None:
            return adopted  # it runs already (or even ended while the engine was getting there)
        if request.job_id in self.attempts:
            raise ExecutorError(f"job attempt {request.job_id} is out on a worker already")
        attempt = RemoteAttempt(
            self, request, queue=self.queue_for(request.job.tags), job_env=job_env, project_id=project_id
        )
        self.attempts[attempt.job_id] = attempt
        attempt.log_path.parent.mkdir(parents=True, exist_ok=True)
        attempt.log_path.write_text("", encoding="utf-8")
        if self.detached:
            return attempt  # a `pending` row: the next server sends it
        await self._send_once(attempt, queue_first=True)
        return attempt

    def _queue_and_send(self, job_id: int, queue: str) -> Exception | None:
        """In a thread: the attempt's row `pending` (committed; its failure is raised and nothing is
        sent), then its message to the broker; what the broker raised, if it refused it."""
        self.book.queued(job_id)
        return self._send_caught(job_id, queue)

    def _send_caught(self, job_id: int, queue: str) -> Exception | None:
        try:
            self._send(job_id, queue)
        except Exception as exc:
            return exc
        return None

    async def _send_once(self, attempt: RemoteAttempt, *, queue_first: bool = False) -> None:
        """Send the attempt's message (with `queue_first`, after its row was made `pending`, in the
        same hop to a thread: no database or broker I/O on the event loop); if the broker does not
        take it (down, restarting), the attempt stays queued and its message is sent again after
        SEND_RETRY_S. The row's write failing is raised (the attempt was not queued)."""
        attempt.sent_at = time.time()
        if queue_first:
            try:
                exc = await asyncio.to_thread(self._queue_and_send, attempt.job_id, attempt.queue)
            except Exception:
                self.attempts.pop(attempt.job_id, None)
                raise
        else:
            exc = await asyncio.to_thread(self._send_caught, attempt.job_id, attempt.queue)
        if exc is not None:
            attempt.send_error = type(exc).__name__
            attempt.sent_at = time.time() - self.settings.resend_s + SEND_RETRY_S
            log.warning(
                "job %s: the broker did not take its message (%s); sent again in %g s",
                attempt.job_id,
                type(exc).__name__,
                SEND_RETRY_S,
            )
        else:
            attempt.send_error = None

    def cancel(self, attempt: RemoteAttempt, reason: str) -> None:
        if attempt.done:
            return
        if self.detached:
            self._let_go(attempt)
            return
        timeout = reason == "timeout"
        if attempt.runner_id is None and not attempt.claiming:
            line = (
                "ERROR: Job failed: execution took longer than the job's timeout (no worker took it)"
                if timeout
                else "Job canceled before a worker took it"
            )
            status: OutcomeStatus = "failed" if timeout else "canceled"
            why: FailureReason = "job_execution_timeout" if timeout else "canceled"
            self._end(attempt, status, why, "canceled", line)
            return
        if attempt.cancel_reason is None:
            attempt.cancel_reason = reason
            attempt.cancel_event.set()
            if attempt.runner_id is not None:  # else the claim under way starts the grace when it lands
                loop = asyncio.get_running_loop()
                attempt._grace = loop.call_later(CANCEL_GRACE_S, self._cancel_unconfirmed, attempt)

    def _let_go(self, attempt: RemoteAttempt) -> None:
        """Detached: the engine stops following the attempt; it runs on (nothing written or told)."""
        if attempt._grace is not None:
            attempt._grace.cancel()
        self.attempts.pop(attempt.job_id, None)
        attempt.future.set_exception(
            JobDetached(f"job attempt {attempt.job_id} is left to the next server (this one stops)")
        )
        attempt.future.exception()  # retrieved: nobody may be waiting any more

    def _cancel_unconfirmed(self, attempt: RemoteAttempt) -> None:
        if attempt.done:
            return
        timeout = attempt.cancel_reason == "timeout"
        self._end(
            attempt,
            "failed" if timeout else "canceled",
            "job_execution_timeout" if timeout else "canceled",
            "canceled",
            f"WARNING: runner {attempt.runner_id} did not confirm the cancel within {CANCEL_GRACE_S:.0f} s; "
            "the attempt is given up",
        )

    # -- the workers' side (the server's API calls these, in the server's event loop) ---------------

    def live(self, job_id: int) -> RemoteAttempt:
        """The attempt if it is still out on a worker; ConflictError (the fencing refusal) otherwise."""
        attempt = self.attempts.get(job_id)
        if attempt is None or attempt.done:
            raise ConflictError(
                f"job attempt {job_id} is not running on a worker any more (it ended, was canceled or "
                "given up): what its worker sends is refused"
            )
        return attempt

    async def claim(self, job_id: int, runner_id: int) -> RemoteAttempt:
        """`runner_id` takes the attempt; ConflictError when it was taken or ended before.

        The lease's commit runs in a thread (the event loop goes on meanwhile); while it is under
        way the attempt counts as taken (`claiming`): a second claim is refused, and a cancel is
        handed to the worker (as for a claimed attempt) rather than ending the attempt under the
        commit."""
        attempt = self.live(job_id)
        if attempt.runner_id is not None or attempt.claiming or attempt.cancel_reason is not None:
            raise ConflictError(f"job attempt {job_id} was taken by a worker already")
        expires = time.time() + self.settings.lease_s
        attempt.claiming = True
        writing = asyncio.ensure_future(asyncio.to_thread(self.book.claimed, job_id, runner_id, expires))

        def landed(done: asyncio.Future[bool]) -> None:  # even if this request is cancelled meanwhile
            attempt.claiming = False
            if done.cancelled() or done.exception() is not None or not done.result():
                return
            attempt.runner_id = runner_id
            attempt.claimed_at = time.time()
            attempt.expires_at = attempt.booked_until = expires
            if attempt.cancel_reason is not None and attempt._grace is None and not attempt.done:
                loop = asyncio.get_running_loop()
                attempt._grace = loop.call_later(CANCEL_GRACE_S, self._cancel_unconfirmed, attempt)

        writing.add_done_callback(landed)
        if not await asyncio.shield(writing):
            raise ConflictError(f"job attempt {job_id} was taken by a worker already")
        if attempt.done and not self.detached:  # cannot happen today (nothing ends a claiming attempt)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.book.ended, job_id, "canceled")
            raise ConflictError(f"job attempt {job_id} ended while it was claimed")
        # detached meanwhile: its lease is live, so the next server adopts it; the worker runs it
        return attempt

    def _claimed(self, job_id: int) -> RemoteAttempt:
        attempt = self.live(job_id)
        if attempt.runner_id is None:
            raise ConflictError(f"job attempt {job_id} was not claimed by a worker")
        return attempt

    async def heartbeat(self, job_id: int, wait_s: float = 0.0) -> str:
        """Renew the attempt's lease; "canceled" when it must stop, else "running" (after up to
        `wait_s` seconds without a cancel: a long poll, so a cancel reaches the worker at once)."""
        attempt = self._claimed(job_id)
        if attempt.started_at is None:  # a worker heartbeats once the job's executor started it
            attempt.started_at = time.time()
        self._renew(attempt)
        if not attempt.cancel_event.is_set() and wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(attempt.cancel_event.wait(), min(wait_s, self.settings.lease_s / 3))
            if attempt.done:
                raise ConflictError(f"job attempt {job_id} ended while its worker was waiting")
            self._renew(attempt)
        return "canceled" if attempt.cancel_event.is_set() else "running"

    def _renew(self, attempt: RemoteAttempt) -> None:
        attempt.expires_at = time.time() + self.settings.lease_s
        # the database's copy (a restarted server adopts every lease not ended; it reads the expiry
        # only to show it) need not move at each log chunk
        if attempt.expires_at - attempt.booked_until < self.settings.lease_s * RENEW_WRITE_SHARE:
            return
        attempt.booked_until = attempt.expires_at
        with contextlib.suppress(Exception):  # the in-memory lease is what counts while we run
            self.book.renewed(attempt.job_id, attempt.expires_at)

    def append_log(self, job_id: int, offset: int, data: bytes) -> int:
        """Write the worker's log bytes from `offset` on; the log's size after. Resent bytes are
        skipped; a gap is a ConflictError that names the size the worker should resend from."""
        attempt = self._claimed(job_id)
        if len(data) > MAX_LOG_CHUNK:
            raise ConflictError(f"a log chunk is at most {MAX_LOG_CHUNK} bytes")
        path = attempt.log_path
        size = path.stat().st_size if path.exists() else 0
        if offset > size:
            raise ConflictError(f"log offset {offset}: the server has {size} bytes; send from {size}")
        fresh = data[size - offset :]
        if fresh:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as handle:
                handle.write(fresh)
            size += len(fresh)
        self._renew(attempt)
        return size

    def finish(self, job_id: int, outcome: JobOutcome) -> None:
        """The worker's result; ConflictError when the attempt was given up before it came."""
        attempt = self._claimed(job_id)
        if attempt.cancel_reason is not None and outcome.status != "success":
            timeout = attempt.cancel_reason == "timeout"
            status: OutcomeStatus = "failed" if timeout else "canceled"
            why: FailureReason = "job_execution_timeout" if timeout else "canceled"
            outcome = _replace(outcome, status=status, failure_reason=why)
        self._resolve(attempt, outcome, "finished" if outcome.status != "canceled" else "canceled")

    def pending_reason(self, job_id: int) -> str | None:
        """Why a queued attempt waits ("no worker with tags gpu"), None when it need not."""
        attempt = self.attempts.get(job_id)
        if attempt is None or attempt.done or attempt.runner_id is not None:
            return None
        if attempt.send_error is not None:
            return f"the broker did not take its message yet ({attempt.send_error}); it is sent again"
        return self.book.waiting_reason(attempt.tags)

    def running_by_runner(self) -> dict[int, int]:
        """Runner id -> how many attempts it runs now."""
        counts: dict[int, int] = {}
        for attempt in list(self.attempts.values()):
            if attempt.runner_id is not None and not attempt.done:
                counts[attempt.runner_id] = counts.get(attempt.runner_id, 0) + 1
        return counts

    def runner_of(self, job_id: int) -> int | None:
        attempt = self.attempts.get(job_id)
        if attempt is not None:
            return attempt.runner_id
        return self.book.runner_of(job_id)

    # -- ends ----------------------------------------------------------------------------------------

    def _end(
        self, attempt: RemoteAttempt, status: OutcomeStatus, why: FailureReason | None, end: str, line: str
    ) -> None:
        with contextlib.suppress(OSError), open(attempt.log_path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        now = time.time()
        outcome = JobOutcome(
            status=status,
            exit_code=None,
            failure_reason=why,
            started_at=attempt.claimed_at or now,
            finished_at=now,
            log_path=attempt.log_path,
        )
        self._resolve(attempt, outcome, end)

    def _resolve(self, attempt: RemoteAttempt, outcome: JobOutcome, end: str) -> None:
        if attempt.done:
            return
        if attempt._grace is not None:
            attempt._grace.cancel()
        self.attempts.pop(attempt.job_id, None)
        attempt.cancel_event.set()  # a worker long-polling learns at once that it is over
        if attempt.runner_id is not None:
            try:
                self.book.ended(attempt.job_id, end)
            except Exception:
                log.exception("job %s: cannot record the end of its lease", attempt.job_id)
        attempt.future.set_result(outcome)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(MONITOR_S)
            try:
                self.check_leases()
            except Exception:
                log.exception("checking the leases of remote job attempts failed")

    def check_leases(self, now: float | None = None) -> None:
        """Fail attempts whose worker went silent (runner_system_failure) or that no worker took
        within the stuck timeout (stuck_or_timeout_failure)."""
        now = time.time() if now is None else now
        for attempt in list(self.attempts.values()):
            if attempt.done:
                continue
            if attempt.runner_id is not None and now > attempt.expires_at:
                silent = now - (attempt.expires_at - self.settings.lease_s)
                self._end(
                    attempt,
                    "failed",
                    "runner_system_failure",
                    "lease_expired",
                    f"ERROR: Job failed (system failure): runner {attempt.runner_id} sent no heartbeat "
                    f"for {silent:.0f} s (lease timeout {self.settings.lease_s:g} s); the attempt is given "
                    "up (runner_system_failure)",
                )
            elif attempt.claiming:
                continue
            elif attempt.runner_id is None and now - attempt.queued_at > self.settings.stuck_timeout_s:
                self._stuck(attempt)
            elif attempt.runner_id is None and now - attempt.sent_at > self.settings.resend_s:
                attempt.sent_at = now
                self._resend(attempt)

    def _resend(self, attempt: RemoteAttempt) -> None:
        """Send an unclaimed attempt's message again: a broker restarted without its queue may have
        lost it; the claim drops every copy but the first one taken."""

        task = asyncio.ensure_future(self._send_once(attempt))
        self._resends.add(task)
        task.add_done_callback(self._resends.discard)

    def _stuck(self, attempt: RemoteAttempt) -> None:
        try:
            reason = self.book.waiting_reason(attempt.tags)
        except Exception:
            reason = None
        why = f": {reason}" if reason else ""
        self._end(
            attempt,
            "failed",
            "stuck_or_timeout_failure",
            "abandoned",
            f"ERROR: Job failed: no worker took it within {self.settings.stuck_timeout_s:g} s{why} "
            "(stuck_or_timeout_failure)",
        )


def _replace(outcome: JobOutcome, **changes: Any) -> JobOutcome:
    import dataclasses

    return dataclasses.replace(outcome, **changes)


class CeleryExecutor:
    """The Executor of one pipeline run whose jobs go to workers (see the module's docstring)."""

    name = "celery"

    def __init__(
        self, hub: RemoteJobs, *, job_env: Mapping[str, str] | None = None, project_id: int | None = None
    ) -> None:
        self.hub = hub
        self.job_env = dict(job_env or {})
        self.project_id = project_id
        self._mine: set[RemoteAttempt] = set()

    async def start(self, request: JobRequest, on_output: OutputCallback) -> RemoteAttempt:
        attempt = await self.hub.submit(request, job_env=self.job_env, project_id=self.project_id)
        self._mine.add(attempt)
        attempt.future.add_done_callback(lambda _f: self._mine.discard(attempt))
        return attempt

    async def close(self) -> None:
        """Cancel this run's attempts still out and wait for them."""
        attempts = list(self._mine)
        for attempt in attempts:
            await attempt.cancel("canceled")
        for attempt in attempts:
            with contextlib.suppress(Exception):
                await attempt.wait()
