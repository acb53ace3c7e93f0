"""Where the sandbox does not work, the server starts, says why, and runs no job unsandboxed;
`--unsafe-no-sandbox` runs them unsandboxed with a loud warning."""

from __future__ import annotations

from pathlib import Path

from pipeline_helpers import jobs_of, new_project, trigger, wait_pipeline
from serverproc import ServerProc, json_of

CI = """
job:
  script:
    - echo "home is [$AICD_HOME]"
"""


def _health(server: ServerProc) -> str:
    with server.client("") as anonymous:
        return str(json_of(anonymous.get("/health"))["sandbox"])


def test_without_a_working_sandbox_no_job_runs_and_the_server_says_why(tmp_path: Path) -> None:
    broken = tmp_path / "bwrap"
    broken.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    broken.chmod(0o755)
    url = f"sqlite:///{tmp_path / 'home' / 'aicd.db'}"
    server = ServerProc(tmp_path / "home", url, poll=False, env={"AICD_BWRAP": str(broken)}).start()
    try:
        status = _health(server)
        assert status.startswith("unavailable: ") and "setting up uid map" in status
        assert "jobs cannot be sandboxed here, so none will run" in server.log()
        assert "--unsafe-no-sandbox" in server.log()
        new_project(server, tmp_path, {".gitlab-ci.yml": CI})
        with server.client() as admin:
            pid = trigger(admin, "demo")["id"]
            done = wait_pipeline(admin, "demo", pid)
            assert done["status"] == "failed"
            assert "cannot sandbox jobs" in done["error"] and "setting up uid map" in done["error"]
            assert all(j["status"] != "success" for j in jobs_of(admin, "demo", pid).values())
    finally:
        server.stop(check=False)


def test_unsafe_no_sandbox_runs_jobs_as_before_with_a_warning(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'home' / 'aicd.db'}"
    server = ServerProc(tmp_path / "home", url, poll=False, args=["--unsafe-no-sandbox"]).start()
    try:
        assert _health(server) == "off"
        assert "UNSAFE: --unsafe-no-sandbox" in server.log()
        new_project(server, tmp_path, {".gitlab-ci.yml": CI})
        with server.client() as admin:
            pid = trigger(admin, "demo")["id"]
            assert wait_pipeline(admin, "demo", pid)["status"] == "success"
            job = jobs_of(admin, "demo", pid)["job"]
            log = admin.get(f"/projects/demo/jobs/{job['id']}/log").text
        assert f"home is [{server.home}]" in log  # unsandboxed: the server's home, as before
    finally:
        server.stop(check=False)


def test_sandboxed_jobs_do_not_get_the_servers_home(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'home' / 'aicd.db'}"
    server = ServerProc(tmp_path / "home", url, poll=False).start()
    try:
        assert _health(server) == "on"
        new_project(server, tmp_path, {".gitlab-ci.yml": CI})
        with server.client() as admin:
            pid = trigger(admin, "demo")["id"]
            assert wait_pipeline(admin, "demo", pid)["status"] == "success"
            job = jobs_of(admin, "demo", pid)["job"]
            assert "home is []" in admin.get(f"/projects/demo/jobs/{job['id']}/log").text
    finally:
        server.stop(check=False)
