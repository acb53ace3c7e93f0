"""`aicd pipeline ...` and the remote mode of `aicd runs/show/logs`, against the real server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from pipeline_helpers import jobs_of, new_project, wait_job, wait_pipeline
from serverproc import ServerProc

from aicd_testing import AICD, aicd

CI = """
stages: [build, gate, deploy]
build:
  stage: build
  script:
    - echo "hello $WHO"
    - for i in 1 2 3; do echo "tick $i"; sleep 0.2; done
approve:
  stage: gate
  when: manual
  allow_failure: false
  script: [echo approved]
deploy:
  stage: deploy
  script: [echo deployed]
"""


def test_pipeline_commands(server_sqlite: ServerProc, tmp_path: Path) -> None:
    server = server_sqlite
    new_project(server, tmp_path, {".gitlab-ci.yml": CI})
    env = server.cli_env()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return aicd(tmp_path, *args, env=env)

    # trigger and follow the first job's log live
    started = run("pipeline", "trigger", "demo", "--variable", "WHO=world", "--json")
    assert started.returncode == 0, started.stderr
    pid = json.loads(started.stdout)["id"]
    with server.client() as admin:
        wait_job(admin, "demo", _job_id(server, pid, "build"), "running")
    follow = run("pipeline", "logs", "demo", str(_job_id(server, pid, "build")), "--follow")
    assert follow.returncode == 0, follow.stderr
    assert "hello world" in follow.stdout and "tick 3" in follow.stdout
    assert "success" in follow.stderr

    with server.client() as admin:
        assert wait_pipeline(admin, "demo", pid)["status"] == "manual"
    listed = run("pipeline", "list", "demo")
    assert listed.returncode == 0 and f"{pid}" in listed.stdout and "manual" in listed.stdout
    shown = run("pipeline", "show", "demo", str(pid))
    assert shown.returncode == 0 and "approve" in shown.stdout and "created" in shown.stdout

    approve = _job_id(server, pid, "approve")
    played = run("pipeline", "job", "play", "demo", str(approve))
    assert played.returncode == 0, played.stderr
    assert f"job {approve} approve (attempt 1)" in played.stdout
    with server.client() as admin:
        assert wait_pipeline(admin, "demo", pid)["status"] == "success"
    again = run("pipeline", "job", "play", "demo", str(approve))
    assert again.returncode != 0 and "only a manual job can be played" in again.stderr
    assert "Traceback" not in again.stderr

    retried = run("pipeline", "job", "retry", "demo", str(_job_id(server, pid, "deploy")), "--json")
    assert retried.returncode == 0 and json.loads(retried.stdout)["attempt"] == 2
    with server.client() as admin:
        assert wait_pipeline(admin, "demo", pid)["status"] == "success"
    log = run("pipeline", "logs", "demo", str(_job_id(server, pid, "deploy")))
    assert log.returncode == 0 and "deployed" in log.stdout

    # --wait: the exit code says how it ended
    waited = run("pipeline", "trigger", "demo", "--ref", "main", "--wait")
    assert waited.returncode == 1 and "manual" in waited.stdout  # blocked by the gate: not a success

    # remote mode of the history commands
    runs = run("runs", "--project", "demo", "--json")
    assert runs.returncode == 0, runs.stderr
    assert [r["id"] for r in json.loads(runs.stdout)][-1] == pid
    show = run("show", str(pid), "--project", "demo", "--json")
    assert show.returncode == 0
    names = [j["name"] for j in json.loads(show.stdout)["jobs"]]
    assert names.count("deploy") == 2  # both attempts
    logs = run("logs", str(pid), "build", "--project", "demo")
    assert logs.returncode == 0 and "hello world" in logs.stdout
    missing = run("logs", str(pid), "biuld", "--project", "demo")
    assert missing.returncode != 0 and 'did you mean "build"' in missing.stderr
    no_project = aicd(tmp_path, "runs", "--server", server.url, env=env)
    assert no_project.returncode != 0 and "--project" in no_project.stderr
    bad_token = aicd(tmp_path, "runs", "--project", "demo", env={**env, "AICD_TOKEN": "nope"})
    assert bad_token.returncode != 0 and "Traceback" not in bad_token.stderr


def _job_id(server: ServerProc, pipeline_id: int, name: str) -> int:
    import time

    with server.client() as admin:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = jobs_of(admin, "demo", pipeline_id).get(name)
            if found is not None:
                return int(found["id"])
            time.sleep(0.05)
    raise AssertionError(f"no job {name} in pipeline {pipeline_id}")


def test_cli_help_lists_the_pipeline_group() -> None:
    proc = subprocess.run([*AICD, "pipeline", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for command in ("trigger", "list", "show", "cancel", "retry", "job", "logs"):
        assert command in proc.stdout
