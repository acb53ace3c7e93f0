"""The AI verbs inside a job of an aicd server: which server and token they use, and what they refuse."""

from __future__ import annotations

from pathlib import Path

from aicd.cli.remote import job_token_from_env, server_from_env
from aicd_testing import aicd, clean_env

JOB = "aicdjob_" + "x" * 40


def test_a_job_of_a_server_talks_to_it_with_its_own_token() -> None:
    env = {"AICD_SERVER": "http://127.0.0.1:8080", "CI_JOB_TOKEN": JOB}
    assert server_from_env(env) == "http://127.0.0.1:8080"
    assert job_token_from_env(env) == JOB
    # an explicit local store wins
    assert server_from_env({**env, "AICD_HOME": "/tmp/h"}) is None
    assert server_from_env({**env, "AICD_DATABASE_URL": "sqlite:///x"}) is None
    # no server, or no token: local
    assert server_from_env({"CI_JOB_TOKEN": JOB}) is None
    assert server_from_env({"AICD_SERVER": "http://s"}) is None
    # a user's token works too
    assert server_from_env({"AICD_SERVER": "http://s", "AICD_TOKEN": "aicd_t"}) == "http://s"


def test_another_ci_s_job_token_is_never_sent() -> None:
    gitlab = {"AICD_SERVER": "http://s", "CI_JOB_TOKEN": "glcbt-64_abcdef"}
    assert job_token_from_env(gitlab) is None
    assert server_from_env(gitlab) is None


def test_deploy_in_a_server_job_goes_to_the_server(tmp_path: Path) -> None:
    """No local agent, no local store: the release goes to the server's API (here unreachable);
    the full path is tests/server/test_deploy_route.py."""
    (tmp_path / "aicd.yml").write_text("service:\n  command: [python, app.py]\n")
    env = {**clean_env(), "AICD_SERVER": "http://127.0.0.1:9", "CI_JOB_TOKEN": JOB, "CI_PROJECT_NAME": "shop"}
    proc = aicd(tmp_path, "deploy", ".", "--env", "staging", env=env)
    assert proc.returncode != 0
    assert "cannot reach the aicd server at http://127.0.0.1:9" in proc.stderr
    assert "Traceback" not in proc.stderr and JOB not in proc.stderr
    assert not (tmp_path / ".aicd").exists()  # nothing deployed into the job's workspace
    # a bad aicd.yml is refused in the job, before anything is sent
    (tmp_path / "aicd.yml").write_text("service:\n  port_variable: PORT\n")
    proc = aicd(tmp_path, "deploy", ".", "--env", "staging", env=env)
    assert proc.returncode == 2 and "cannot reach" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
