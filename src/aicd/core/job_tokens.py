"""CI_JOB_TOKEN: every job attempt the server runs gets its own token, whatever the executor.

:class:`JobTokenExecutor` wraps the server's executor. Before an attempt starts it
makes a random token, records only its SHA-256 (bound to the attempt, its pipeline
and project; expiring after the job's timeout, the after_script's and a margin),
and hands the token to the job as the masked variable ``CI_JOB_TOKEN`` (so the
executor masks it in the log like any masked variable). When the attempt ends,
however it ends, the token is revoked (but for an attempt its executor let go while it runs on
a worker, `JobDetached`: the next server adopts it, token and all). The server's API accepts it
(``JOB-TOKEN`` header, or ``Authorization: Bearer``) as long as it is live and
the attempt's row is ``running`` (aicd.server.deps).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path

from aicd.core.access import hash_token, new_job_token
from aicd.engine.scheduler import DEFAULT_TIMEOUT_S
from aicd.errors import JobDetached
from aicd.executors.base import (
    Executor,
    JobHandle,
    JobOutcome,
    JobRequest,
    OutputCallback,
    job_log_path,
)
from aicd.executors.local import AFTER_SCRIPT_TIMEOUT_S
from aicd.pipeline.ir import Variable
from aicd.store.job_tokens import JobTokenStore

log = logging.getLogger("aicd.job_tokens")

JOB_TOKEN_VARIABLE = "CI_JOB_TOKEN"
MARGIN_S = 300.0


def token_lifetime(timeout_s: float | None) -> float:
    """How long a job's token may live at most: its timeout, its after_script's, and a margin."""
    timeout = timeout_s if timeout_s is not None and timeout_s > 0 else DEFAULT_TIMEOUT_S
    return timeout + AFTER_SCRIPT_TIMEOUT_S + MARGIN_S


class JobTokenExecutor:
    """An executor whose attempts each get a live CI_JOB_TOKEN (revoked when the attempt ends)."""

    def __init__(
        self,
        inner: Executor,
        store: JobTokenStore,
        *,
        project_id: int,
        protected_ref: bool = False,
        queued: set[int] | None = None,
    ) -> None:
        self.inner = inner
        self.store = store
        # jobs go to workers: the attempt's row is written `pending` (it waits for a worker's claim)
        # in the token's transaction (not an adopted attempt's `running` row), then its id put here
        # for the remote book, which does not write the row again before the attempt's message goes
        # (aicd.core.remote_jobs.StoreBook; an adopted attempt sends no message)
        self.queued = queued
        self.project_id = project_id
        self.protected_ref = protected_ref  # decided by the server from the ref, never by the job
        self.name = inner.name

    async def start(self, request: JobRequest, on_output: OutputCallback) -> JobHandle:
        token = new_job_token()
        user = next((v.value for v in reversed(request.variables) if v.key == "GITLAB_USER_LOGIN"), None)
        token_id = await asyncio.to_thread(
            self.store.create,
            hash_token(token),
            project_id=self.project_id,
            pipeline_id=request.pipeline_id,
            job_id=request.job_id,
            expires_at=time.time() + token_lifetime(request.job.timeout_s),
            user_login=user,
            protected_ref=self.protected_ref,
            job_fields=None if self.queued is None else _pending_fields(request),
        )
        if self.queued is not None:
            self.queued.add(request.job_id)  # committed
        # last: a job's own CI_JOB_TOKEN (from YAML or a variable) cannot replace it
        own = Variable(JOB_TOKEN_VARIABLE, token, expand=False, masked=True)
        variables = (*(v for v in request.variables if v.key != JOB_TOKEN_VARIABLE), own)
        try:
            handle = await self.inner.start(dataclasses.replace(request, variables=variables), on_output)
        except BaseException:
            if self.queued is not None:
                self.queued.discard(request.job_id)
            await _revoke(self.store, token_id)
            raise
        return _TokenHandle(handle, self.store, token_id)

    async def close(self) -> None:
        await self.inner.close()


def _pending_fields(request: JobRequest) -> dict[str, object]:
    """The row of an attempt that waits for a worker (as the run's recorder would write it)."""
    log_path = request.log_path or job_log_path(Path(request.run_dir), request.job_id)
    return {"status": "pending", "started_at": None, "log_path": str(log_path)}


class _TokenHandle:
    def __init__(self, inner: JobHandle, store: JobTokenStore, token_id: int) -> None:
        self.inner = inner
        self.store = store
        self.token_id = token_id

    async def wait(self) -> JobOutcome:
        try:
            outcome = await self.inner.wait()
        except JobDetached:
            raise  # it runs on elsewhere, with its token (the next server adopts it)
        except BaseException:
            await _revoke(self.store, self.token_id)
            raise
        await _revoke(self.store, self.token_id)
        return outcome

    async def cancel(self, reason: str = "canceled") -> None:
        await self.inner.cancel(reason)


async def _revoke(store: JobTokenStore, token_id: int) -> None:
    try:
        await asyncio.shield(asyncio.to_thread(store.revoke, token_id))
    except asyncio.CancelledError:
        raise
    except Exception:  # the token still expires, and its job's row stops being `running`
        log.exception("could not revoke job token %s", token_id)
