"""Resume: settled jobs, prior attempts, shared slots and RunControl (real bash jobs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aicd.engine import JobStatus, PipelineResult, RunControl, RunOptions, SettledJob, run_pipeline
from aicd.pipeline.ir import Need, Pipeline, Retry, Variable

from .bash_executor import BashExecutor
from .support import STAGES, Recorder, job, max_overlap, run_jobs, span, stamp

SHOW = 'echo "$TEST_ARTIFACT_SOURCES"'


def test_settled_jobs_keep_their_ids_and_do_not_run(tmp_path: Path) -> None:
    jobs = [
        job("build", "echo built", stage="build"),
        job("lint", "echo linted", stage="build"),
        job("test", SHOW, 'echo "token=$TOKEN"', stage="test"),
    ]
    settled = {
        "build": SettledJob(7, JobStatus.SUCCESS, dotenv=(Variable("TOKEN", "from-build"),)),
        "lint": SettledJob(8, JobStatus.SUCCESS, attempts=2),
    }
    run = run_jobs(tmp_path, jobs, settled=settled)
    assert run.result.status == "success"
    assert run.rec.allocated == [["test"]]  # only the job that runs gets an id
    assert run.out("build") == [] and run.out("lint") == []
    assert run.out("test") == ["build:7 lint:8", "token=from-build"]  # their ids: artifact sources
    assert [e.name for e in run.rec.events if e.status == "running"] == ["test"]
    r = {x.job.name: x for x in run.result.jobs}
    assert (r["lint"].job_id, r["lint"].attempts, r["lint"].status) == (8, 2, JobStatus.SUCCESS)


def test_a_settled_failure_decides_the_dependants(tmp_path: Path) -> None:
    jobs = [
        job("build", "true", stage="build"),
        job("test", "true", stage="test"),
        job("cleanup", "echo cleaning", stage="deploy", when="on_failure"),
    ]
    run = run_jobs(tmp_path, jobs, settled={"build": SettledJob(3, JobStatus.FAILED)})
    assert run.statuses() == {"build": "failed", "test": "skipped", "cleanup": "success"}
    assert run.result.status == "failed"


def test_an_allowed_settled_failure_lets_the_dependants_run(tmp_path: Path) -> None:
    jobs = [job("build", "true", stage="build"), job("test", "echo ok", stage="test")]
    run = run_jobs(tmp_path, jobs, settled={"build": SettledJob(3, JobStatus.FAILED, allowed_failure=True)})
    assert run.statuses() == {"build": "failed", "test": "success"}
    assert run.result.status == "success"


def test_retrying_a_failed_job_numbers_its_attempt_and_counts_prior_ones(tmp_path: Path) -> None:
    # the job failed once already (attempt 1); retry:max 1 allows one more automatic attempt only
    jobs = [
        job("build", "true", stage="build"),
        job("flaky", 'echo "attempt $TEST_ATTEMPT"; false', stage="test", retry=Retry(max=1)),
    ]
    run = run_jobs(
        tmp_path,
        jobs,
        settled={"build": SettledJob(1, JobStatus.SUCCESS)},
        prior_attempts={"flaky": 1},
    )
    assert run.out("flaky") == ["attempt 2"]  # no automatic retry left
    flaky = run.result.job("flaky")
    assert flaky.attempts == 2 and flaky.status == JobStatus.FAILED
    assert {e.attempt for e in run.rec.events if e.name == "flaky"} == {2}


def test_playing_a_manual_job_later_unblocks_its_dependants(tmp_path: Path) -> None:
    jobs = [
        job("build", "true", stage="build"),
        job("gate", "echo played", stage="test", when="manual", allow_failure=False),
        job("deploy", "echo deployed", stage="deploy"),
    ]
    first = run_jobs(tmp_path, jobs)
    assert first.statuses() == {"build": "success", "gate": "manual", "deploy": "created"}
    assert first.result.blocked[0].blocked_by == "gate"
    ids = {r.job.name: r.job_id for r in first.result.jobs}
    second = run_jobs(
        tmp_path,
        jobs,
        settled={"build": SettledJob(ids["build"], JobStatus.SUCCESS)},
        play_manual=frozenset({"gate"}),
    )
    assert second.statuses() == {"build": "success", "gate": "success", "deploy": "success"}
    assert second.rec.allocated == [["gate", "deploy"]]


def test_a_settled_manual_job_still_blocks(tmp_path: Path) -> None:
    jobs = [
        job("gate", "true", stage="test", when="manual", allow_failure=False),
        job("deploy", "true", stage="deploy"),
    ]
    run = run_jobs(tmp_path, jobs, settled={"gate": SettledJob(5, JobStatus.MANUAL, attempts=0)})
    assert run.statuses() == {"gate": "manual", "deploy": "created"}
    assert run.result.blocked[0].blocked_by == "gate"


def test_a_settled_status_must_be_final(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a settled one"):
        run_jobs(tmp_path, [job("a", "true")], settled={"a": SettledJob(1, JobStatus.RUNNING)})


def test_settled_dag_needs(tmp_path: Path) -> None:
    jobs = [
        job("a", "true", stage="build"),
        job("b", "echo b", stage="build"),
        job("c", SHOW, stage="test", needs=(Need("a"),)),
    ]
    run = run_jobs(tmp_path, jobs, settled={"a": SettledJob(11, JobStatus.SUCCESS)})
    assert run.out("c") == ["a:11"]
    assert run.result.status == "success"


def _pipeline(*jobs_: object) -> Pipeline:
    return Pipeline(stages=STAGES, jobs=tuple(jobs_))  # type: ignore[arg-type]


def test_shared_slots_bound_jobs_across_runs(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    names = [f"p{p}j{j}" for p in range(3) for j in range(3)]

    async def main() -> list[PipelineResult]:
        slots = asyncio.Semaphore(2)
        runs = []
        for p in range(3):
            pipeline = _pipeline(*(job(f"p{p}j{j}", stamp(marks, f"p{p}j{j}", 0.3)) for j in range(3)))
            executor = BashExecutor(tmp_path)
            runs.append(
                run_pipeline(
                    pipeline,
                    executor,
                    Recorder(next_id=100 * (p + 1)),
                    pipeline_id=p,
                    run_dir=tmp_path / f"run{p}",
                    options=RunOptions(concurrency=3, slots=slots),
                )
            )
        return list(await asyncio.gather(*runs))

    results = asyncio.run(main())
    assert [r.status for r in results] == ["success"] * 3
    assert max_overlap([span(marks, n) for n in names]) == 2


def test_a_job_waits_pending_for_a_slot_and_a_cancel_frees_it(tmp_path: Path) -> None:
    rec = Recorder()

    async def main() -> PipelineResult:
        slots = asyncio.Semaphore(1)
        await slots.acquire()  # someone else holds the only slot
        cancel = asyncio.Event()
        asyncio.get_running_loop().call_later(0.3, cancel.set)
        result = await run_pipeline(
            _pipeline(job("a", "echo never")),
            BashExecutor(tmp_path),
            rec,
            pipeline_id=1,
            run_dir=tmp_path / "run",
            options=RunOptions(concurrency=1, slots=slots),
            cancel=cancel,
        )
        assert slots.locked()  # nothing leaked, nothing released twice
        slots.release()
        assert not slots.locked()
        return result

    result = asyncio.run(main())
    assert result.status == "canceled"
    assert rec.statuses("a") == ["pending", "canceled"]


def test_run_control_cancels_one_job(tmp_path: Path) -> None:
    rec = Recorder()
    control = RunControl()

    async def main() -> PipelineResult:
        pipeline = _pipeline(
            job("slow", "sleep 20", stage="build"),
            job("quick", "sleep 0.5; echo quick", stage="build"),
            job("later", "echo later", stage="test"),
            job("waiting", "echo waiting", stage="deploy"),
        )
        loop = asyncio.get_running_loop()
        results: list[bool] = []
        loop.call_later(0.3, lambda: results.append(control.cancel_job("slow")))
        loop.call_later(0.35, lambda: results.append(control.cancel_job("nope")))
        executor = BashExecutor(tmp_path)
        try:
            result = await run_pipeline(
                pipeline,
                executor,
                rec,
                pipeline_id=1,
                run_dir=tmp_path / "run",
                options=RunOptions(concurrency=4),
                control=control,
            )
        finally:
            await executor.close()
        assert results == [True, False]
        assert not control.active and control.cancel_job("quick") is False
        return result

    result = asyncio.run(main())
    statuses = {r.job.name: str(r.status) for r in result.jobs}
    assert statuses == {"slow": "canceled", "quick": "success", "later": "skipped", "waiting": "skipped"}
    assert result.status == "canceled"
    assert rec.output.get("quick") == ["quick"]


def test_run_control_cancels_a_job_not_started(tmp_path: Path) -> None:
    control = RunControl()

    async def main() -> PipelineResult:
        pipeline = _pipeline(
            job("first", "sleep 0.6", stage="build"),
            job("second", "echo never", stage="test"),
            job("after", "echo after", stage="deploy", when="always"),
        )
        asyncio.get_running_loop().call_later(0.2, control.cancel_job, "second")
        return await run_pipeline(
            pipeline,
            BashExecutor(tmp_path),
            Recorder(),
            pipeline_id=1,
            run_dir=tmp_path / "run",
            options=RunOptions(concurrency=2),
            control=control,
        )

    result = asyncio.run(main())
    # as GitLab: a canceled upstream is valid for no `when`, not even always
    assert {r.job.name: str(r.status) for r in result.jobs} == {
        "first": "success",
        "second": "canceled",
        "after": "skipped",
    }
