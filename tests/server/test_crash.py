"""Durability: the server is SIGKILLed while a pipeline runs, then restarted (SQLite and PostgreSQL).

What finished before the crash keeps its log and artifacts; the job that was
running keeps the lines it printed, ends failed with runner_system_failure
(its log says why) and leaves no process behind; a job whose `retry:when`
covers runner_system_failure runs again; the pipeline then goes on to a correct
end, and the database is intact (a new pipeline gets the next number).
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

from pipeline_helpers import jobs_of, new_project, trigger, wait_log, wait_pipeline
from serverproc import ServerProc, json_of

CI = """
stages: [first, second, third]
done-early:
  stage: first
  script:
    - echo finished before the crash
    - echo kept > kept.txt
  artifacts:
    paths: [kept.txt]
sleeper:
  stage: second
  script:
    - echo "printed before the crash 1"
    - echo "printed before the crash 2"
    - sleep 300 & echo $! > "$MARKS/sleep.pid"; wait
sturdy:
  stage: second
  retry:
    max: 1
    when: [runner_system_failure]
  script:
    - 'if [ -f "$MARKS/sturdy-ran" ]; then echo "second attempt"; exit 0; fi'
    - touch "$MARKS/sturdy-ran"
    - echo "first attempt"
    - sleep 300
after:
  stage: third
  when: always
  script:
    - echo "after the recovery"
"""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def test_a_killed_server_resumes_its_pipeline(server: ServerProc, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    new_project(server, tmp_path, {".gitlab-ci.yml": CI})
    with server.client() as admin:
        pid = trigger(admin, "demo", variables=[{"key": "MARKS", "value": str(marks)}])["id"]
        deadline = time.monotonic() + 30
        while len(jobs_of(admin, "demo", pid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = jobs_of(admin, "demo", pid)
        wait_log(admin, "demo", before["sleeper"]["id"], "printed before the crash 2")
        wait_log(admin, "demo", before["sturdy"]["id"], "first attempt")
        while not (marks / "sleep.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        sleep_pid = int((marks / "sleep.pid").read_text())
        assert _alive(sleep_pid)
        early = jobs_of(admin, "demo", pid)["done-early"]  # the second stage runs: it is done
        assert early["status"] == "success"

    server.kill()
    server.start()

    with server.client() as admin:
        done = wait_pipeline(admin, "demo", pid)
        assert done["status"] == "failed", done  # the sleeper's failure is not allowed
        jobs = jobs_of(admin, "demo", pid)
        assert {n: j["status"] for n, j in jobs.items()} == {
            "done-early": "success",
            "sleeper": "failed",
            "sturdy": "success",
            "after": "success",
        }
        # finished before the crash: untouched, log and artifacts kept
        assert jobs["done-early"] == early
        assert "finished before the crash" in admin.get(f"/projects/demo/jobs/{early['id']}/log").text
        archive = admin.get(f"/projects/demo/jobs/{early['id']}/artifacts")
        with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
            assert zipped.read("kept.txt") == b"kept\n"
        # running at the crash: lines kept, failed with runner_system_failure, nothing left running
        sleeper = jobs["sleeper"]
        assert (
            sleeper["id"] == before["sleeper"]["id"] and sleeper["failure_reason"] == "runner_system_failure"
        )
        log = admin.get(f"/projects/demo/jobs/{sleeper['id']}/log").text
        assert "\nprinted before the crash 1\n" in log and "\nprinted before the crash 2\n" in log
        assert "the aicd server stopped while this job was running" in log
        assert not _alive(sleep_pid)
        # retry: when: runner_system_failure: a second attempt, which passed
        sturdy = jobs["sturdy"]
        assert sturdy["attempt"] == 2 and sturdy["id"] != before["sturdy"]["id"]
        first = json_of(admin.get(f"/projects/demo/jobs/{before['sturdy']['id']}"))
        assert (first["status"], first["failure_reason"], first["retried"]) == (
            "failed",
            "runner_system_failure",
            True,
        )
        assert "second attempt" in admin.get(f"/projects/demo/jobs/{sturdy['id']}/log").text
        assert "after the recovery" in admin.get(f"/projects/demo/jobs/{jobs['after']['id']}/log").text
        # the database is intact: the history is there and numbering goes on
        os.remove(marks / "sturdy-ran")
        assert [p["id"] for p in json_of(admin.get("/projects/demo/pipelines"))] == [pid]
        nxt = trigger(admin, "demo", variables=[{"key": "MARKS", "value": str(marks)}])
        assert nxt["iid"] == 2 and nxt["id"] > pid
        admin.post(f"/projects/demo/pipelines/{nxt['id']}/cancel")
        assert wait_pipeline(admin, "demo", nxt["id"])["status"] == "canceled"
