"""`aicd project member ...`, `aicd pipeline artifacts|tests` against the real server, and
`aicd server` reading AICD_HOST / AICD_PORT."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from pipeline_helpers import jobs_of, new_project, trigger, wait_pipeline
from serverproc import API, ServerProc, make_user

from aicd.cli.pipeline_results_cmd import unpack
from aicd.errors import ConfigError
from aicd_testing import AICD, aicd, clean_env

CI = """
test:
  script:
    - mkdir -p dist deep/er
    - echo "built $CI_COMMIT_SHORT_SHA" > dist/app.txt
    - echo deep > deep/er/x.txt
    - |
      cat > junit.xml <<'XML'
      <testsuite name="app" tests="3">
        <testcase classname="app" name="test_ok" time="0.01"/>
        <testcase classname="app" name="test_also_ok" time="0.02"/>
        <testcase classname="app" name="test_bad" time="0.03">
          <failure message="boom">boom</failure>
        </testcase>
      </testsuite>
      XML
  artifacts:
    paths: [dist/, deep/]
    reports:
      junit: junit.xml
"""


def test_member_commands(server_sqlite: ServerProc, tmp_path: Path) -> None:
    server = server_sqlite
    new_project(server, tmp_path, {".gitlab-ci.yml": "job:\n  script: [echo hi]\n"})
    bob_id, bob = make_user(server, "bob")
    _, carol = make_user(server, "carol", ("demo", "developer"))
    dave_id, _ = make_user(server, "dave")

    def run(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        return aicd(tmp_path, "project", "member", *args, env=server.cli_env(token))

    listed = run("list", "demo")
    assert listed.returncode == 0, listed.stderr
    assert [line.split() for line in listed.stdout.splitlines()][1:] == [
        [str(_id(server, "carol")), "carol", "developer"]
    ]

    done = run("set", "demo", "bob", "viewer")  # the admin names any user
    assert done.returncode == 0 and done.stdout.strip() == "bob is viewer on demo", done.stderr
    done = run("set", "demo", "carol", "maintainer")
    assert done.returncode == 0, done.stderr
    members = json.loads(run("list", "demo", "--json").stdout)
    assert {m["name"]: m["role"] for m in members} == {"bob": "viewer", "carol": "maintainer"}

    # a maintainer names members, and other users by id only
    assert run("set", "demo", "bob", "developer", token=carol).returncode == 0
    refused = run("set", "demo", "dave", "viewer", token=carol)
    assert refused.returncode != 0
    assert "only admins may list users): give the user's id" in refused.stderr, refused.stderr
    assert run("set", "demo", str(dave_id), "viewer", token=carol).returncode == 0

    removed = run("remove", "demo", "bob", token=carol)
    assert removed.returncode == 0 and "bob has no role on demo" in removed.stdout, removed.stderr
    again = run("remove", "demo", str(bob_id))
    assert again.returncode != 0 and "has no role on project 'demo'" in again.stderr, again.stderr
    # bob no longer sees the project
    assert "no project" in run("list", "demo", token=bob).stderr
    members = json.loads(run("list", "demo", "--json").stdout)
    assert {m["name"]: m["role"] for m in members} == {"carol": "maintainer", "dave": "viewer"}


def _id(server: ServerProc, name: str) -> int:
    with server.client() as admin:
        return next(int(u["id"]) for u in admin.get("/users").json() if u["name"] == name)


def test_artifacts_and_test_report_commands(server_sqlite: ServerProc, tmp_path: Path) -> None:
    server = server_sqlite
    new_project(server, tmp_path, {".gitlab-ci.yml": CI})
    with server.client() as admin:
        pipeline_id = int(trigger(admin, "demo")["id"])
        assert wait_pipeline(admin, "demo", pipeline_id)["status"] == "success"
        job = jobs_of(admin, "demo", pipeline_id)["test"]
    job_id = str(job["id"])
    env = server.cli_env()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return aicd(tmp_path, "pipeline", *args, env=env)

    got = run("artifacts", "demo", job_id, "--output", "out")
    assert got.returncode == 0, got.stderr
    assert "2 artifact files unpacked into out" in got.stderr
    assert (tmp_path / "out" / "dist" / "app.txt").read_text().startswith("built ")
    assert (tmp_path / "out" / "deep" / "er" / "x.txt").read_text() == "deep\n"

    one = run("artifacts", "demo", job_id, "--path", "deep/er/x.txt")
    assert one.returncode == 0 and one.stdout == "deep\n", one.stderr
    saved = run("artifacts", "demo", job_id, "--path", "dist/app.txt", "--output", "one")
    assert saved.returncode == 0, saved.stderr
    assert (tmp_path / "one" / "dist" / "app.txt").read_text().startswith("built ")
    assert sorted(p.name for p in (tmp_path / "one" / "dist").iterdir()) == ["app.txt"]  # no scratch left
    missing = run("artifacts", "demo", job_id, "--path", "dist/nope.txt", "-o", "two")
    assert missing.returncode != 0 and "no artifact file 'dist/nope.txt'" in missing.stderr, missing.stderr
    assert not (tmp_path / "two" / "dist" / "nope.txt").exists()
    assert run("artifacts", "demo", "999999").returncode != 0

    table = run("tests", "demo", str(pipeline_id))
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[0] == ["job", "job", "id", "total", "passed", "failed", "errors", "skipped", "time"]
    assert rows[1][:7] == ["test", job_id, "3", "2", "1", "0", "0"]
    assert rows[2][:6] == ["total", "3", "2", "1", "0", "0"]
    assert "FAILED test: app.test_bad" in table.stdout
    report = json.loads(run("tests", "demo", str(pipeline_id), "--json").stdout)
    assert report["failed_count"] == 1 and report["test_suites"][0]["job_id"] == int(job_id)


def test_unpack_refuses_paths_that_leave_the_folder(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("fine.txt", "ok")
        zipped.writestr("../escaped.txt", "bad")
    with pytest.raises(ConfigError, match=re.escape("unsafe path '../escaped.txt'")):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out" / "fine.txt").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(tmp_path: Path, args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"server-{time.monotonic_ns()}.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [*AICD, "server", "--home", str(tmp_path / "home"), "--no-poll", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**clean_env(), **env},
        )
    return proc, log


def _wait_listening(proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text()
        for line in text.splitlines():
            if "aicd server listening on " in line:
                return line.split("listening on ", 1)[1].split()[0]
        assert proc.poll() is None, text
        time.sleep(0.05)
    raise AssertionError(log.read_text())


def test_server_host_and_port_from_the_environment(tmp_path: Path) -> None:
    port = _free_port()
    proc, log = _start(tmp_path, [], {"AICD_HOST": "127.0.0.1", "AICD_PORT": str(port)})
    try:
        url = _wait_listening(proc, log)
        assert url == f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}{API}/health", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
    # flags win over the environment (the bad AICD_PORT is not even read)
    proc, log = _start(tmp_path, ["--port", "0"], {"AICD_PORT": "not-a-port"})
    try:
        assert not _wait_listening(proc, log).endswith(":0")
    finally:
        proc.terminate()
        proc.wait(30)
    bad = subprocess.run(
        [*AICD, "server", "--home", str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean_env(), "AICD_PORT": "not-a-port"},
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "aicd: AICD_PORT='not-a-port': expected a port number, 0 to 65535"
