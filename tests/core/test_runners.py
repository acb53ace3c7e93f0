"""Runner rules without a server: tags, GitLab's matching, queues, status, why a job waits."""

from __future__ import annotations

import pytest

from aicd.core import runners as core
from aicd.errors import ConfigError
from aicd.store.runners import RunnerRecord


def runner(
    tags: tuple[str, ...] = (), *, untagged: bool = False, paused: bool = False, seen: float | None = 1000.0
) -> RunnerRecord:
    return RunnerRecord(
        id=1,
        description="",
        tags=tags,
        run_untagged=untagged,
        paused=paused,
        created_at=0.0,
        created_by="admin",
        contacted_at=seen,
        version=None,
        host=None,
    )


def test_tags_are_parsed_checked_deduplicated_and_sorted() -> None:
    assert core.parse_tags(" gpu, cuda ,gpu,") == ("cuda", "gpu")
    assert core.parse_tags("") == ()
    assert core.parse_tags(["linux", "x86_64", "cuda:12.1"]) == ("cuda:12.1", "linux", "x86_64")
    for bad in ("has space", "-leading", "semi;colon", "x" * 65, "new\nline"):
        with pytest.raises(ConfigError, match="a tag is letters, digits"):
            core.parse_tags([bad])
    with pytest.raises(ConfigError, match="at most 8"):
        core.parse_tags([f"t{i}" for i in range(9)])


def test_gitlab_matching_every_job_tag_must_be_a_runner_tag() -> None:
    gpu = runner(("cuda", "gpu"))
    assert core.can_run(gpu, ["gpu"]) and core.can_run(gpu, ["gpu", "cuda"])
    assert not core.can_run(gpu, ["gpu", "arm"])
    assert not core.can_run(gpu, [])  # untagged jobs need run_untagged
    assert core.can_run(runner((), untagged=True), [])
    assert core.can_run(runner(("gpu",), untagged=True), [])


def test_a_runner_reads_the_queue_of_every_job_it_can_run_and_no_other() -> None:
    gpu = runner(("cuda", "gpu"), untagged=True)
    queues = core.queues_of(gpu)
    assert sorted(queues) == sorted(
        ["aicd.jobs.tags.cuda", "aicd.jobs.tags.gpu", "aicd.jobs.tags.cuda+gpu", "aicd.jobs.untagged"]
    )
    for job_tags in ([], ["gpu"], ["cuda"], ["gpu", "cuda"], ["arm"], ["gpu", "arm"]):
        assert (core.queue_for(job_tags) in queues) == core.can_run(gpu, job_tags), job_tags
    assert core.queue_for(["gpu", "cuda", "gpu"]) == core.queue_for(["cuda", "gpu"])  # order, duplicates
    assert "aicd.jobs.untagged" not in core.queues_of(runner(("gpu",)))
    # the server's AICD_QUEUE_PREFIX names them (several servers, one broker)
    assert core.queues_of(gpu, "ci2.jobs") == [q.replace("aicd.jobs", "ci2.jobs", 1) for q in queues]
    assert core.queue_for([], "ci2.jobs") == "ci2.jobs.untagged"


def test_online_means_seen_within_the_last_minute() -> None:
    assert core.status(runner(seen=None)) == "never_contacted"
    assert core.status(runner(seen=1000.0), now=1059.0) == "online"
    assert core.status(runner(seen=1000.0), now=1061.0) == "offline"


def test_why_a_job_waits() -> None:
    now = 1010.0
    gpu = runner(("gpu",))
    assert core.why_waiting([gpu], ["gpu"], now) is None
    assert core.why_waiting([gpu], ["gpu", "arm"], now) == "no worker with tags arm, gpu"
    assert core.why_waiting([gpu], [], now) == "no worker with untagged jobs"
    assert (
        core.why_waiting([runner(("gpu",), paused=True)], ["gpu"], now)
        == "every worker with tags gpu is paused"
    )
    assert core.why_waiting([runner(("gpu",), seen=1.0)], ["gpu"], now) == "no worker with tags gpu is online"


def test_reported_version_and_host_lose_control_characters() -> None:
    assert core.reported("box\x1b[31m-1\u202e") == "box[31m-1"
    assert core.reported("   ") is None
    assert len(core.reported("h" * 500) or "") == core.MAX_REPORTED_LENGTH
