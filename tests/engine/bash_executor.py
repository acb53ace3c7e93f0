"""A tiny real executor for engine tests.

Each job attempt is one real `bash -c` process (its own session, so its
whole process group can be killed), running `before_script` + `script`
with `set -e`, in a shared work folder, with the request's variables
resolved into its environment. It is a real executor, not a mock: no
workspace copies, artifacts or cache; instead it tells the job what the
engine asked for, in variables:

- TEST_ARTIFACT_SOURCES: "name:id name:id ..." of request.artifact_sources, in order;
- TEST_DOTENV: a file; "KEY=VALUE" lines the job writes there become JobOutcome.dotenv;
- TEST_ATTEMPT: request.attempt.

Tags make it misbehave on purpose: "explode-start" (start() raises),
"explode-wait" (wait() raises once the process ended).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from aicd.executors.base import (
    FailureReason,
    JobHandle,
    JobOutcome,
    JobRequest,
    OutcomeStatus,
    OutputCallback,
)
from aicd.executors.script import group_alive
from aicd.pipeline.ir import Variable
from aicd.pipeline.variables import resolve

KILL_GRACE_S = 1.0

__all__ = ["BashExecutor", "BashJob", "group_alive"]  # group_alive: zombies do not count


class BashExecutor:
    name = "bash-test"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.requests: list[JobRequest] = []  # every started attempt, in start order
        self.pgids: list[int] = []  # process group of every attempt
        self._jobs: set[BashJob] = set()

    async def start(self, request: JobRequest, on_output: OutputCallback) -> JobHandle:
        if "explode-start" in request.job.tags:
            raise RuntimeError("the test executor exploded on start")
        self.requests.append(request)
        job = BashJob(request, on_output, self.workdir)
        await job.begin()
        self.pgids.append(job.pgid)
        self._jobs.add(job)
        return job

    async def close(self) -> None:
        jobs = list(self._jobs)
        for job in jobs:
            await job.cancel("canceled")
        for job in jobs:
            with contextlib.suppress(Exception):
                await job.wait()


class BashJob:
    def __init__(self, request: JobRequest, on_output: OutputCallback, workdir: Path) -> None:
        self.request = request
        self.on_output = on_output
        self.workdir = workdir
        self.dotenv = workdir / "dotenv" / f"{request.job_id}.env"
        self.log_path = request.log_path or workdir / f"{request.job_id}.log"
        self.cancel_reason: str | None = None
        self.pgid = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[JobOutcome] | None = None
        self._started = time.time()

    async def begin(self) -> None:
        req = self.request
        self.dotenv.parent.mkdir(parents=True, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir)}
        env.update(resolve(req.variables))
        env["TEST_ARTIFACT_SOURCES"] = " ".join(f"{s.job_name}:{s.job_id}" for s in req.artifact_sources)
        env["TEST_DOTENV"] = str(self.dotenv)
        env["TEST_ATTEMPT"] = str(req.attempt)
        script = "\n".join(("set -e", *req.job.before_script, *req.job.script))
        self._proc = await asyncio.create_subprocess_exec(
            "bash",
            "--noprofile",
            "--norc",
            "-c",
            script,
            cwd=self.workdir,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self.pgid = self._proc.pid
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> JobOutcome:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        stdout = proc.stdout

        async def read() -> None:
            while line := await stdout.readline():
                self.on_output("out", line.decode(errors="replace").rstrip("\n"))

        reader = asyncio.ensure_future(read())
        code = await proc.wait()
        self._kill(signal.SIGKILL)  # whatever the script left behind in its group...
        for _ in range(200):  # ...is gone before the job is reported over
            if not group_alive(self.pgid):
                break
            await asyncio.sleep(0.01)
        await reader
        if "explode-wait" in self.request.job.tags:
            raise RuntimeError("the test executor exploded while waiting")
        status: OutcomeStatus = "success" if code == 0 else "failed"
        reason: FailureReason | None = None if code == 0 else "script_failure"
        exit_code: int | None = code
        if self.cancel_reason == "timeout":
            status, reason, exit_code = "failed", "job_execution_timeout", None
        elif self.cancel_reason is not None:
            status, reason, exit_code = "canceled", "canceled", None
        return JobOutcome(
            status=status,
            exit_code=exit_code,
            failure_reason=reason,
            started_at=self._started,
            finished_at=time.time(),
            log_path=self.log_path,
            dotenv=self._read_dotenv(),
        )

    def _read_dotenv(self) -> tuple[Variable, ...]:
        if not self.dotenv.exists():
            return ()
        out = []
        for line in self.dotenv.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                out.append(Variable(key=key.strip(), value=value, expand=False))
        return tuple(out)

    def _kill(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    async def wait(self) -> JobOutcome:
        assert self._task is not None
        return await asyncio.shield(self._task)

    async def cancel(self, reason: str = "canceled") -> None:
        assert self._task is not None
        if self._task.done():
            return
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self._kill(signal.SIGTERM)
        done, _ = await asyncio.wait({self._task}, timeout=KILL_GRACE_S)
        if not done:
            self._kill(signal.SIGKILL)
