"""Durability: the server is SIGKILLed while a pipeline runs, then restarted (SQLite and PostgreSQL).

What finished before the crash keeps its log and artifacts; the job that was
running keeps the lines it printed, ends failed with runner_system_failure
(its log says why) and leaves no process behind; a job whose `retry:when`
covers runner_system_failure runs again; the pipeline then goes on to a correct
end, and the database is intact (a new pipeline gets the next number).

Jobs run sandboxed: they share no file with the test. The sleeper's
background process is found by a marker in its command line; the sturdy job
learns it is the second attempt from a project variable the test changes
before the crash (a resumed pipeline reads the project's variables again).
"""

from __future__ import annotations

import io
import os
import secrets
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
    - bash -c 'exec -a "$MARKER" sleep 300' & wait
sturdy:
  stage: second
  retry:
    max: 1
    when: [runner_system_failure]
  script:
    - 'if [ "$STURDY_PHASE" = second ]; then echo "second attempt"; exit 0; fi'
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


def _pid_of(marker: str) -> int | None:
    """The live process whose command line starts with `marker`."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(marker.encode() + b"\0") and _alive(int(entry)):
            return int(entry)
    return None


def test_a_killed_server_resumes_its_pipeline(server: ServerProc, tmp_path: Path) -> None:
    marker = f"aicd-crash-sleeper-{secrets.token_hex(4)}"
    new_project(server, tmp_path, {".gitlab-ci.yml": CI})
    with server.client() as admin:
        phase = admin.put("/projects/demo/variables/STURDY_PHASE", json={"value": "first"})
        assert phase.status_code in (200, 201), phase.text
        pid = trigger(admin, "demo", variables=[{"key": "MARKER", "value": marker}])["id"]
        deadline = time.monotonic() + 30
        while len(jobs_of(admin, "demo", pid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = jobs_of(admin, "demo", pid)
        wait_log(admin, "demo", before["sleeper"]["id"], "printed before the crash 2")
        wait_log(admin, "demo", before["sturdy"]["id"], "first attempt")
        while _pid_of(marker) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        sleep_pid = _pid_of(marker)
        assert sleep_pid is not None and _alive(sleep_pid)
        phase = admin.put("/projects/demo/variables/STURDY_PHASE", json={"value": "second"})
        assert phase.status_code == 200, phase.text
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
        admin.put("/projects/demo/variables/STURDY_PHASE", json={"value": "first"})
        assert [p["id"] for p in json_of(admin.get("/projects/demo/pipelines"))] == [pid]
        nxt = trigger(admin, "demo", variables=[{"key": "MARKER", "value": marker + "-2"}])
        assert nxt["iid"] == 2 and nxt["id"] > pid
        admin.post(f"/projects/demo/pipelines/{nxt['id']}/cancel")
        assert wait_pipeline(admin, "demo", nxt["id"])["status"] == "canceled"
