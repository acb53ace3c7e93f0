"""The worker's routes spoken to directly (this test plays the worker, over HTTP, against the real
server with RabbitMQ and PostgreSQL): a claim is once per attempt and only for a runner whose
tags fit; bad input gets a clear 4xx; a silent worker loses its attempt and its late result
is refused."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import httpx
from pipeline_helpers import jobs_of, new_project, trigger, wait_pipeline
from serverproc import API, json_of
from workers_cluster import LEASE_S, Cluster


def _pending_job(client: httpx.Client, pipeline_id: int, timeout: float = 60) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        job = jobs_of(client, "demo", pipeline_id).get("only")
        if job is not None and job["status"] == "pending":
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def _tar(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_a_worker_claims_once_bad_input_is_refused_and_a_late_result_too(
    cluster: Cluster, tmp_path: Path
) -> None:
    gpu = cluster.register(["gpu"])
    plain = cluster.register(untagged=True)
    new_project(cluster.server, tmp_path, {".gitlab-ci.yml": "only:\n  script: [echo hi]\n"})
    base = f"{cluster.server.url}{API}"
    with cluster.server.client() as client:
        pipeline = trigger(client, "demo")
        job = _pending_job(client, pipeline["id"])
        claim = f"{base}/runners/jobs/{job['id']}/claim"
        refused = httpx.post(claim, headers={"RUNNER-TOKEN": gpu["token"]})
        assert refused.status_code == 403 and "may not run untagged jobs" in refused.json()["error"]
        assert httpx.post(claim, headers={"RUNNER-TOKEN": "aicdrt_" + "x" * 40}).status_code == 401
        answer = httpx.post(claim, headers={"RUNNER-TOKEN": plain["token"]})
        assert answer.status_code == 200, answer.text
        spec = answer.json()
        again = httpx.post(claim, headers={"RUNNER-TOKEN": plain["token"]})
        assert again.status_code == 409  # one claim per attempt: a redelivered message is dropped
        assert json_of(client.get(f"/projects/demo/jobs/{job['id']}"))["status"] == "running"
        assert json_of(client.get(f"/runners/{plain['id']}"))["running_jobs"] == 1
        worker = httpx.Client(base_url=base, headers={"JOB-TOKEN": spec["token"]}, timeout=30)
        with worker:
            assert worker.post("/job/heartbeat", json={"wait_s": 0}).json() == {"status": "running"}
            assert worker.post("/job/log", params={"offset": 0}, content=b"hello\n").json() == {"size": 6}
            gap = worker.post("/job/log", params={"offset": 100}, content=b"x")
            assert gap.status_code == 409 and "send from 6" in gap.json()["error"]
            for bad in (b"not a tar", _tar("../escape.txt", b"x"), _tar("/etc/evil", b"x")):
                upload = worker.put("/job/artifacts", content=bad)
                assert upload.status_code == 422, upload.text
                assert "Traceback" not in upload.text
            bogus = worker.post("/job/result", json={"status": "bogus"})
            assert bogus.status_code == 422 and "result status" in bogus.json()["error"]
            # the worker goes silent: the lease runs out
            deadline = time.monotonic() + LEASE_S + 30
            while json_of(client.get(f"/projects/demo/jobs/{job['id']}"))["status"] == "running":
                assert time.monotonic() < deadline
                time.sleep(0.2)
            final = json_of(client.get(f"/projects/demo/jobs/{job['id']}"))
            assert (final["status"], final["failure_reason"]) == ("failed", "runner_system_failure")
            late = worker.post("/job/result", json={"status": "success", "exit_code": 0})
            assert late.status_code in (401, 409), late.text  # the attempt id is a fencing token
        assert json_of(client.get(f"/projects/demo/jobs/{job['id']}"))["status"] == "failed"
        log = client.get(f"/projects/demo/jobs/{job['id']}/log").text
        assert log.startswith("hello\n") and "sent no heartbeat" in log
        assert wait_pipeline(client, "demo", pipeline["id"])["status"] == "failed"
        # API tokens get nothing of these routes
        assert client.post("/job/heartbeat", json={}).status_code == 403
