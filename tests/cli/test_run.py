"""`aicd run` end to end: a real repo, the real CLI process, real jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aicd_testing import aicd, make_repo, run_json

pytestmark = pytest.mark.slow

THREE_STAGES = """
stages: [build, test, deploy]
variables:
  NAME: world
build:
  stage: build
  script:
    - mkdir -p out
    - echo "hello $NAME" > out/greeting.txt
    - echo "VERSION=1.2.3" > build.env
  artifacts:
    paths: [out/]
    reports: {dotenv: build.env}
test:
  stage: test
  script:
    - cat out/greeting.txt
    - echo "version $VERSION"
    - printf '<testsuite tests="2" failures="1"><testcase name="a"/>' > junit.xml
    - printf '<testcase name="b"><failure/></testcase></testsuite>' >> junit.xml
  artifacts:
    reports: {junit: junit.xml}
flaky:
  stage: test
  allow_failure: true
  script: [exit 3]
deploy:
  stage: deploy
  script: [echo "deploying $VERSION"]
"""


def test_three_stage_pipeline_json_contract(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": THREE_STAGES})
    code, result, stderr = run_json(project)
    assert code == 0, stderr
    assert result["pipeline"]["status"] == "success"
    assert isinstance(result["pipeline"]["id"], int)
    jobs = {j["name"]: j for j in result["jobs"]}
    assert set(jobs) == {"build", "test", "flaky", "deploy"}
    for job in jobs.values():
        assert set(job) >= {"name", "stage", "status", "allow_failure", "exit_code", "duration_s", "log_path"}
        assert Path(job["log_path"]).is_file()
    assert jobs["build"]["status"] == "success"
    assert jobs["flaky"]["status"] == "failed"
    assert jobs["flaky"]["allow_failure"] is True
    assert jobs["flaky"]["exit_code"] == 3
    assert jobs["deploy"]["status"] == "success"
    # artifacts and dotenv reached later stages
    assert "test > hello world" in stderr
    assert "test > version 1.2.3" in stderr
    assert "deploy > deploying 1.2.3" in stderr
    assert "test $ cat out/greeting.txt" in stderr
    log = Path(jobs["test"]["log_path"]).read_text()
    assert "$ cat out/greeting.txt" in log and "hello world" in log
    assert jobs["test"]["tests"] == {"total": 2, "passed": 1, "failed": 1, "skipped": 0}


def test_failed_pipeline_exits_1_and_skips_later_stages(tmp_path: Path) -> None:
    project = make_repo(
        tmp_path / "p",
        {
            ".gitlab-ci.yml": (
                "a:\n  stage: build\n  script: [echo one, exit 7, echo never]\n"
                "b:\n  stage: test\n  script: [echo b]\n"
                "c:\n  stage: test\n  when: on_failure\n  script: [echo cleanup]\n"
            )
        },
    )
    code, result, stderr = run_json(project)
    assert code == 1
    assert result["pipeline"]["status"] == "failed"
    jobs = {j["name"]: j for j in result["jobs"]}
    assert jobs["a"]["status"] == "failed" and jobs["a"]["exit_code"] == 7
    assert jobs["b"]["status"] == "skipped"
    assert jobs["c"]["status"] == "success"
    assert "a > never" not in stderr


def test_bad_pipeline_is_a_located_error_not_a_traceback(tmp_path: Path) -> None:
    project = make_repo(
        tmp_path / "p",
        {".gitlab-ci.yml": "build:\n  script: [echo]\ntest:\n  needs: [biuld]\n  script: [echo]\n"},
    )
    proc = aicd(project, "run")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert ".gitlab-ci.yml:4:" in proc.stderr
    assert "biuld" in proc.stderr and 'did you mean "build"' in proc.stderr
    # the failed pipeline is recorded with its messages
    runs = aicd(project, "runs", "--json")
    assert runs.returncode == 0, runs.stderr
    recorded = json.loads(runs.stdout)
    assert recorded[0]["status"] == "failed" and "biuld" in recorded[0]["error"]


def test_job_subset_and_needs(tmp_path: Path) -> None:
    project = make_repo(
        tmp_path / "p",
        {
            ".gitlab-ci.yml": (
                "a:\n  stage: build\n  script: [echo a > a.txt]\n  artifacts: {paths: [a.txt]}\n"
                "b:\n  stage: test\n  needs: [a]\n  script: [cat a.txt]\n"
                "c:\n  stage: test\n  script: [echo c]\n"
            )
        },
    )
    code, result, stderr = run_json(project, "b", "--needs")
    assert code == 0, stderr
    assert sorted(j["name"] for j in result["jobs"] if j["status"] == "success") == ["a", "b"]
    assert "b > a" in stderr
    code, result, _ = run_json(project, "c")
    assert [j["name"] for j in result["jobs"] if j["status"] == "success"] == ["c"]
    proc = aicd(project, "run", "cc")
    assert proc.returncode != 0 and 'no job named "cc"' in proc.stderr and '"c"' in proc.stderr


def test_manual_job_runs_only_when_played(tmp_path: Path) -> None:
    project = make_repo(
        tmp_path / "p",
        {".gitlab-ci.yml": "deploy:\n  when: manual\n  script: [echo shipped]\n"},
    )
    code, result, stderr = run_json(project)
    assert code == 0
    assert result["jobs"][0]["status"] == "manual"
    assert "shipped" not in stderr
    code, result, stderr = run_json(project, "--manual", "deploy")
    assert code == 0 and result["jobs"][0]["status"] == "success"
    assert "deploy > shipped" in stderr


def test_masked_secret_never_printed_nor_logged(tmp_path: Path) -> None:
    secret = "s3cr3t-MARKER-value-91"
    project = make_repo(
        tmp_path / "p",
        {".gitlab-ci.yml": 'job:\n  script:\n    - echo "token is $TOKEN"\n    - echo $TOKEN >&2\n'},
    )
    code, result, stderr = run_json(project, "--secret", f"TOKEN={secret}")
    assert code == 0, stderr
    assert secret not in stderr
    assert "token is [MASKED]" in stderr
    log = Path(result["jobs"][0]["log_path"]).read_text()
    assert secret not in log and "[MASKED]" in log


def test_history_commands(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": "hello:\n  script: [echo hi there]\n"})
    code, result, _ = run_json(project)
    assert code == 0
    run_id = result["pipeline"]["id"]
    runs = aicd(project, "runs")
    assert runs.returncode == 0 and str(run_id) in runs.stdout and "success" in runs.stdout
    show = aicd(project, "show", str(run_id))
    assert show.returncode == 0 and "hello" in show.stdout
    logs = aicd(project, "logs", str(run_id), "hello")
    assert logs.returncode == 0 and "hi there" in logs.stdout
    missing = aicd(project, "logs", str(run_id), "helo")
    assert missing.returncode != 0 and 'did you mean "hello"' in missing.stderr
    assert "Traceback" not in missing.stderr
    nothing = aicd(project, "show", "9999")
    assert nothing.returncode != 0 and "9999" in nothing.stderr and "Traceback" not in nothing.stderr


def test_lint_reports_every_problem(tmp_path: Path) -> None:
    project = make_repo(
        tmp_path / "p",
        {
            ".gitlab-ci.yml": (
                "stages: [build, test]\n"
                "a:\n  stage: biuld\n  script: [echo]\n"
                "b:\n  needs: [nope]\n  script: [echo]\n"
                "c:\n  script: [echo]\n  rules:\n    - if: '$X =~ /[/'\n"
            )
        },
    )
    proc = aicd(project, "lint")
    assert proc.returncode == 2
    text = proc.stdout
    assert "Traceback" not in text + proc.stderr
    assert ".gitlab-ci.yml:3:" in text and "biuld" in text
    assert ".gitlab-ci.yml:6:" in text and "nope" in text
    assert "rules" in text or "regex" in text
    ok = make_repo(tmp_path / "q", {".gitlab-ci.yml": "a:\n  script: [echo]\n"})
    proc = aicd(ok, "lint", "--json")
    assert proc.returncode == 0
    payload = json.loads(proc.stdout)
    assert payload["valid"] is True and payload["jobs"][0]["name"] == "a"


def test_quickstart_example_passes(tmp_path: Path) -> None:
    import shutil

    src = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
    files = {
        str(p.relative_to(src)): p.read_text()
        for p in src.rglob("*")
        if p.is_file() and ".aicd" not in p.parts
    }
    project = make_repo(tmp_path / "qs", files)
    code, result, stderr = run_json(project)
    assert code == 0, stderr
    jobs = {j["name"]: j for j in result["jobs"]}
    assert jobs["lint"]["status"] == "failed" and jobs["lint"]["allow_failure"]
    assert jobs["unit-tests: [3.11]"]["tests"]["passed"] == 2
    assert "deploy > deploying 1.0." in stderr
    shutil.rmtree(project / ".aicd")


def test_commit_runs_that_commits_pipeline_file(tmp_path: Path) -> None:
    from aicd_testing import git

    project = make_repo(
        tmp_path / "p", {".gitlab-ci.yml": "old-job:\n  script: [cat version.txt]\n", "version.txt": "v1\n"}
    )
    old = git(project, "rev-parse", "HEAD")
    (project / ".gitlab-ci.yml").write_text("new-job:\n  script: [cat version.txt]\n")
    (project / "version.txt").write_text("v2\n")
    git(project, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qam", "second")
    code, result, stderr = run_json(project, "--commit", old)
    assert code == 0, stderr
    assert [j["name"] for j in result["jobs"]] == ["old-job"]
    assert "old-job > v1" in stderr
    code, result, stderr = run_json(project)
    assert [j["name"] for j in result["jobs"]] == ["new-job"] and "new-job > v2" in stderr


def test_bad_selection_and_secrets_are_usage_errors(tmp_path: Path) -> None:
    project = make_repo(
        tmp_path / "p",
        {
            ".gitlab-ci.yml": (
                "workflow:\n  rules:\n    - if: $CI_COMMIT_BRANCH\n      auto_cancel: {on_new_commit: none}\n"
                "job:\n  script: [echo hi]\n"
            ),
            "vars.yml": "KEY:\n  value: |\n    line one\n    line two\n  masked: true\n",
        },
    )
    proc = aicd(project, "run", "nosuch")
    assert proc.returncode == 2 and 'no job named "nosuch"' in proc.stderr
    proc = aicd(project, "run", "--variables-file", "vars.yml")
    assert proc.returncode == 2 and "several lines" in proc.stderr and "line one" not in proc.stderr
    code, _, stderr = run_json(project)
    assert code == 0, stderr


def test_show_marks_allowed_failures_as_they_applied(tmp_path: Path) -> None:
    project = make_repo(
        tmp_path / "p",
        {
            ".gitlab-ci.yml": (
                "covered:\n  script: [exit 3]\n  allow_failure: {exit_codes: [3]}\n"
                "not-covered:\n  script: [exit 4]\n  allow_failure: {exit_codes: [3]}\n"
            )
        },
    )
    code, result, _ = run_json(project)
    assert code == 1
    flags = {j["name"]: j["allow_failure"] for j in result["jobs"]}
    assert flags == {"covered": True, "not-covered": False}
    shown = aicd(project, "show", str(result["pipeline"]["id"]), "--json")
    rows = {j["name"]: j["allow_failure"] for j in json.loads(shown.stdout)["jobs"]}
    assert rows == {"covered": True, "not-covered": False}
    text = aicd(project, "show", str(result["pipeline"]["id"])).stdout
    assert "failed (allowed)" in text


def test_dotenv_variables_file(tmp_path: Path) -> None:
    project = make_repo(
        tmp_path / "p",
        {
            ".gitlab-ci.yml": 'j:\n  script: [echo "A=$A B=$B"]\n',
            "v.env": '# comment\nA=1\nB="two words"\n',
            "bad.env": "A=1\nnot a line\n",
        },
    )
    code, _, stderr = run_json(project, "--variables-file", "v.env")
    assert code == 0 and "j > A=1 B=two words" in stderr
    proc = aicd(project, "run", "--variables-file", "bad.env")
    assert proc.returncode == 2
    assert "bad.env:2: not a KEY=VALUE line" in proc.stderr and "ignored" not in proc.stderr
