"""A job's life: retries, timeouts, cancel, broken executors and listeners (real bash jobs)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from aicd.engine import JobStatus, RunOptions, run_pipeline
from aicd.pipeline.ir import Need, Pipeline, Retry

from .bash_executor import BashExecutor, group_alive
from .support import STAGES, Recorder, job, run_jobs

# a script that fails until its third attempt (the test executor sets TEST_ATTEMPT)
FLAKY = 'echo "attempt $TEST_ATTEMPT"; test "$TEST_ATTEMPT" -ge 3'


def test_retry_until_success_with_new_ids(tmp_path: Path) -> None:
    run = run_jobs(tmp_path, [job("flaky", FLAKY, retry=Retry(max=2))])
    r = run.result.job("flaky")
    assert run.result.status == "success" and r.attempts == 3
    assert run.out("flaky") == ["attempt 1", "attempt 2", "attempt 3"]
    assert [(a, i) for _, a, i in run.rec.retry_ids] == [(2, r.job_id - 1), (3, r.job_id)]
    ids = [e.job_id for e in run.rec.events if e.status == "running"]
    assert len(set(ids)) == 3 and ids[-1] == r.job_id
    assert [(e.status, e.attempt) for e in run.rec.events if e.status in ("failed", "success")] == [
        ("failed", 1),
        ("failed", 2),
        ("success", 3),
    ]
    assert run.executor is not None
    assert [req.attempt for req in run.executor.requests] == [1, 2, 3]
    assert [req.job_id for req in run.executor.requests] == ids


def test_retry_stops_at_max(tmp_path: Path) -> None:
    run = run_jobs(tmp_path, [job("flaky", FLAKY, retry=Retry(max=1)), job("plain", "exit 1")])
    assert run.result.job("flaky").attempts == 2 and run.result.job("flaky").status == JobStatus.FAILED
    assert run.result.job("plain").attempts == 1


@pytest.mark.parametrize(
    ("retry", "script", "attempts"),
    [
        (Retry(max=2, when=(), exit_codes=(137,)), "exit 1", 1),  # exit code not listed
        (Retry(max=2, when=(), exit_codes=(3,)), "exit 3", 3),
        (Retry(max=2, when=("script_failure",)), "exit 1", 3),
        (Retry(max=2, when=("runner_system_failure",)), "exit 1", 1),
        # GitLab: a reason in `when` OR an exit code in `exit_codes`
        (Retry(max=2, when=("script_failure",), exit_codes=(9,)), "exit 1", 3),
        (Retry(max=2, when=("runner_system_failure",), exit_codes=(9,)), "exit 9", 3),
    ],
)
def test_retry_when_and_exit_codes(tmp_path: Path, retry: Retry, script: str, attempts: int) -> None:
    run = run_jobs(tmp_path, [job("j", script, retry=retry)])
    assert run.result.job("j").attempts == attempts


def test_retry_on_timeout_only_when_asked(tmp_path: Path) -> None:
    jobs = [
        job("script-only", "sleep 5", timeout_s=0.2, retry=Retry(max=1, when=("script_failure",))),
        job("timeouts", "sleep 5", timeout_s=0.2, retry=Retry(max=1, when=("stuck_or_timeout_failure",))),
    ]
    run = run_jobs(tmp_path, jobs)
    assert run.result.job("script-only").attempts == 1
    assert run.result.job("timeouts").attempts == 2


def test_timeout_fails_the_job_and_kills_its_processes(tmp_path: Path) -> None:
    run = run_jobs(tmp_path, [job("slow", "sleep 30 & sleep 30", timeout_s=0.3), job("next", "true")])
    assert run.seconds < 8
    r = run.result.job("slow")
    assert r.status == JobStatus.FAILED
    assert r.outcome is not None and r.outcome.failure_reason == "job_execution_timeout"
    assert any("timed out after 0.3 s" in line for line in run.rec.info["slow"])
    assert run.result.status == "failed"
    assert run.executor is not None and not any(group_alive(g) for g in run.executor.pgids)


def test_cancel_stops_running_and_pending_jobs_promptly(tmp_path: Path) -> None:
    jobs = [
        job("long", "sleep 60", stage="build"),
        job("long2", "sleep 60 & wait", stage="build"),
        job("later", "echo later", stage="test"),
        job("delayed", "echo d", stage="build", when="delayed", start_in_s=60),
        job("gate", "echo g", stage="build", when="manual", allow_failure=False),
        job("blocked", "echo b", stage="deploy", needs=(Need("gate"),)),
        job("queued", "sleep 60", stage="build"),  # no slot: concurrency 2
    ]
    run = run_jobs(tmp_path, jobs, concurrency=2, cancel_after=0.5)
    assert run.seconds < 8
    assert run.result.status == "canceled"
    assert run.rec.pipeline == ["running", "canceled"]
    assert run.statuses() == {
        "long": "canceled",
        "long2": "canceled",
        "later": "canceled",
        "delayed": "canceled",
        "gate": "manual",
        "blocked": "canceled",
        "queued": "canceled",
    }
    assert run.out("later") == []
    assert run.executor is not None
    assert [r.job.name for r in run.executor.requests] == ["long", "long2"]
    assert not any(group_alive(g) for g in run.executor.pgids)


def test_cancel_set_before_the_run_starts_nothing(tmp_path: Path) -> None:
    rec = Recorder()
    executor = BashExecutor(tmp_path)

    async def main() -> str:
        cancel = asyncio.Event()
        cancel.set()
        result = await run_pipeline(
            Pipeline(stages=STAGES, jobs=(job("a", "true"),)),
            executor,
            rec,
            pipeline_id=1,
            run_dir=tmp_path,
            options=RunOptions(concurrency=2),
            cancel=cancel,
        )
        return result.status

    assert asyncio.run(main()) == "canceled"
    assert executor.requests == []
    assert rec.statuses("a") == ["canceled"]


def test_cancelling_the_run_task_leaves_no_process_or_task(tmp_path: Path) -> None:
    executor = BashExecutor(tmp_path)

    async def main() -> set[asyncio.Task[Any]]:
        task = asyncio.create_task(
            run_pipeline(
                Pipeline(stages=STAGES, jobs=(job("a", "sleep 60"), job("b", "sleep 60"))),
                executor,
                Recorder(),
                pipeline_id=1,
                run_dir=tmp_path,
                options=RunOptions(concurrency=2),
            )
        )
        while len(executor.pgids) < 2:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        me = asyncio.current_task()
        return {t for t in asyncio.all_tasks() if t is not me}

    start = time.monotonic()
    leftovers = asyncio.run(main())
    assert time.monotonic() - start < 8
    assert leftovers == set()
    assert len(executor.pgids) == 2 and not any(group_alive(g) for g in executor.pgids)


def test_executor_errors_fail_the_job_not_the_run(tmp_path: Path) -> None:
    jobs = [
        job("no-start", "echo x", stage="build", tags=("explode-start",)),
        job("no-wait", "echo y", stage="build", tags=("explode-wait",)),
        job("fine", "echo fine", stage="build"),
        job("always", "echo always", stage="test", when="always"),
        job(
            "retried",
            "true",
            stage="build",
            tags=("explode-start",),
            retry=Retry(max=1, when=("runner_system_failure",)),
        ),
    ]
    run = run_jobs(tmp_path, jobs)
    assert run.statuses() == {
        "no-start": "failed",
        "no-wait": "failed",
        "fine": "success",
        "always": "success",
        "retried": "failed",
    }
    for name in ("no-start", "no-wait"):
        outcome = run.result.job(name).outcome
        assert outcome is not None and outcome.failure_reason == "runner_system_failure"
        assert outcome.error is not None and "exploded" in outcome.error
        assert any("could not run" in line and "exploded" in line for line in run.rec.info[name])
    assert run.result.job("retried").attempts == 2
    assert run.result.status == "failed"


def test_a_listener_error_stops_the_run_and_is_raised(tmp_path: Path) -> None:
    rec = Recorder(fail_on=lambda e: e.name == "quick" and e.status == "success")
    executor = BashExecutor(tmp_path)
    jobs = (job("quick", "true"), job("slow", "sleep 60"), job("next", "true", stage="deploy"))

    async def main() -> None:
        await run_pipeline(
            Pipeline(stages=STAGES, jobs=jobs),
            executor,
            rec,
            pipeline_id=1,
            run_dir=tmp_path,
            options=RunOptions(concurrency=2),
        )

    start = time.monotonic()
    with pytest.raises(RuntimeError, match="listener broke on quick"):
        asyncio.run(main())
    assert time.monotonic() - start < 8
    assert not any(group_alive(g) for g in executor.pgids)
    assert rec.statuses("slow")[-1] == "canceled"
    assert rec.statuses("next") == ["canceled"]
