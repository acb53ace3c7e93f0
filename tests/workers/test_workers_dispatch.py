"""Jobs on real `aicd worker` processes through the real RabbitMQ, the server on PostgreSQL:
a pipeline spread over two workers with the same result as a local run, tags routing, a job
no worker serves says why it waits and fails as stuck."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pipeline_helpers import jobs_of, new_project, trigger, wait_log, wait_pipeline
from serverproc import json_of
from workers_cluster import Cluster

from aicd_testing import aicd, make_repo

CI = """
stages: [build, test, report]
build:
  stage: build
  script:
    - mkdir -p out && echo "built by $CI_RUNNER_ID" > out/built.txt
    - echo "VERSION=1.$CI_PIPELINE_IID" > build.env
    - cat input.txt
  artifacts:
    paths: [out/]
    reports:
      dotenv: build.env
test-a:
  stage: test
  script:
    - test -f out/built.txt
    - echo "A sees VERSION=$VERSION"
    - printf '<testsuite tests="2"><testcase name="x"/><testcase name="y"/></testsuite>' > junit.xml
  artifacts:
    reports:
      junit: junit.xml
test-b:
  stage: test
  script:
    - test -f out/built.txt
    - echo "B runs on $CI_RUNNER_TAGS"
    - sleep 1
report:
  stage: report
  script:
    - cat out/built.txt
    - echo done
"""

FILES = {".gitlab-ci.yml": CI, "input.txt": "hello from the commit\n"}


def test_a_pipeline_spread_over_two_workers_ends_as_a_local_run(cluster: Cluster, tmp_path: Path) -> None:
    one = cluster.register(untagged=True, description="one")
    two = cluster.register(untagged=True, description="two")
    cluster.worker(one, name="one")
    cluster.worker(two, name="two")
    new_project(cluster.server, tmp_path, FILES)
    with cluster.server.client() as client:
        pipeline = trigger(client, "demo")
        done = wait_pipeline(client, "demo", pipeline["id"], timeout=600)
        jobs = jobs_of(client, "demo", pipeline["id"])
        logs = {n: client.get(f"/projects/demo/jobs/{j['id']}/log").text for n, j in jobs.items()}
    assert done["status"] == "success", (done, jobs, logs)
    assert {n: j["status"] for n, j in jobs.items()} == dict.fromkeys(jobs, "success")
    assert "hello from the commit" in logs["build"]  # the source came through the API
    assert "A sees VERSION=1." in logs["test-a"]  # dotenv of a remote job passed on
    assert jobs["test-a"]["tests"]["total"] == 2  # its JUnit report came back
    assert jobs["build"]["has_artifacts"]
    assert "built by" in logs["report"]  # artifacts went through the server to another worker
    runners = {j["runner_id"] for j in jobs.values()}
    assert runners == {one["id"], two["id"]}  # test-a and test-b ran at once, one on each
    # the same pipeline run locally ends the same way
    repo = make_repo(tmp_path / "local", FILES)
    local = aicd(repo, "run", "--json", timeout=600)
    assert local.returncode == 0, local.stderr


@pytest.mark.parametrize("cluster", [{"AICD_STUCK_TIMEOUT_S": "8"}], indirect=True)
def test_tags_route_jobs_and_a_job_no_worker_serves_says_why_then_fails_stuck(
    cluster: Cluster, tmp_path: Path
) -> None:
    gpu = cluster.register(["gpu", "cuda"], description="gpu box")
    plain = cluster.register(untagged=True, description="plain")
    cluster.worker(gpu, name="gpu", concurrency=2)
    cluster.worker(plain, name="plain", concurrency=2)
    ci = """
train:
  tags: [gpu]
  script: [echo "train on $CI_RUNNER_DESCRIPTION"]
lint:
  script: [echo "lint on $CI_RUNNER_DESCRIPTION"]
tpu:
  tags: [tpu]
  script: [echo never]
"""
    new_project(cluster.server, tmp_path, {".gitlab-ci.yml": ci})
    with cluster.server.client() as client:
        pipeline = trigger(client, "demo")
        deadline = time.monotonic() + 60
        while True:
            jobs = jobs_of(client, "demo", pipeline["id"])
            tpu = jobs.get("tpu") or {}
            if tpu.get("status") == "pending" and tpu.get("pending_reason"):
                break
            assert time.monotonic() < deadline, jobs
            time.sleep(0.1)
        assert jobs["tpu"]["pending_reason"] == "no worker with tags tpu"
        done = wait_pipeline(client, "demo", pipeline["id"], timeout=600)
        jobs = jobs_of(client, "demo", pipeline["id"])
        assert jobs["train"]["status"] == "success" and jobs["train"]["runner_id"] == gpu["id"]
        assert jobs["lint"]["status"] == "success" and jobs["lint"]["runner_id"] == plain["id"]
        wait_log(client, "demo", jobs["train"]["id"], "train on gpu box")
        assert jobs["tpu"]["status"] == "failed"
        assert jobs["tpu"]["failure_reason"] == "stuck_or_timeout_failure"
        log = client.get(f"/projects/demo/jobs/{jobs['tpu']['id']}/log").text
        assert "no worker with tags tpu" in log
        assert done["status"] == "failed"
        listed = json_of(client.get("/runners"))
        assert {r["id"]: r["status"] for r in listed} == {gpu["id"]: "online", plain["id"]: "online"}


def test_a_server_with_a_broker_on_sqlite_says_sqlite_is_for_one_machine(tmp_path: Path) -> None:
    from serverproc import ServerProc
    from workers_cluster import BROKER_URL

    server = ServerProc(
        tmp_path / "home",
        f"sqlite:///{tmp_path / 'home' / 'aicd.db'}",
        poll=False,
        env={"AICD_BROKER_URL": BROKER_URL, "AICD_QUEUE_PREFIX": "t-sqlite-warning.jobs"},
    )
    server.start()
    try:
        health = json_of(server.client().get("/health"))
    finally:
        server.stop(check=False)
    assert "SQLite, which is for one machine" in server.log()
    assert "guest:guest" not in server.log()  # the broker's password is not logged
    assert health["status"] == "ok" and health["sandbox"] == "workers"
