"""The end of a job's log sent with its result (one request for both), spoken to directly over
HTTP against the real server with RabbitMQ and PostgreSQL: bytes the server has are skipped,
bad base64 is a clear 422 that changes nothing, and the log is complete once the result counts."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
from pipeline_helpers import jobs_of, new_project, trigger, wait_pipeline
from serverproc import API, json_of
from workers_cluster import Cluster


def test_the_end_of_the_log_comes_with_the_result(cluster: Cluster, tmp_path: Path) -> None:
    runner = cluster.register(untagged=True)
    new_project(cluster.server, tmp_path, {".gitlab-ci.yml": "only:\n  script: [echo hi]\n"})
    base = f"{cluster.server.url}{API}"
    with cluster.server.client() as client:
        pipeline = trigger(client, "demo")
        deadline = time.monotonic() + 60
        while (job := jobs_of(client, "demo", pipeline["id"]).get("only")) is None or job[
            "status"
        ] != "pending":
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        answer = httpx.post(
            f"{base}/runners/jobs/{job['id']}/claim", headers={"RUNNER-TOKEN": runner["token"]}
        )
        assert answer.status_code == 200, answer.text
        with httpx.Client(base_url=base, headers={"JOB-TOKEN": answer.json()["token"]}, timeout=30) as worker:
            assert worker.post("/job/log", params={"offset": 0}, content=b"hello\n").json() == {"size": 6}
            done = {"status": "success", "exit_code": 0}
            bad = worker.post("/job/result", json={**done, "log_offset": 6, "log_tail": "not base64!"})
            assert bad.status_code == 422 and "log_tail: not base64" in bad.json()["error"], bad.text
            assert json_of(client.get(f"/projects/demo/jobs/{job['id']}"))["status"] == "running"
            tail = base64.b64encode(b"lo\nbye\n").decode()  # from byte 3: "lo\n" the server has
            ok = worker.post("/job/result", json={**done, "log_offset": 3, "log_tail": tail})
            assert ok.status_code == 204, ok.text
        assert wait_pipeline(client, "demo", pipeline["id"])["status"] == "success"
        assert client.get(f"/projects/demo/jobs/{job['id']}/log").text == "hello\nbye\n"
