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


def test_deploy_in_a_server_job_says_it_is_not_supported_yet(tmp_path: Path) -> None:
    env = {**clean_env(), "AICD_SERVER": "http://127.0.0.1:9", "CI_JOB_TOKEN": JOB}
    proc = aicd(tmp_path, "deploy", ".", "--env", "staging", env=env)
    assert proc.returncode != 0
    assert "aicd deploy in a job of an aicd server is not supported yet" in proc.stderr
    assert "Traceback" not in proc.stderr and JOB not in proc.stderr
    assert not (tmp_path / ".aicd").exists()  # nothing deployed into the job's workspace
