"""The Dispatcher in-process, on SQLite and PostgreSQL, with real git repositories and real jobs."""

from __future__ import annotations

from pathlib import Path

from aicd.pipeline.ir import Variable

from .dispatcher_support import SPAN_SCRIPT, Harness

SIMPLE = """
stages: [build, test]
build:
  stage: build
  script:
    - echo "building $CI_COMMIT_SHORT_SHA on $CI_COMMIT_BRANCH from $CI_PIPELINE_SOURCE in $CI_PROJECT_NAME"
    - echo built > out.txt
  artifacts:
    paths: [out.txt]
test:
  stage: test
  script:
    - cat out.txt
    - echo "given=$GIVEN"
"""


def test_a_pipeline_runs_to_success_with_logs_and_artifacts(harness: Harness) -> None:
    sha = harness.commit({".gitlab-ci.yml": SIMPLE})

    async def body() -> None:
        record = await harness.submit(sha, variables=[Variable("GIVEN", "yes")])
        assert record.status == "created" and record.sha == sha and record.ref == "main"
        assert record.project_dir == harness.project.key
        assert record.variables == {"GIVEN": "yes"}
        done = await harness.finish(record.id)
        assert done.status == "success", done.error
        assert done.started_at is not None and done.finished_at is not None
        jobs = harness.jobs(record.id)
        assert {n: j.status for n, j in jobs.items()} == {"build": "success", "test": "success"}
        log = harness.log(jobs["build"])
        assert f"building {sha[:8]} on main from push in demo" in log
        assert "built" in harness.log(jobs["test"]) and "given=yes" in harness.log(jobs["test"])
        assert jobs["build"].artifacts_dir and (Path(jobs["build"].artifacts_dir) / "out.txt").is_file()
        assert (Path(done.run_dir) / "pipeline.json").is_file()
        assert not (harness.home / "builds" / str(record.id)).exists()  # workspaces removed

    harness.run(body)


def test_a_pipeline_file_with_errors_is_recorded_failed_with_the_messages(harness: Harness) -> None:
    sha = harness.commit({".gitlab-ci.yml": "build:\n  stage: nowhere\n  script: [true]\nbad: 3\n"})

    async def body() -> None:
        record = await harness.submit(sha)
        done = await harness.finish(record.id)
        assert done.status == "failed"
        assert done.error and ".gitlab-ci.yml" in done.error and "nowhere" in done.error
        assert harness.jobs(record.id) == {}

    harness.run(body)


def test_workflow_rules_that_create_no_pipeline_leave_it_skipped(harness_sqlite: Harness) -> None:
    h = harness_sqlite
    sha = h.commit(
        {".gitlab-ci.yml": 'workflow:\n  rules:\n    - if: $CI_COMMIT_TAG\njob:\n  script: ["true"]\n'}
    )

    async def body() -> None:
        done = await h.finish((await h.submit(sha)).id)
        assert done.status == "skipped" and done.error and "workflow" in done.error

    h.run(body)


def test_a_commit_missing_from_the_mirror_fails_the_pipeline_clearly(harness_sqlite: Harness) -> None:
    h = harness_sqlite
    h.commit({".gitlab-ci.yml": SIMPLE})

    async def body() -> None:
        done = await h.finish((await h.submit("0123456789abcdef0123456789abcdef01234567")).id)
        assert done.status == "failed" and done.error and "not in the mirror" in done.error

    h.run(body)


VARIABLES = """
show:
  script:
    - echo "tag=${CI_COMMIT_TAG:-none} branch=${CI_COMMIT_BRANCH:-none} protected=$CI_COMMIT_REF_PROTECTED"
    - echo "plain=$PLAIN secret=$SECRET guarded=${GUARDED:-absent}"
    - echo "file=$(cat "$AS_FILE")"
"""


def test_project_variables_masked_protected_and_file(harness: Harness) -> None:
    h = harness
    box = h.state.secrets
    for key, value, masked, protected, file in [
        ("PLAIN", "visible", False, False, False),
        ("SECRET", "s3cr3t-value", True, False, False),
        ("GUARDED", "only-protected", False, True, False),
        ("AS_FILE", "file-content", False, False, True),
    ]:
        h.state.projects.set_variable(h.project.id, key, box.encrypt(value), masked, protected, file)
    main = h.commit({".gitlab-ci.yml": VARIABLES})
    tagged = h.tag("v1.0")
    feature = h.commit({"other.txt": "x"}, branch="feature")

    async def body() -> None:
        logs = {}
        for ref, sha in (("main", main), ("v1.0", tagged), ("feature", feature)):
            record = await h.submit(sha, ref=ref)
            done = await h.finish(record.id)
            assert done.status == "success", done.error
            logs[ref] = h.log(h.jobs(record.id)["show"])
            assert done.variables is None  # project variables are not kept in the pipeline row
            assert "s3cr3t-value" not in (Path(done.run_dir) / "pipeline.json").read_text()
        assert "tag=none branch=main protected=true" in logs["main"]
        assert "tag=v1.0 branch=none protected=true" in logs["v1.0"]
        assert "tag=none branch=feature protected=false" in logs["feature"]
        assert "plain=visible secret=[MASKED] guarded=only-protected" in logs["main"]
        assert "guarded=only-protected" in logs["v1.0"] and "guarded=absent" in logs["feature"]
        assert "file=file-content" in logs["main"]
        assert all("s3cr3t-value" not in log for log in logs.values())

    h.run(body)


def test_one_concurrency_limit_across_all_pipelines(tmp_path: Path, harness: Harness) -> None:
    h = harness
    h.with_concurrency(2)
    jobs = "".join(f"j{i}:\n  script:\n    - '{SPAN_SCRIPT}'\n" for i in range(3))
    shas = [h.commit({".gitlab-ci.yml": jobs, "n": str(n)}, branch=f"b{n}") for n in range(3)]

    async def body() -> None:
        records = [await h.submit(sha, ref=f"b{n}") for n, sha in enumerate(shas)]
        for record in records:
            done = await h.finish(record.id)
            assert done.status == "success", done.error
        spans = [h.span(job) for record in records for job in h.jobs(record.id).values()]
        assert len(spans) == 9
        overlap = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
        assert overlap == 2  # never more than the limit, and the limit is used

    h.run(body)


AUTO_CANCEL = """
slow:
  interruptible: {flag}
  script:
    - echo started
    - sleep {seconds}
"""


def test_a_newer_pipeline_cancels_an_older_interruptible_one(harness: Harness) -> None:
    h = harness
    old = h.commit({".gitlab-ci.yml": AUTO_CANCEL.format(flag="true", seconds=30)})

    async def body() -> None:
        first = await h.submit(old)
        await _until_running(h, first.id, "slow")
        new = h.commit({".gitlab-ci.yml": AUTO_CANCEL.format(flag="true", seconds=0)})
        second = await h.submit(new)
        assert (await h.finish(second.id, timeout=60)).status == "success"
        older = h.state.runs.get_pipeline(first.id)
        assert older.status == "canceled"
        assert h.jobs(first.id)["slow"].status == "canceled"

    h.run(body)


def test_an_older_pipeline_with_a_started_job_not_interruptible_goes_on(harness_sqlite: Harness) -> None:
    h = harness_sqlite
    old = h.commit({".gitlab-ci.yml": AUTO_CANCEL.format(flag="false", seconds=1.5)})

    async def body() -> None:
        first = await h.submit(old)
        await _until_running(h, first.id, "slow")
        second = await h.submit(h.commit({"x": "1"}))
        await h.finish(second.id)
        assert h.state.runs.get_pipeline(first.id).status == "success"
        assert h.state.runs.get_pipeline(second.id).status == "success"

    h.run(body)


def test_other_refs_are_not_auto_canceled(harness_sqlite: Harness) -> None:
    h = harness_sqlite
    old = h.commit({".gitlab-ci.yml": AUTO_CANCEL.format(flag="true", seconds=1)})
    other = h.commit({"x": "1"}, branch="other")

    async def body() -> None:
        first = await h.submit(old)
        await _until_running(h, first.id, "slow")
        second = await h.submit(other, ref="other")
        await h.finish(second.id)
        assert h.state.runs.get_pipeline(first.id).status == "success"

    h.run(body)


def test_a_pipeline_of_the_same_commit_does_not_cancel_the_older_one(harness_sqlite: Harness) -> None:
    # GitLab's redundant-pipeline rule skips pipelines of the ref's current commit.
    h = harness_sqlite
    sha = h.commit({".gitlab-ci.yml": AUTO_CANCEL.format(flag="true", seconds=1)})

    async def body() -> None:
        first = await h.submit(sha)
        await _until_running(h, first.id, "slow")
        second = await h.submit(sha)
        assert (await h.finish(second.id)).status == "success"
        assert (await h.finish(first.id)).status == "success"

    h.run(body)


async def _until_running(h: Harness, pipeline_id: int, job: str, timeout: float = 30) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = h.jobs(pipeline_id).get(job)
        if found is not None and found.status == "running" and found.log_path:
            log = Path(found.log_path)
            if log.exists() and log.read_text():
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job} of pipeline {pipeline_id} did not start")
