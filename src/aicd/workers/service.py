"""`aicd worker`'s engine: a Celery worker on the runner's queues, started in this process.

The worker reads the queues the server named at check-in (one per subset of its
tags, and the untagged one), with a thread pool of `concurrency` and a prefetch of
one. A message carries only an attempt id: the task claims it through the API and
runs it (aicd.workers.attempt). The message is acknowledged when the task ends
(`acks_late`); a worker killed mid-job leaves it unacknowledged, the broker hands
it out again, and the claim of an attempt already taken answers "drop" -- the
server gives the lost attempt up when its lease expires and retries it as a new
attempt where `retry:when` allows. A paused runner, or a server out of reach, puts
the message back after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from aicd.errors import AuthError
from aicd.executors.celery_exec import TASK_NAME, celery_app
from aicd.workers.api import Drop, Requeue, WorkerApi
from aicd.workers.attempt import Executors, Marks, WorkerConfig, run_attempt

log = logging.getLogger("aicd.worker")

REQUEUE_PAUSE_S = 2.0

T = TypeVar("T")


class AttemptLoop:
    """The worker process's one event loop, in a thread of its own, for every attempt."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="aicd-attempts", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` in the loop; block this (Celery pool) thread until it ends."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self, last: Coroutine[Any, Any, None]) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(last, self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


def serve(
    *,
    api: WorkerApi,
    broker_url: str,
    queues: Sequence[str],
    concurrency: int,
    config: WorkerConfig,
    runner_id: int,
) -> None:
    """Consume `queues` until the worker is told to stop (SIGTERM: warm shutdown, SIGINT, SIGQUIT)."""
    from celery.exceptions import Reject

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    app = celery_app(broker_url, queues=queues)
    attempts = AttemptLoop()
    executors = Executors()

    @app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def run_job(self: object, job_id: int) -> None:
        marks = Marks()
        try:
            said = attempts.run(run_attempt(api, config, int(job_id), marks, executors))
        except Drop as exc:
            log.info("job %s: not run here: %s", job_id, exc)
            return
        except (Requeue, AuthError) as exc:
            log.warning("job %s: put back: %s", job_id, exc)
            time.sleep(REQUEUE_PAUSE_S)
            raise Reject(str(exc), requeue=True) from None
        log.info("%s", said)

    hostname = f"aicd-runner{runner_id}-{os.getpid()}@{socket.gethostname()}"
    worker = app.Worker(
        hostname=hostname,
        pool="threads",
        concurrency=concurrency,
        queues=list(queues),
        loglevel="WARNING",
        quiet=True,
        redirect_stdouts=False,
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        prefetch_multiplier=1,
        optimization="fair",
    )
    try:
        worker.start()
    finally:

        async def last() -> None:
            await executors.close()
            await api.aclose()

        attempts.close(last())
