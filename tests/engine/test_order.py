"""When jobs start: stages, needs, concurrency, resource groups, subsets (real bash jobs).

Order is observed through timestamps the jobs write themselves.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from aicd.engine import RunOptions, run_pipeline
from aicd.errors import AicdError
from aicd.pipeline.ir import Job, Need, Pipeline, Variable

from .bash_executor import BashExecutor
from .support import STAGES, Recorder, job, max_overlap, run_jobs, span, stamp


def test_stages_wait_for_every_earlier_job_and_needs_do_not(tmp_path: Path) -> None:
    t = tmp_path
    run = run_jobs(
        tmp_path,
        [
            job("slow-build", stamp(t, "slow-build", 1.0), stage="build"),
            job("quick-build", stamp(t, "quick-build", 0.1), stage="build"),
            job("by-stage", stamp(t, "by-stage", 0.1), stage="test"),
            job("by-needs", stamp(t, "by-needs", 0.1), stage="test", needs=(Need("quick-build"),)),
            job("no-needs", stamp(t, "no-needs", 0.1), stage="deploy", needs=()),
            job("late-stage", stamp(t, "late-stage", 0.1), stage="deploy"),
        ],
    )
    assert run.result.status == "success"
    slow = span(t, "slow-build")
    # a stage job waits for every job of every earlier stage (and all of them are done)
    assert span(t, "by-stage")[0] >= slow[1]
    assert span(t, "late-stage")[0] >= max(span(t, "by-stage")[1], span(t, "by-needs")[1])
    # a needs job starts when its needs are done, not the whole stage
    assert span(t, "by-needs")[0] >= span(t, "quick-build")[1]
    assert span(t, "by-needs")[0] < slow[1]
    # needs: [] starts at once, even in the last stage
    assert span(t, "no-needs")[0] < slow[1]


def test_same_stage_needs_and_definition_order_breaks_ties(tmp_path: Path) -> None:
    t = tmp_path
    jobs = [
        job("second", stamp(t, "second", 0.05), needs=(Need("first"),)),
        job("a", stamp(t, "a", 0.05)),
        job("first", stamp(t, "first", 0.05)),
        job("b", stamp(t, "b", 0.05)),
    ]
    run = run_jobs(tmp_path, jobs, concurrency=1)
    assert run.result.status == "success"
    starts = sorted(["second", "a", "first", "b"], key=lambda n: span(t, n)[0])
    # ready at once, in definition order: a, first, b; "second" needs "first" (same stage)
    assert starts.index("a") < starts.index("first") < starts.index("b")
    assert span(t, "second")[0] >= span(t, "first")[1]
    assert run.executor is not None
    # with one slot the engine starts "second" as soon as "first" is done, before "b"
    assert [r.job.name for r in run.executor.requests] == ["a", "first", "second", "b"]


def test_concurrency_limit_is_observed_and_used(tmp_path: Path) -> None:
    t = tmp_path
    names = [f"j{i}" for i in range(5)]
    run = run_jobs(tmp_path, [job(n, stamp(t, n, 0.3)) for n in names], concurrency=2)
    assert run.result.status == "success"
    assert max_overlap([span(t, n) for n in names]) == 2


def test_concurrency_one_runs_one_job_at_a_time(tmp_path: Path) -> None:
    t = tmp_path
    names = ["x", "y", "z"]
    run = run_jobs(tmp_path, [job(n, stamp(t, n, 0.05), needs=()) for n in names], concurrency=1)
    assert run.result.status == "success"
    spans = [span(t, n) for n in names]
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end


def test_resource_group_never_overlaps_and_other_groups_do(tmp_path: Path) -> None:
    t = tmp_path
    eu = (Variable("TARGET", "eu"),)
    jobs = [job(n, stamp(t, n, 0.2), resource_group="prod-$TARGET", variables=eu) for n in ("d1", "d2", "d3")]
    jobs.append(job("other", stamp(t, "other", 0.2), resource_group="prod-us"))
    run = run_jobs(tmp_path, jobs, concurrency=4)
    assert run.result.status == "success"
    spans = sorted(span(t, n) for n in ("d1", "d2", "d3"))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end
    # a job of another group is not held back by prod-eu
    assert span(t, "other")[0] < spans[-1][0]


def test_resource_group_waiters_do_not_hold_a_slot(tmp_path: Path) -> None:
    t = tmp_path
    jobs = [
        job("g1", stamp(t, "g1", 0.4), resource_group="one"),
        job("g2", stamp(t, "g2", 0.1), resource_group="one"),
        job("free", stamp(t, "free", 0.1)),
    ]
    run = run_jobs(tmp_path, jobs, concurrency=2)
    assert run.result.status == "success"
    # g2 waits for the group; "free" takes the second slot meanwhile
    assert span(t, "free")[0] < span(t, "g1")[1]
    assert span(t, "g2")[0] >= span(t, "g1")[1]


def test_subset_leaves_other_jobs_out_and_with_needs_pulls_them_in(tmp_path: Path) -> None:
    jobs = [
        job("a", "echo a", stage="build"),
        job("z", "echo z", stage="build", needs=()),
        job("b", "echo b", stage="test", needs=(Need("a"),)),
        job("c", "echo c", stage="test"),
        job("d", "echo d", stage="deploy", needs=(Need("b"),)),
    ]
    run = run_jobs(tmp_path, jobs, only=frozenset({"d"}))
    assert run.statuses() == {"d": "success"}
    assert run.rec.allocated == [["d"]]
    run = run_jobs(tmp_path, jobs, only=frozenset({"d"}), with_needs=True)
    assert run.statuses() == {"a": "success", "b": "success", "d": "success"}
    assert run.rec.allocated == [["a", "b", "d"]]
    # a stage job selected alone runs at once: the jobs of earlier stages are not in the run
    run = run_jobs(tmp_path, jobs, only=frozenset({"c"}), with_needs=True)
    assert run.statuses() == {"c": "success"}


@pytest.mark.parametrize(
    ("jobs", "cycle"),
    [
        ([job("a", "true", needs=(Need("b"),)), job("b", "true", needs=(Need("a"),))], "a -> b -> a"),
        ([job("self", "true", needs=(Need("self"),))], "self -> self"),
        # a build job needing a test job that waits (by stage) for the build stage
        (
            [job("early", "true", stage="build", needs=(Need("late"),)), job("late", "true", stage="test")],
            "early -> late -> early",
        ),
    ],
)
def test_a_cycle_is_refused_before_anything_runs(tmp_path: Path, jobs: list[Job], cycle: str) -> None:
    rec = Recorder()

    async def main() -> None:
        await run_pipeline(
            Pipeline(stages=STAGES, jobs=tuple(jobs)),
            BashExecutor(tmp_path),
            rec,
            pipeline_id=1,
            run_dir=tmp_path,
            options=RunOptions(concurrency=2),
        )

    with pytest.raises(AicdError, match=cycle):
        asyncio.run(main())
    assert rec.allocated == [] and rec.events == []


def test_unknown_stage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AicdError, match='stage "nope"'):
        run_jobs(tmp_path, [job("a", "true", stage="nope")])


def test_empty_pipeline_succeeds(tmp_path: Path) -> None:
    run = run_jobs(tmp_path, [])
    assert run.result.status == "success" and run.result.jobs == []
    assert run.rec.pipeline == ["running", "success"]
