"""The engine on real jobs: the real LocalExecutor runs real bash processes.

Order is observed through timestamps the jobs themselves write.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from aicd.engine import JobStatus, PipelineResult, RunOptions, run_pipeline
from aicd.executors.base import JobOutcome
from aicd.executors.local import LocalExecutor
from aicd.pipeline.ir import Artifacts, Job, Need, Pipeline, Reports, Retry, Variable

STAGES = (".pre", "build", "test", "deploy", ".post")


class Recorder:
    """An EngineListener that keeps everything it is told."""

    def __init__(self) -> None:
        self.next_id = 100
        self.events: list[tuple[str, str, int]] = []
        self.output: dict[str, list[str]] = {}
        self.pipeline: list[str] = []

    def allocate_job_ids(self, jobs: Sequence[Job]) -> list[int]:
        ids = list(range(self.next_id, self.next_id + len(jobs)))
        self.next_id += len(jobs)
        return ids

    def allocate_retry_id(self, job: Job, attempt: int) -> int:
        self.next_id += 1
        return self.next_id

    def job_status(
        self, job: Job, job_id: int, attempt: int, status: JobStatus, outcome: JobOutcome | None
    ) -> None:
        self.events.append((job.name, str(status), attempt))

    def job_output(self, job: Job, job_id: int, kind: str, text: str) -> None:
        if kind == "out":
            self.output.setdefault(job.name, []).append(text)

    def pipeline_status(self, status: str) -> None:
        self.pipeline.append(status)


def job(name: str, *script: str, stage: str = "test", **kw: object) -> Job:
    return Job(name=name, base_name=name, stage=stage, script=tuple(script), **kw)  # type: ignore[arg-type]


def run(
    tmp_path: Path,
    jobs: Sequence[Job],
    *,
    concurrency: int = 4,
    cancel_after: float | None = None,
    **options: object,
) -> tuple[PipelineResult, Recorder]:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "README").write_text("x\n")
    recorder = Recorder()
    pipeline = Pipeline(stages=STAGES, jobs=tuple(jobs))

    async def main() -> PipelineResult:
        executor = LocalExecutor(project, tmp_path / "home")
        cancel = asyncio.Event()
        if cancel_after is not None:
            asyncio.get_running_loop().call_later(cancel_after, cancel.set)
        try:
            return await run_pipeline(
                pipeline,
                executor,
                recorder,
                pipeline_id=1,
                run_dir=tmp_path / "run",
                options=RunOptions(concurrency=concurrency, **options),  # type: ignore[arg-type]
                cancel=cancel,
            )
        finally:
            await executor.close()

    return asyncio.run(main()), recorder


def stamp(path: Path, name: str) -> str:
    now = "python3 -c 'import time; print(time.time())'"
    return f"{now} > {path}/{name}.start; sleep 0.2; {now} > {path}/{name}.end"


def times(path: Path, name: str) -> tuple[float, float]:
    return float((path / f"{name}.start").read_text()), float((path / f"{name}.end").read_text())


def statuses(result: PipelineResult) -> dict[str, str]:
    return {r.job.name: str(r.status) for r in result.jobs}


def test_stage_order_and_needs_shortcut(tmp_path: Path) -> None:
    out = tmp_path / "t"
    out.mkdir()
    result, _ = run(
        tmp_path,
        [
            job("slow-build", "sleep 0.6", stamp(out, "slow-build"), stage="build"),
            job("quick-build", stamp(out, "quick-build"), stage="build"),
            job("by-stage", stamp(out, "by-stage"), stage="test"),
            job("by-needs", stamp(out, "by-needs"), stage="test", needs=(Need("quick-build"),)),
            job("no-needs", stamp(out, "no-needs"), stage="deploy", needs=()),
        ],
    )
    assert result.status == "success"
    # a stage job waits for every job of earlier stages
    assert times(out, "by-stage")[0] >= times(out, "slow-build")[1]
    # a needs job starts when its needs are done, not the whole stage
    assert times(out, "by-needs")[0] >= times(out, "quick-build")[1]
    assert times(out, "by-needs")[0] < times(out, "slow-build")[1]
    # needs: [] starts at once, even in the last stage
    assert times(out, "no-needs")[0] < times(out, "slow-build")[1]


def test_concurrency_limit_is_observed(tmp_path: Path) -> None:
    out = tmp_path / "t"
    out.mkdir()
    names = [f"j{i}" for i in range(5)]
    result, _ = run(tmp_path, [job(n, stamp(out, n)) for n in names], concurrency=2)
    assert result.status == "success"
    spans = [times(out, n) for n in names]
    for t, _ in spans:  # at any start time, at most 2 jobs are inside their span
        inside = sum(1 for s, e in spans if s <= t < e)
        assert inside <= 2


def test_failure_skips_on_success_and_runs_on_failure_and_always(tmp_path: Path) -> None:
    result, rec = run(
        tmp_path,
        [
            job("a", "echo a", "exit 4", "echo never", stage="build"),
            job("ok", "echo ok", stage="build"),
            job("next", "echo next", stage="test"),
            job("cleanup", "echo cleanup", stage="test", when="on_failure"),
            job("report", "echo report", stage="deploy", when="always"),
        ],
    )
    assert result.status == "failed"
    assert statuses(result) == {
        "a": "failed",
        "ok": "success",
        "next": "skipped",
        "cleanup": "success",
        "report": "success",
    }
    assert result.job("a").outcome is not None and result.job("a").outcome.exit_code == 4
    assert "never" not in rec.output["a"]


def test_on_failure_skipped_when_all_pass(tmp_path: Path) -> None:
    result, _ = run(
        tmp_path,
        [job("a", "true", stage="build"), job("cleanup", "echo c", stage="test", when="on_failure")],
    )
    assert result.status == "success"
    assert statuses(result) == {"a": "success", "cleanup": "skipped"}


def test_allow_failure_is_a_warning_and_exit_codes(tmp_path: Path) -> None:
    result, _ = run(
        tmp_path,
        [
            job("lenient", "exit 3", stage="build", allow_failure=True),
            job("codes-ok", "exit 2", stage="build", allow_failure=True, allow_failure_exit_codes=(2,)),
            job("after", "echo fine", stage="test"),
        ],
    )
    assert result.status == "success"
    assert statuses(result) == {"lenient": "failed", "codes-ok": "failed", "after": "success"}
    assert result.job("lenient").allowed_failure
    result, _ = run(
        tmp_path,
        [
            job("codes-bad", "exit 5", stage="build", allow_failure=True, allow_failure_exit_codes=(2,)),
            job("after", "echo fine", stage="test"),
        ],
    )
    assert result.status == "failed"
    assert statuses(result) == {"codes-bad": "failed", "after": "skipped"}


def test_retry_counts_attempts_and_respects_exit_codes(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    bump = f"echo x >> {counter}; test $(wc -l < {counter}) -ge 3"
    result, rec = run(tmp_path, [job("flaky", bump, retry=Retry(max=2))])
    assert result.status == "success"
    assert result.job("flaky").attempts == 3
    assert [e for e in rec.events if e[1] == "failed"] == [("flaky", "failed", 1), ("flaky", "failed", 2)]
    # exit code not in retry:exit_codes: no retry
    result, _ = run(tmp_path, [job("no", "exit 1", retry=Retry(max=2, exit_codes=(137,)))])
    assert result.job("no").attempts == 1 and result.status == "failed"
    # when: script_failure does not cover a timeout
    result, _ = run(
        tmp_path, [job("t", "sleep 5", timeout_s=0.3, retry=Retry(max=2, when=("script_failure",)))]
    )
    assert result.job("t").attempts == 1


def test_timeout_fails_the_job_and_kills_it(tmp_path: Path) -> None:
    start = time.monotonic()
    result, _ = run(tmp_path, [job("slow", "sleep 30", timeout_s=0.5)])
    assert time.monotonic() - start < 10
    r = result.job("slow")
    assert r.status == JobStatus.FAILED
    assert r.outcome is not None and r.outcome.failure_reason == "job_execution_timeout"


def test_cancel_stops_running_and_pending_jobs_promptly(tmp_path: Path) -> None:
    start = time.monotonic()
    result, rec = run(
        tmp_path,
        [job("long", "sleep 60", stage="build"), job("later", "echo later", stage="test")],
        cancel_after=0.5,
    )
    assert time.monotonic() - start < 10
    assert result.status == "canceled"
    assert statuses(result) == {"long": "canceled", "later": "canceled"}
    assert "later" not in rec.output


def test_resource_group_never_overlaps(tmp_path: Path) -> None:
    out = tmp_path / "t"
    out.mkdir()
    names = ["d1", "d2", "d3"]
    jobs = [
        job(n, stamp(out, n), resource_group="prod-$TARGET", variables=(Variable("TARGET", "eu"),))
        for n in names
    ]
    result, _ = run(tmp_path, jobs, concurrency=3)
    assert result.status == "success"
    spans = sorted(times(out, n) for n in names)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end


def test_manual_jobs(tmp_path: Path) -> None:
    jobs = [
        job("build", "echo b", stage="build"),
        job("gate", "echo gate", stage="test", when="manual"),  # allow_failure false: blocking
        job("deploy", "echo d", stage="deploy"),
        job("optional", "echo o", stage="test", when="manual", allow_failure=True),
    ]
    result, _ = run(tmp_path, jobs)
    assert statuses(result) == {
        "build": "success",
        "gate": "manual",
        "deploy": "created",
        "optional": "manual",
    }
    assert result.job("deploy").blocked_by == "gate"
    assert result.status == "success"
    result, rec = run(tmp_path, jobs, play_manual=frozenset({"gate"}))
    assert statuses(result) == {
        "build": "success",
        "gate": "success",
        "deploy": "success",
        "optional": "manual",
    }
    assert rec.output["gate"] == ["gate"]


def test_delayed_job_waits(tmp_path: Path) -> None:
    start = time.monotonic()
    result, _ = run(tmp_path, [job("later", "echo hi", when="delayed", start_in_s=0.6)])
    assert result.status == "success"
    assert time.monotonic() - start >= 0.6


def test_artifacts_and_dotenv_follow_gitlab_sources(tmp_path: Path) -> None:
    arts = Artifacts(paths=("out/",), reports=Reports(dotenv=("vars.env",)))
    jobs = [
        job("a", "mkdir -p out", "echo A > out/a", "echo FROM_A=1 > vars.env", stage="build", artifacts=arts),
        job("b", "mkdir -p out", "echo B > out/b", "echo FROM_B=1 > vars.env", stage="build", artifacts=arts),
        job("all", "ls out | tr '\\n' ' '", 'echo "A=$FROM_A B=$FROM_B"', stage="test"),
        job(
            "need-a", "ls out | tr '\\n' ' '", 'echo "A=$FROM_A B=$FROM_B"', stage="test", needs=(Need("a"),)
        ),
        job(
            "need-b-no-art",
            "ls out 2>/dev/null || echo none",
            stage="test",
            needs=(Need("b", artifacts=False),),
        ),
        job("deps-b", "ls out | tr '\\n' ' '", stage="test", dependencies=("b",)),
        job("deps-none", "ls out 2>/dev/null || echo none", stage="test", dependencies=()),
    ]
    result, rec = run(tmp_path, jobs)
    assert result.status == "success", rec.output
    assert rec.output["all"] == ["a b ", "A=1 B=1"]
    assert rec.output["need-a"] == ["a ", "A=1 B="]
    assert rec.output["need-b-no-art"] == ["none"]
    assert rec.output["deps-b"] == ["b "]
    assert rec.output["deps-none"] == ["none"]


def test_subset_with_and_without_needs(tmp_path: Path) -> None:
    jobs = [
        job("a", "echo a", stage="build"),
        job("b", "echo b", stage="test", needs=(Need("a"),)),
        job("c", "echo c", stage="test"),
    ]
    result, _ = run(tmp_path, jobs, only=frozenset({"b"}))
    assert statuses(result) == {"b": "success"}
    result, _ = run(tmp_path, jobs, only=frozenset({"b"}), with_needs=True)
    assert statuses(result) == {"a": "success", "b": "success"}


@pytest.mark.parametrize("when", ["on_success", "always"])
def test_needs_on_a_skipped_job(tmp_path: Path, when: str) -> None:
    jobs = [
        job("fail", "exit 1", stage="build"),
        job("mid", "echo mid", stage="test"),  # skipped because build failed
        job("tail", "echo tail", stage="deploy", needs=(Need("mid"),), when=when),
    ]
    result, _ = run(tmp_path, jobs)
    expected = "success" if when == "always" else "skipped"
    assert statuses(result)["tail"] == expected
