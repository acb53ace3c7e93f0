"""What a job receives: artifact sources, dotenv variables, variable precedence (real bash jobs)."""

from __future__ import annotations

from pathlib import Path

from aicd.pipeline.ir import Need, Variable

from .support import job, run_jobs

SHOW = 'echo "$TEST_ARTIFACT_SOURCES"'


def names(line: str) -> list[str]:
    return [item.split(":")[0] for item in line.split()]


def test_artifact_sources_follow_gitlab(tmp_path: Path) -> None:
    jobs = [
        job("b2", "true", stage="build"),
        job("pre", "true", stage=".pre"),
        job("b1", "true", stage="build"),
        job("skipped", "true", stage="build", when="manual", allow_failure=True),
        job("all", SHOW, stage="test"),
        job("need-b1", SHOW, stage="test", needs=(Need("b1"), Need("pre", artifacts=False))),
        job("need-none", SHOW, stage="test", needs=()),
        job("deps-b1", SHOW, stage="test", dependencies=("b1",)),
        job("deps-none", SHOW, stage="test", dependencies=()),
        # needs and dependencies: the needed jobs with artifacts that dependencies also names
        job(
            "both",
            SHOW,
            stage="test",
            needs=(Need("b1"), Need("b2"), Need("pre", artifacts=False)),
            dependencies=("b2", "pre"),
        ),
        job("same-stage", SHOW, stage="test", needs=(Need("all"), Need("b2"))),
    ]
    run = run_jobs(tmp_path, jobs)
    assert run.result.status == "success"
    # stage then definition order; jobs that did not run (the manual one) give nothing
    assert names(run.out("all")[0]) == ["pre", "b2", "b1"]
    assert names(run.out("need-b1")[0]) == ["b1"]
    assert run.out("need-none") == [""]
    assert names(run.out("deps-b1")[0]) == ["b1"]
    assert run.out("deps-none") == [""]
    assert names(run.out("both")[0]) == ["b2"]
    assert names(run.out("same-stage")[0]) == ["b2", "all"]
    # ids are those of the source jobs
    ids = {r.job.name: r.job_id for r in run.result.jobs}
    assert run.out("deps-b1") == [f"b1:{ids['b1']}"]


def test_artifacts_of_a_retried_job_come_from_its_last_attempt(tmp_path: Path) -> None:
    from aicd.pipeline.ir import Retry

    jobs = [
        job("flaky", 'test "$TEST_ATTEMPT" -ge 2', stage="build", retry=Retry(max=1)),
        job("use", SHOW, stage="test"),
    ]
    run = run_jobs(tmp_path, jobs)
    assert run.out("use") == [f"flaky:{run.result.job('flaky').job_id}"]


def test_dotenv_reaches_only_jobs_that_receive_the_artifacts(tmp_path: Path) -> None:
    jobs = [
        job("a", 'echo "FROM_A=1" >> $TEST_DOTENV', 'echo "SHARED=a" >> $TEST_DOTENV', stage="build"),
        job("b", 'echo "FROM_B=1" >> $TEST_DOTENV', 'echo "SHARED=b" >> $TEST_DOTENV', stage="build"),
        job("all", 'echo "A=$FROM_A B=$FROM_B S=$SHARED"', stage="test"),
        job("need-a", 'echo "A=$FROM_A B=$FROM_B S=$SHARED"', stage="test", needs=(Need("a"),)),
        job("no-art", 'echo "A=$FROM_A"', stage="test", needs=(Need("a", artifacts=False),)),
        job("deps-none", 'echo "A=$FROM_A B=$FROM_B"', stage="test", dependencies=()),
    ]
    run = run_jobs(tmp_path, jobs)
    assert run.result.status == "success"
    assert run.out("all") == ["A=1 B=1 S=b"]  # b comes later, so its value wins
    assert run.out("need-a") == ["A=1 B= S=a"]
    assert run.out("no-art") == ["A="]
    assert run.out("deps-none") == ["A= B="]


def test_variable_precedence(tmp_path: Path) -> None:
    predefined = (Variable("CI_PIPELINE_ID", "1"), Variable("P_ONLY", "p"), Variable("LAYER", "predefined"))
    jobs = [
        job("make", 'echo "LAYER=dotenv" >> $TEST_DOTENV', 'echo "DOT=dot" >> $TEST_DOTENV', stage="build"),
        job(
            "yaml-wins",
            'echo "$LAYER $P_ONLY $CI_JOB_ID $CI_JOB_NAME $CI_JOB_STAGE"',
            stage="test",
            dependencies=(),
            variables=(Variable("LAYER", "yaml"), Variable("CI_JOB_STAGE", "mine")),
        ),
        job(
            "dotenv-wins",
            'echo "$LAYER $DOT"',
            stage="test",
            variables=(Variable("LAYER", "yaml"), Variable("DOT", "yaml")),
        ),
        job(
            "pipeline-wins",
            'echo "$TOP $LAYER"',
            stage="test",
            variables=(Variable("TOP", "yaml"),),
        ),
    ]
    run = run_jobs(tmp_path, jobs, predefined=predefined)
    ids = {r.job.name: r.job_id for r in run.result.jobs}
    assert run.out("yaml-wins") == [f"yaml p {ids['yaml-wins']} yaml-wins mine"]
    assert run.out("dotenv-wins") == ["dotenv dot"]
    run = run_jobs(tmp_path, jobs, predefined=predefined, variables=(Variable("TOP", "cli"),))
    assert run.out("pipeline-wins") == ["cli dotenv"]
