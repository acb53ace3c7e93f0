"""Failures with real workers: `kill -9` of a worker mid-job (runner_system_failure within the
lease, retried on the other worker, nothing running twice), cancel of a running remote job
(stopped within 2 s, no process left), and a server restart (crash or clean stop) while four
jobs run on two workers (adopted, logs complete). The broker's restart: test_workers_broker.py."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest
from pipeline_helpers import jobs_of, new_project, trigger, wait_log, wait_pipeline
from serverproc import json_of
from workers_cluster import LEASE_S, Cluster

MARK = f"WORKERS_TEST_MARK={secrets.token_hex(8)}"  # other tests on this machine run jobs with the same ids


def job_processes(job_id: int) -> list[int]:
    """Processes on this machine whose environment says they belong to job attempt `job_id` of this
    module's pipelines."""
    wanted = f"CI_JOB_ID={job_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                env = handle.read().split(b"\0")
        except OSError:
            continue
        if wanted in env and MARK.encode() in env:
            found.append(int(entry))
    return found


def _running_job(client, pipeline_id: int, name: str, timeout: float = 120) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        job = jobs_of(client, "demo", pipeline_id).get(name)
        if job is not None and job["status"] == "running" and job["runner_id"] is not None:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_kill_9_of_a_worker_mid_job_fails_the_attempt_and_retries_it_on_the_other(
    cluster: Cluster, tmp_path: Path
) -> None:
    first = cluster.register(untagged=True, description="first")
    second = cluster.register(untagged=True, description="second")
    doomed = cluster.worker(first, name="first")
    ci = f"""
variables:
  WORKERS_TEST_MARK: "{MARK.split("=")[1]}"
long:
  retry:
    max: 1
    when: [runner_system_failure]
  script:
    - echo "started on $CI_RUNNER_DESCRIPTION"
    - if [ "$CI_RUNNER_DESCRIPTION" = first ]; then sleep 300; fi
    - echo "finished on $CI_RUNNER_DESCRIPTION"
"""
    new_project(cluster.server, tmp_path, {".gitlab-ci.yml": ci})
    with cluster.server.client() as client:
        pipeline = trigger(client, "demo")
        job = _running_job(client, pipeline["id"], "long")
        assert job["runner_id"] == first["id"]
        wait_log(client, "demo", job["id"], "started on first", timeout=60)
        rescuer = cluster.worker(second, name="second")
        assert job_processes(job["id"])  # the job's shell runs on the first worker
        killed_at = time.monotonic()
        doomed.kill9()
        deadline = killed_at + LEASE_S + 30
        while True:
            old = json_of(client.get(f"/projects/demo/jobs/{job['id']}"))
            if old["status"] != "running":
                break
            assert time.monotonic() < deadline, old
            time.sleep(0.1)
        given_up_after = time.monotonic() - killed_at
        assert old["status"] == "failed" and old["failure_reason"] == "runner_system_failure", old
        assert given_up_after < LEASE_S + 30
        assert not job_processes(job["id"])  # nothing of the killed attempt runs on
        done = wait_pipeline(client, "demo", pipeline["id"], timeout=600)
        attempts = json_of(client.get(f"/projects/demo/pipelines/{pipeline['id']}/jobs?include_retried=true"))
        log = client.get(f"/projects/demo/jobs/{job['id']}/log").text
    assert done["status"] == "success", attempts
    assert [(a["attempt"], a["status"], a["runner_id"]) for a in attempts] == [
        (1, "failed", first["id"]),
        (2, "success", second["id"]),
    ]
    assert "sent no heartbeat" in log and "runner_system_failure" in log
    # the killed worker's message came back (acks_late): the other worker found its attempt taken
    deadline = time.monotonic() + 60
    while f"job {job['id']}: not run here" not in rescuer.log():
        assert time.monotonic() < deadline, rescuer.log()
        time.sleep(0.2)


def test_cancel_of_a_running_remote_job_stops_it_within_2_s(cluster: Cluster, tmp_path: Path) -> None:
    runner = cluster.register(untagged=True, description="box")
    cluster.worker(runner, name="box")
    ci = f"""
variables:
  WORKERS_TEST_MARK: "{MARK.split("=")[1]}"
long:
  script:
    - echo started
    - sleep 300 & wait
"""
    new_project(cluster.server, tmp_path, {".gitlab-ci.yml": ci})
    with cluster.server.client() as client:
        pipeline = trigger(client, "demo")
        job = _running_job(client, pipeline["id"], "long")
        wait_log(client, "demo", job["id"], "started", timeout=60)
        assert job_processes(job["id"])
        asked = time.monotonic()
        response = client.post(f"/projects/demo/jobs/{job['id']}/cancel")
        assert response.status_code == 200, response.text
        while job_processes(job["id"]):
            assert time.monotonic() - asked < 30, job_processes(job["id"])
            time.sleep(0.02)
        stopped_after = time.monotonic() - asked
        done = wait_pipeline(client, "demo", pipeline["id"], timeout=60)
        final = json_of(client.get(f"/projects/demo/jobs/{job['id']}"))
    assert stopped_after < 2.0, f"the job's processes lived {stopped_after:.2f} s after the cancel"
    assert final["status"] == "canceled" and done["status"] == "canceled"


@pytest.mark.parametrize("cluster", [{"AICD_CONCURRENCY": "8"}], indirect=True, ids=["jobs8"])
@pytest.mark.parametrize("kill", [True, False], ids=["kill-9", "sigterm"])
def test_a_restarted_server_adopts_the_attempts_running_on_workers(
    cluster: Cluster, tmp_path: Path, kill: bool
) -> None:
    """The server stops while four jobs run on two workers, by a crash (kill -9) or cleanly
    (SIGTERM: with workers it cancels nothing and leaves the attempts to the next server). The
    restarted server adopts them (their leases are live): each ran once, in the same processes,
    their logs are complete, the pipeline succeeds."""
    one = cluster.register(untagged=True, description="one")
    two = cluster.register(untagged=True, description="two")
    cluster.worker(one, name="one", concurrency=2)
    cluster.worker(two, name="two", concurrency=2)
    names = ["j1", "j2", "j3", "j4"]
    ci = f"""
variables:
  WORKERS_TEST_MARK: "{MARK.split("=")[1]}"
.long:
  script:
    - echo "before on $CI_JOB_NAME"
    - sleep 20
    - echo "after on $CI_JOB_NAME"
""" + "".join(f"{name}:\n  extends: .long\n" for name in names)
    new_project(cluster.server, tmp_path, {".gitlab-ci.yml": ci})
    with cluster.server.client() as client:
        pipeline = trigger(client, "demo")
        jobs = {name: _running_job(client, pipeline["id"], name) for name in names}
        for name, job in jobs.items():
            wait_log(client, "demo", job["id"], f"before on {name}", timeout=60)
    assert {job["runner_id"] for job in jobs.values()} == {one["id"], two["id"]}  # two each
    shells = {name: job_processes(job["id"]) for name, job in jobs.items()}
    assert all(shells.values()), shells
    if kill:
        cluster.server.kill()  # a crash: nothing is canceled on the way down
    else:
        cluster.server.stop()  # a clean stop (within 20 s, or this fails): nothing is canceled either
        for name, job in jobs.items():  # the jobs ran on while no server was there
            assert set(shells[name]) <= set(job_processes(job["id"])), name
    cluster.server.start()
    with cluster.server.client() as client:
        done = wait_pipeline(client, "demo", pipeline["id"], timeout=600)
        attempts = json_of(client.get(f"/projects/demo/pipelines/{pipeline['id']}/jobs?include_retried=true"))
        logs = {j["name"]: client.get(f"/projects/demo/jobs/{j['id']}/log").text for j in attempts}
    assert sorted((a["name"], a["attempt"], a["status"], a["runner_id"]) for a in attempts) == [
        (name, 1, "success", jobs[name]["runner_id"]) for name in names
    ], attempts
    for name, log in logs.items():
        assert log.count(f"before on {name}") == 1 and log.count(f"after on {name}") == 1, log
    for name, job in jobs.items():  # the same shells ran each job to its end: nothing ran it again
        assert not job_processes(job["id"]), name
    assert done["status"] == "success"
