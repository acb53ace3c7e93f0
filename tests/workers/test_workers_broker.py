"""The broker loses nothing: a restart of RabbitMQ with 50 jobs queued (every one runs exactly
once), and messages the broker lost (its queue purged) sent again from the server's pending jobs.

Each job reports its run to a counter outside its workspace and outside its worker (an HTTP
server in this test process, reached through the sandbox's network): a job run twice, on one
worker or two, counts twice there, even if the API showed one attempt.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import new_project, trigger, wait_pipeline
from serverproc import json_of
from workers_cluster import Cluster, purge_queue, queue_depth, restart_broker


class Marks:
    """Runs reported by the jobs: GET /<job id> counts one run of that attempt."""

    def __init__(self) -> None:
        self.runs: Counter[int] = Counter()
        self.lock = threading.Lock()
        marks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with marks.lock:
                    marks.runs[int(self.path.strip("/"))] += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return sum(self.runs.values())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def marks() -> Iterator[Marks]:
    found = Marks()
    try:
        yield found
    finally:
        found.close()


MARK_RUN = "import os, urllib.request as u; e = os.environ; u.urlopen(e['MARK_URL'] + e['CI_JOB_ID']).read()"


def _ci(jobs: int, url: str, seconds: float) -> str:
    return f"""
variables:
  MARK_URL: "{url}"
work:
  parallel: {jobs}
  script:
    - python3 -c "{MARK_RUN}"
    - echo "ran $CI_NODE_INDEX of $CI_NODE_TOTAL"
    - sleep {seconds}
"""


def _wait_depth(queue: str, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (queue_depth(queue) or 0) < count:
        assert time.monotonic() < deadline, f"queue {queue}: {queue_depth(queue)} messages, not {count}"
        time.sleep(0.1)


def _each_ran_once(cluster: Cluster, marks: Marks, pipeline_id: int, jobs: int) -> list[dict[str, Any]]:
    with cluster.server.client() as client:
        done = wait_pipeline(client, "demo", pipeline_id, timeout=600)
        attempts = json_of(client.get(f"/projects/demo/pipelines/{pipeline_id}/jobs?include_retried=true"))
    assert done["status"] == "success", [(a["name"], a["status"]) for a in attempts]
    assert len(attempts) == jobs and {(a["attempt"], a["status"]) for a in attempts} == {(1, "success")}
    assert dict(marks.runs) == {a["id"]: 1 for a in attempts}  # every attempt ran, none twice
    return list(attempts)


@pytest.mark.broker_restart
@pytest.mark.timeout(900)
@pytest.mark.parametrize("cluster", [{"AICD_CONCURRENCY": "64"}], indirect=True)
def test_a_broker_restart_with_50_jobs_queued_runs_each_exactly_once(
    cluster: Cluster, marks: Marks, tmp_path: Path
) -> None:
    first = cluster.register(untagged=True, description="first")
    second = cluster.register(untagged=True, description="second")
    new_project(cluster.server, tmp_path, {".gitlab-ci.yml": _ci(50, marks.url, 1)})
    queue = f"{cluster.prefix}.untagged"
    with cluster.server.client() as client:
        pipeline = trigger(client, "demo")
    _wait_depth(queue, 50)  # all 50 queued in the broker, no worker yet
    cluster.worker(first, name="first", concurrency=2)
    deadline = time.monotonic() + 120
    while marks.count() < 2:  # two jobs run (their messages unacknowledged), 48 wait in the queue
        assert time.monotonic() < deadline, cluster.workers[0].log()
        time.sleep(0.05)
    down_s = restart_broker(down_s=2.0)
    back_at = time.time()
    assert down_s < 60, f"the broker was down {down_s:.1f} s"
    cluster.worker(second, name="second", concurrency=2)  # a worker that meets the restarted broker
    attempts = _each_ran_once(cluster, marks, pipeline["id"], 50)
    # the first worker reconnected by itself and took jobs again
    again = [a for a in attempts if a["runner_id"] == first["id"] and a["started_at"] > back_at]
    assert again, cluster.workers[0].log()


@pytest.mark.parametrize("cluster", [{"AICD_RESEND_S": "2"}], indirect=True)
def test_messages_the_broker_lost_are_sent_again_from_the_pending_jobs(
    cluster: Cluster, marks: Marks, tmp_path: Path
) -> None:
    runner = cluster.register(untagged=True, description="box")
    new_project(cluster.server, tmp_path, {".gitlab-ci.yml": _ci(5, marks.url, 0)})
    queue = f"{cluster.prefix}.untagged"
    with cluster.server.client() as client:
        pipeline = trigger(client, "demo")
    _wait_depth(queue, 5)
    assert purge_queue(queue) >= 5  # the broker lost them (as a broker restarted without its queue)
    cluster.worker(runner, name="box", concurrency=2)
    _each_ran_once(cluster, marks, pipeline["id"], 5)
