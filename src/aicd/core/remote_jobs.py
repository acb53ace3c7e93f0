"""The server's side of jobs on workers: what the API's worker routes call.

`StoreBook` records remote attempts in the database (the truth of their state:
job rows `pending` while queued, `running` once claimed; leases in `job_leases`).
`claim` checks the runner (token, not paused, tags) and hands the attempt to it:
the job, its variables (CI_JOB_TOKEN among them, with GitLab's CI_RUNNER_*), the
artifacts it may download, its lease. `outcome_of` turns a worker's result into
the engine's JobOutcome; `store_upload` unpacks a worker's artifacts and reports
where the server keeps every job's (`<run_dir>/artifacts/<id>`, `.../reports/<id>`);
`pack_dir` packs a job's artifacts for the workers of the jobs that need them.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aicd.core import runners as runner_rules
from aicd.errors import ConfigError, ConflictError, NotFoundError, PermissionDeniedError
from aicd.executors import artifacts as artifacts_mod
from aicd.executors.base import JobOutcome, TestSummary
from aicd.executors.celery_exec import RemoteAttempt, RemoteJobs
from aicd.pipeline import codec
from aicd.pipeline.ir import Variable
from aicd.store.job_leases import JobLeaseStore
from aicd.store.repository import RunStore
from aicd.store.runners import RunnerRecord, RunnerStore

MAX_UPLOAD_BYTES = 2 << 30  # a job's artifacts and reports, packed
HEARTBEAT_WAIT_S = 5.0  # a worker's heartbeat is a long poll of at most this long
WAITING_CACHE_S = 1.0


class StoreBook:
    """RemoteJobs' records in the server's database."""

    def __init__(
        self,
        runs: RunStore,
        leases: JobLeaseStore,
        runners: RunnerStore,
        *,
        pending_rows: set[int] | None = None,
    ) -> None:
        self.runs = runs
        self.leases = leases
        self.runners = runners
        # attempts whose row was made `pending` (committed) with their job token (JobTokenExecutor's
        # `queued`): not written a second time
        self.pending_rows = pending_rows if pending_rows is not None else set()
        self._runner_list: tuple[float, list[RunnerRecord]] = (0.0, [])

    def queued(self, job_id: int) -> None:
        """The attempt's row is `pending` when this returns (called in a thread, before its message
        is published). No second commit when the job token's transaction wrote it already."""
        if job_id in self.pending_rows:
            self.pending_rows.discard(job_id)
            return
        self.runs.update_job(job_id, status="pending", started_at=None)

    def claimed(self, job_id: int, runner_id: int, expires_at: float) -> bool:
        return self.leases.claim(job_id, runner_id, expires_at=expires_at, mark_running=True) is not None

    def renewed(self, job_id: int, expires_at: float) -> None:
        self.leases.renew(job_id, expires_at=expires_at)

    def ended(self, job_id: int, end: str) -> None:
        self.leases.end(job_id, end)

    def runner_of(self, job_id: int) -> int | None:
        lease = self.leases.get(job_id)
        return None if lease is None else lease.runner_id

    def waiting_reason(self, tags: Sequence[str]) -> str | None:
        at, found = self._runner_list
        now = time.time()
        if now - at > WAITING_CACHE_S:
            found = self.runners.list()
            self._runner_list = (now, found)
        return runner_rules.why_waiting(found, tags, now)


async def claim(hub: RemoteJobs, store: RunnerStore, token: str, job_id: int) -> dict[str, Any]:
    """A worker with runner `token` takes attempt `job_id`: what it needs to run it.

    AuthError: not a runner's token. PermissionDeniedError: the runner is paused or may not run
    the job's tags (the worker puts the message back). ConflictError: the attempt was taken,
    ended or given up (the worker drops the message).
    """
    runner = await asyncio.to_thread(runner_rules.identify, store, token)  # no database I/O on the loop
    attempt = hub.live(job_id)
    if runner.paused:
        raise PermissionDeniedError(f"runner {runner.id} is paused: it takes no new job")
    if not runner_rules.can_run(runner, attempt.tags):
        what = f"tags {', '.join(attempt.tags)}" if attempt.tags else "untagged jobs"
        raise PermissionDeniedError(f"runner {runner.id} may not run {what}")
    await hub.claim(job_id, runner.id)
    return claim_answer(attempt, runner, hub)


def claim_answer(attempt: RemoteAttempt, runner: RunnerRecord, hub: RemoteJobs) -> dict[str, Any]:
    request = attempt.request
    token = next((v.value for v in reversed(request.variables) if v.key == "CI_JOB_TOKEN"), None)
    if token is None:
        raise ConflictError(f"job attempt {attempt.job_id} has no job token")
    own = (
        Variable("CI_RUNNER_ID", str(runner.id), expand=False),
        Variable("CI_RUNNER_DESCRIPTION", runner.description, expand=False),
        Variable("CI_RUNNER_TAGS", json.dumps(list(runner.tags)), expand=False),  # as GitLab: ["gpu"]
    )
    # the predefined ones of the server (its own runner) give way to the worker's runner's
    mine = {v.key for v in own}
    variables = (*own, *(v for v in request.variables if v.key not in mine))
    sha = next((v.value for v in reversed(request.variables) if v.key == "CI_COMMIT_SHA"), None)
    return {
        "job_id": attempt.job_id,
        "commit_sha": sha,
        "attempt": request.attempt,
        "pipeline_id": request.pipeline_id,
        "project_id": attempt.project_id,
        "token": token,
        "job": codec.to_data(request.job),
        "variables": codec.to_data(variables),
        "artifact_sources": [{"job_name": s.job_name, "job_id": s.job_id} for s in request.artifact_sources],
        "job_env": dict(attempt.job_env),
        "lease_s": hub.settings.lease_s,
        "heartbeat_wait_s": min(HEARTBEAT_WAIT_S, hub.settings.lease_s / 3),
    }


@dataclass(frozen=True)
class ResultIn:
    status: str
    exit_code: int | None
    failure_reason: str | None
    started_at: float | None
    finished_at: float | None
    dotenv: list[dict[str, Any]]
    tests: dict[str, int] | None
    metrics: dict[str, float]
    coverage: float | None
    error: str | None


_STATUSES = ("success", "failed", "canceled")
_REASONS = (
    "script_failure",
    "job_execution_timeout",
    "canceled",
    "runner_system_failure",
    "missing_dependency_failure",
    "unknown_failure",
)


def outcome_of(attempt: RemoteAttempt, result: ResultIn) -> JobOutcome:
    """The engine's outcome of a worker's result (checked: it comes from another host)."""
    if result.status not in _STATUSES:
        raise ConfigError(f"result status {result.status!r}: one of {', '.join(_STATUSES)}")
    reason = result.failure_reason
    if reason is not None and reason not in _REASONS:
        reason = "unknown_failure"
    if result.status == "success":
        reason = None
    elif reason is None:
        reason = "canceled" if result.status == "canceled" else "unknown_failure"
    dotenv = tuple(
        Variable(str(v.get("key", "")), str(v.get("value", "")), bool(v.get("expand", True)))
        for v in result.dotenv
        if isinstance(v, dict) and v.get("key")
    )
    tests = None
    if result.tests is not None:
        t = result.tests
        tests = TestSummary(
            total=int(t.get("total", 0)),
            passed=int(t.get("passed", 0)),
            failed=int(t.get("failed", 0)),
            errors=int(t.get("errors", 0)),
            skipped=int(t.get("skipped", 0)),
        )
    run_dir = Path(os.path.abspath(attempt.request.run_dir))
    arts = artifacts_mod.artifacts_dir(run_dir, attempt.job_id)
    now = time.time()
    return JobOutcome(
        status=result.status,  # type: ignore[arg-type]
        exit_code=result.exit_code,
        failure_reason=reason,  # type: ignore[arg-type]
        # when its worker started it, on the server's clock (its first heartbeat), else its claim
        started_at=attempt.started_at or attempt.claimed_at or result.started_at or now,
        finished_at=now,
        log_path=attempt.log_path,
        dotenv=dotenv,
        tests=tests,
        metrics={str(k): float(v) for k, v in result.metrics.items()},
        coverage=result.coverage,
        artifacts_dir=arts if arts.is_dir() else None,
        error=result.error,
    )


def store_upload(attempt: RemoteAttempt, archive: Path) -> None:
    """Unpack a worker's `artifacts/` and `reports/` (tar.gz, checked member by member) into the run."""
    from aicd.deploy.archive import extract_release

    run_dir = Path(os.path.abspath(attempt.request.run_dir))
    scratch = run_dir / "uploads" / f"{attempt.job_id}-{secrets.token_hex(4)}"
    scratch.parent.mkdir(parents=True, exist_ok=True)
    try:
        extract_release(archive, scratch, max_bytes=MAX_UPLOAD_BYTES)
        for kind, dest in (
            ("artifacts", artifacts_mod.artifacts_dir(run_dir, attempt.job_id)),
            ("reports", artifacts_mod.reports_dir(run_dir, attempt.job_id)),
        ):
            src = scratch / kind
            if src.is_dir():
                if dest.exists():
                    shutil.rmtree(dest)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def artifacts_of(runs: RunStore, pipeline_id: int, job_id: int) -> Path:
    """The artifacts folder of job `job_id` of the same pipeline; NotFoundError otherwise."""
    row = runs.get_job(job_id)
    if row.pipeline_id != pipeline_id:
        raise NotFoundError(f"job {job_id} is not a job of this pipeline")
    record = runs.get_pipeline(pipeline_id)
    folder = artifacts_mod.artifacts_dir(Path(os.path.abspath(record.run_dir)), job_id)
    if not folder.is_dir():
        raise NotFoundError(f"job {job_id} has no artifacts")
    return folder


def pack_dir(folders: dict[str, Path], out: Path) -> None:
    """`folders` (name in the archive -> folder) as one tar.gz at `out`; symbolic links kept as links."""
    with tarfile.open(out, "w:gz", compresslevel=3) as tar:
        for name, folder in folders.items():
            if folder.is_dir():
                tar.add(folder, arcname=name, recursive=True)
