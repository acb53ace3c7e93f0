"""The engine on the real LocalExecutor (aicd.executors.local): workspaces, artifacts, dotenv files."""

from __future__ import annotations

import time
from pathlib import Path

from aicd.engine import JobStatus
from aicd.executors.local import LocalExecutor
from aicd.pipeline.ir import Artifacts, Job, Need, Reports, Retry

from .support import Run, job, run_jobs


def run_local(tmp_path: Path, jobs: list[Job], **kw: object) -> Run:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "README").write_text("x\n")
    return run_jobs(tmp_path, jobs, executor=LocalExecutor(project, tmp_path / "home"), **kw)  # type: ignore[arg-type]


def test_artifacts_and_dotenv_follow_gitlab_sources(tmp_path: Path) -> None:
    arts = Artifacts(paths=("out/",), reports=Reports(dotenv=("vars.env",)))
    jobs = [
        job("a", "mkdir -p out", "echo A > out/a", "echo FROM_A=1 > vars.env", stage="build", artifacts=arts),
        job("b", "mkdir -p out", "echo B > out/b", "echo FROM_B=1 > vars.env", stage="build", artifacts=arts),
        job("all", "ls out | tr '\\n' ' '", 'echo "A=$FROM_A B=$FROM_B"', stage="test"),
        job(
            "need-a", "ls out | tr '\\n' ' '", 'echo "A=$FROM_A B=$FROM_B"', stage="test", needs=(Need("a"),)
        ),
        job("no-art", "ls out 2>/dev/null || echo none", stage="test", needs=(Need("b", artifacts=False),)),
        job("deps-b", "ls out | tr '\\n' ' '", stage="test", dependencies=("b",)),
    ]
    run = run_local(tmp_path, jobs)
    assert run.result.status == "success", run.rec.output
    assert run.out("all") == ["a b ", "A=1 B=1"]
    assert run.out("need-a") == ["a ", "A=1 B="]
    assert run.out("no-art") == ["none"]
    assert run.out("deps-b") == ["b "]


def test_order_retry_and_ids(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    jobs = [
        job(
            "first",
            f"echo x >> {counter}; test $(wc -l < {counter}) -ge 2",
            stage="build",
            retry=Retry(max=1),
        ),
        job("second", 'echo "id=$CI_JOB_ID"', stage="test"),
    ]
    run = run_local(tmp_path, jobs)
    assert run.result.status == "success"
    assert run.result.job("first").attempts == 2
    assert run.out("second") == [f"id={run.result.job('second').job_id}"]


def test_timeout_fails_the_job_and_kills_it(tmp_path: Path) -> None:
    run = run_local(tmp_path, [job("slow", "sleep 30", timeout_s=0.5)])
    assert run.seconds < 10
    r = run.result.job("slow")
    assert r.status == JobStatus.FAILED
    assert r.outcome is not None and r.outcome.failure_reason == "job_execution_timeout"


def test_cancel_stops_running_and_pending_jobs_promptly(tmp_path: Path) -> None:
    start = time.monotonic()
    run = run_local(
        tmp_path,
        [job("long", "sleep 60", stage="build"), job("later", "echo later", stage="test")],
        cancel_after=0.5,
    )
    assert time.monotonic() - start < 10
    assert run.result.status == "canceled"
    assert run.statuses() == {"long": "canceled", "later": "canceled"}
    assert run.out("later") == []
