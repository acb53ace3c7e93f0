"""Pipelines and jobs through the real server (SQLite and PostgreSQL) on real git repositories:
trigger, list, show, jobs, logs (plain and SSE), artifacts, test report, cancel, retry, play."""

from __future__ import annotations

import io
import threading
import time
import zipfile
from pathlib import Path

from pipeline_helpers import (
    commit,
    end_status,
    jobs_of,
    new_project,
    read_sse,
    trigger,
    wait_job,
    wait_log,
    wait_pipeline,
)
from serverproc import ServerProc, json_of, make_user

CI = """
stages: [build, test]
build:
  stage: build
  script:
    - echo "building $CI_COMMIT_SHORT_SHA of $CI_PROJECT_NAME ($CI_PIPELINE_SOURCE) with GREETING=$GREETING"
    - mkdir -p out/sub && echo model-bytes > out/model.bin && echo nested > out/sub/notes.txt
  artifacts:
    paths: [out/]
test:
  stage: test
  script:
    - cat out/model.bin
    - |
      cat > report.xml <<'XML'
      <testsuite name="unit">
        <testcase classname="m" name="ok" time="0.5"/>
        <testcase classname="m" name="bad" time="0.25"><failure message="boom">trace</failure></testcase>
        <testcase classname="m" name="later"><skipped/></testcase>
      </testsuite>
      XML
  artifacts:
    reports:
      junit: report.xml
"""


def test_trigger_run_and_read_everything(server: ServerProc, tmp_path: Path) -> None:
    repo = new_project(server, tmp_path, {".gitlab-ci.yml": CI})
    sha = commit(repo, {"data.txt": "1"})
    with server.client() as admin:
        created = trigger(admin, "demo", variables=[{"key": "GREETING", "value": "hi"}])
        assert created["sha"] == sha and created["ref"] == "main" and created["source"] == "api"
        assert created["status"] in ("created", "pending", "running") and created["iid"] == 1
        assert created["variables"] == {"GREETING": "hi"} and created["project"] == "demo"
        pid = created["id"]
        done = wait_pipeline(admin, "demo", pid)
        assert done["status"] == "success", done
        assert done["duration_s"] is not None and done["error"] is None

        listed = json_of(admin.get("/projects/demo/pipelines"))
        assert [p["id"] for p in listed] == [pid]
        assert json_of(admin.get("/projects/demo/pipelines", params={"status": "failed"})) == []
        assert json_of(admin.get("/projects/demo/pipelines", params={"ref": "other"})) == []
        assert (
            len(json_of(admin.get("/projects/demo/pipelines", params={"ref": "main", "status": "success"})))
            == 1
        )
        assert admin.get("/projects/demo/pipelines", params={"status": "bogus"}).status_code == 422

        jobs = jobs_of(admin, "demo", pid)
        assert {n: j["status"] for n, j in jobs.items()} == {"build": "success", "test": "success"}
        build, test = jobs["build"], jobs["test"]
        assert build["has_artifacts"] and build["attempt"] == 1 and not build["retried"]
        assert test["tests"] == {"total": 3, "passed": 1, "failed": 1, "skipped": 1}
        assert json_of(admin.get(f"/projects/demo/jobs/{build['id']}")) == build

        log = admin.get(f"/projects/demo/jobs/{build['id']}/log")
        assert log.headers["content-type"].startswith("text/plain")
        assert f"building {sha[:8]} of demo (api) with GREETING=hi" in log.text

        events = read_sse(server, f"/projects/demo/jobs/{build['id']}/log/stream")
        assert end_status(events) == "success"
        assert [d for e, d, _ in events if e == "log"] == log.text.rstrip("\n").split("\n")

        archive = admin.get(f"/projects/demo/jobs/{build['id']}/artifacts")
        assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
            assert sorted(zipped.namelist()) == ["out/model.bin", "out/sub/notes.txt"]
            assert zipped.read("out/sub/notes.txt") == b"nested\n"
        one = admin.get(f"/projects/demo/jobs/{build['id']}/artifacts/out/model.bin")
        assert one.status_code == 200 and one.content == b"model-bytes\n"
        for bad in (
            "out/../../../../etc/passwd",
            "%2e%2e/%2e%2e/pipeline.json",
            "..%2F..%2F..%2Faicd.db",
            "out",
        ):
            refused = admin.get(f"/projects/demo/jobs/{build['id']}/artifacts/{bad}")
            assert refused.status_code == 404, (bad, refused.text)
        assert admin.get(f"/projects/demo/jobs/{test['id']}/artifacts").status_code == 404

        report = json_of(admin.get(f"/projects/demo/pipelines/{pid}/test_report"))
        assert (report["total_count"], report["success_count"], report["failed_count"]) == (3, 1, 1)
        assert report["skipped_count"] == 1 and report["total_time"] == 0.75
        (suite,) = report["test_suites"]
        assert suite["name"] == "test" and suite["job_id"] == test["id"]
        cases = {c["name"]: c for c in suite["test_cases"]}
        assert cases["bad"]["status"] == "failed" and "boom" in cases["bad"]["system_output"]

        assert json_of(admin.get("/projects/demo/environments")) == []
        assert json_of(admin.get("/projects/demo/deployments")) == []
        assert admin.get("/projects/demo/pipelines/999999").status_code == 404
        assert admin.get("/projects/demo/jobs/999999").status_code == 404
        audit = [e["action"] for e in json_of(admin.get("/projects/demo/audit"))]
        assert "pipeline.create" in audit

    # another project's pipeline and jobs are not visible through this project
    new_project(server, tmp_path, {".gitlab-ci.yml": "x:\n  script: [true]\n"}, name="other")
    _, token = make_user(server, "viewer", ("demo", "viewer"))
    with server.client(token) as viewer:
        assert viewer.get(f"/projects/other/pipelines/{pid}").status_code == 404
        assert viewer.get(f"/projects/demo/pipelines/{pid}").status_code == 200
        assert viewer.get(f"/projects/demo/jobs/{build['id']}/log").status_code == 200
        refused = viewer.post("/projects/demo/pipelines", json={"ref": "main"})
        assert refused.status_code == 403
        assert viewer.post(f"/projects/demo/pipelines/{pid}/retry").status_code == 403
        assert viewer.post(f"/projects/demo/jobs/{build['id']}/retry").status_code == 403
    with server.client() as admin:
        assert json_of(admin.get("/projects/other/pipelines")) == []
        assert admin.get(f"/projects/other/jobs/{build['id']}").status_code == 404


def test_bad_refs_and_pipeline_files(server_sqlite: ServerProc, tmp_path: Path) -> None:
    server = server_sqlite
    repo = new_project(server, tmp_path, {".gitlab-ci.yml": "job:\n  stage: nowhere\n  script: [true]\n"})
    with server.client() as admin:
        missing = admin.post("/projects/demo/pipelines", json={"ref": "no-such-branch"})
        assert missing.status_code == 422 and "no-such-branch" in missing.json()["error"]
        wrong_sha = admin.post("/projects/demo/pipelines", json={"ref": "main", "sha": "0" * 40})
        assert wrong_sha.status_code == 422
        created = trigger(admin, "demo")
        done = wait_pipeline(admin, "demo", created["id"])
        assert done["status"] == "failed" and "nowhere" in done["error"] and ".gitlab-ci.yml" in done["error"]
        assert jobs_of(admin, "demo", created["id"]) == {}
        retry = admin.post(f"/projects/demo/pipelines/{created['id']}/retry")
        assert retry.status_code == 409 and "never started" in retry.json()["error"]
        # an older commit, by sha
        first = commit(repo, {".gitlab-ci.yml": "job:\n  script: [echo fine]\n"})
        commit(repo, {"more": "x"})
        by_sha = trigger(admin, "demo", sha=first)
        assert by_sha["sha"] == first
        assert wait_pipeline(admin, "demo", by_sha["id"])["status"] == "success"


LIVE = """
talk:
  script:
    - for i in 1 2 3; do echo "line $i"; sleep 0.4; done
"""


def test_live_log_stream(server_sqlite: ServerProc, tmp_path: Path) -> None:
    server = server_sqlite
    new_project(server, tmp_path, {".gitlab-ci.yml": LIVE})
    with server.client() as admin:
        pid = trigger(admin, "demo")["id"]
        deadline = time.monotonic() + 30
        while not jobs_of(admin, "demo", pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        job = jobs_of(admin, "demo", pid)["talk"]
        events = read_sse(server, f"/projects/demo/jobs/{job['id']}/log/stream")
        assert end_status(events) == "success"
        lines = {d: t for e, d, t in events if e == "log"}
        assert [d for d in lines if d.startswith("line")] == ["line 1", "line 2", "line 3"]
        # lines came while the job ran, not all at the end
        assert lines["line 3"] - lines["line 1"] > 0.5
        # a stream opened after the end replays the log and ends at once
        again = read_sse(server, f"/projects/demo/jobs/{job['id']}/log/stream")
        assert [d for e, d, _ in again if e == "log"] == [d for e, d, _ in events if e == "log"]


ACTIONS = """
stages: [build, test, approve, deploy]
build:
  stage: build
  script: [echo built]
flaky:
  stage: test
  cache:  # the mark of the first attempt reaches the retry through the cache (jobs are sandboxed)
    key: flaky
    paths: [mark]
    when: always
  script:
    - 'if [ ! -f mark ]; then touch mark; exit 1; fi'
gate:
  stage: approve
  when: manual
  allow_failure: false
  script: [echo approved]
deploy:
  stage: deploy
  script: [echo deployed]
"""


def test_retry_play_and_cancel(server_sqlite: ServerProc, tmp_path: Path) -> None:
    server = server_sqlite
    new_project(server, tmp_path, {".gitlab-ci.yml": ACTIONS})
    with server.client() as admin:
        pid = trigger(admin, "demo")["id"]
        assert wait_pipeline(admin, "demo", pid)["status"] == "failed"
        first = jobs_of(admin, "demo", pid)
        assert first["flaky"]["status"] == "failed" and first["gate"]["status"] == "skipped"

        retried = json_of(admin.post(f"/projects/demo/jobs/{first['flaky']['id']}/retry"))
        assert retried["attempt"] == 2 and retried["id"] != first["flaky"]["id"]
        assert wait_pipeline(admin, "demo", pid)["status"] == "manual"  # blocked by the gate now
        jobs = jobs_of(admin, "demo", pid)
        assert jobs["flaky"]["status"] == "success" and jobs["gate"]["status"] == "manual"
        assert jobs["deploy"]["status"] == "created"
        attempts = json_of(
            admin.get(f"/projects/demo/pipelines/{pid}/jobs", params={"include_retried": True})
        )
        assert [(j["name"], j["attempt"], j["retried"]) for j in attempts if j["name"] == "flaky"] == [
            ("flaky", 1, True),
            ("flaky", 2, False),
        ]

        played = json_of(admin.post(f"/projects/demo/jobs/{jobs['gate']['id']}/play"))
        assert played["id"] == jobs["gate"]["id"]
        assert wait_pipeline(admin, "demo", pid)["status"] == "success"
        assert jobs_of(admin, "demo", pid)["deploy"]["status"] == "success"
        again = admin.post(f"/projects/demo/jobs/{jobs['gate']['id']}/play")
        assert again.status_code == 409

        retry = admin.post(f"/projects/demo/pipelines/{pid}/retry")
        assert retry.status_code == 409 and "no failed or canceled job" in retry.json()["error"]
        actions = [e["action"] for e in json_of(admin.get("/projects/demo/audit"))]
        assert {"job.retry", "job.play", "pipeline.create"} <= set(actions)


SLOW = """
stages: [one, two]
slow:
  stage: one
  script: [echo started, sleep 30]
side:
  stage: one
  script: [echo side, sleep 30]
after:
  stage: two
  script: [echo after]
"""


def test_cancel_job_and_pipeline(server_sqlite: ServerProc, tmp_path: Path) -> None:
    server = server_sqlite
    new_project(server, tmp_path, {".gitlab-ci.yml": SLOW})
    with server.client() as admin:
        pid = trigger(admin, "demo")["id"]
        deadline = time.monotonic() + 30
        while len(jobs_of(admin, "demo", pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        jobs = jobs_of(admin, "demo", pid)
        wait_log(admin, "demo", jobs["slow"]["id"], "started")
        wait_log(admin, "demo", jobs["side"]["id"], "side")
        # a stream opened now ends when the job is canceled
        ended: list[str] = []
        reader = threading.Thread(
            target=lambda: ended.append(
                end_status(read_sse(server, f"/projects/demo/jobs/{jobs['slow']['id']}/log/stream"))
            )
        )
        reader.start()
        canceled = json_of(admin.post(f"/projects/demo/jobs/{jobs['slow']['id']}/cancel"))
        assert canceled["status"] == "canceled"
        reader.join(30)
        assert ended == ["canceled"]
        assert wait_job(admin, "demo", jobs["side"]["id"], "running")
        stopped = json_of(admin.post(f"/projects/demo/pipelines/{pid}/cancel"))
        assert stopped["status"] == "canceled"
        statuses = {n: j["status"] for n, j in jobs_of(admin, "demo", pid).items()}
        assert statuses == {"slow": "canceled", "side": "canceled", "after": "canceled"}
        assert admin.post(f"/projects/demo/jobs/{jobs['after']['id']}/cancel").status_code == 409
        actions = [e["action"] for e in json_of(admin.get("/projects/demo/audit"))]
        assert {"job.cancel", "pipeline.cancel"} <= set(actions)
