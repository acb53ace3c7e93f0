"""What a server pipeline's jobs are told (real server on --port 0): the server's URLs (with the port
it listens on, pointing at routes that answer), who started the pipeline and the commit before a
push; and errors for unknown refs that name the project, not the server's folders."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline_helpers import commit, jobs_of, new_project, trigger, wait_pipeline
from serverproc import API, ServerProc, json_of, make_user

from aicd_testing import git
from triggers.payloads import ZERO, delivery

CI = """
job:
  script:
    - echo "server=$CI_SERVER_URL port=$CI_SERVER_PORT api=$CI_API_V4_URL"
    - echo "project=$CI_PROJECT_URL"
    - echo "pipeline=$CI_PIPELINE_URL"
    - echo "job=$CI_JOB_URL"
    - echo "login=$GITLAB_USER_LOGIN before=$CI_COMMIT_BEFORE_SHA"
    - echo "name=$GITLAB_USER_NAME"
"""
SECRET = "webhook-secret-0123"


def _values(log: str) -> dict[str, str]:
    """key=value words of the lines the job echoed ("name=" takes the rest of its line)."""
    found: dict[str, str] = {}
    for line in log.splitlines():
        if line.startswith("$ "):
            continue
        if line.startswith("name="):
            found["name"] = line.removeprefix("name=")
            continue
        for key, value in re.findall(r"(\w+)=(\S*)", line):
            found[key] = value
    return found


def _job_log(server: ServerProc, project: str, pipeline_id: int) -> tuple[int, str]:
    with server.client() as admin:
        done = wait_pipeline(admin, project, pipeline_id)
        assert done["status"] == "success", done
        job = jobs_of(admin, project, pipeline_id)["job"]
        return int(job["id"]), admin.get(f"/projects/{project}/jobs/{job['id']}/log").text


def test_urls_and_user_of_an_api_pipeline(server_sqlite: ServerProc, tmp_path: Path) -> None:
    server = server_sqlite
    new_project(server, tmp_path, {".gitlab-ci.yml": CI})
    _, token = make_user(server, "alice", ("demo", "developer"))
    with server.client(token) as alice:
        pipeline_id = int(trigger(alice, "demo")["id"])
    job_id, log = _job_log(server, "demo", pipeline_id)
    v = _values(log)
    assert server.port != 0
    assert v["server"] == server.url and v["port"] == str(server.port)
    assert v["api"] == f"{server.url}{API}"
    assert v["project"] == f"{server.url}{API}/projects/demo"
    assert v["pipeline"] == f"{server.url}{API}/projects/demo/pipelines/{pipeline_id}"
    assert v["job"] == f"{server.url}{API}/projects/demo/jobs/{job_id}"
    assert v["login"] == "alice" and v["name"] == "alice" and v["before"] == ZERO
    # every URL is a route the server answers
    with server.client(token) as alice:
        for key, expected_id in (("project", None), ("pipeline", pipeline_id), ("job", job_id)):
            response = alice.get(v[key].removeprefix(f"{server.url}{API}"))
            assert response.status_code == 200, (key, response.text)
            if expected_id is not None:
                assert json_of(response)["id"] == expected_id
        assert alice.get(v["api"].removeprefix(f"{server.url}{API}") + "/health").status_code == 200


def test_a_webhook_push_names_the_pusher_and_the_commit_before(
    server_sqlite: ServerProc, tmp_path: Path
) -> None:
    server = server_sqlite
    repo = new_project(server, tmp_path, {".gitlab-ci.yml": CI}, name="hooked")
    with server.client() as admin:
        assert admin.patch("/projects/hooked", json={"webhook_secret": SECRET}).status_code == 200
    before = git(repo, "rev-parse", "HEAD")
    after = commit(repo, {"more.txt": "x"})
    git(repo, "branch", "fresh")  # the new branch github's push announces (a push's commit is on its ref)
    expected = {
        # provider: (before sent, login, name) as each provider's payload gives them
        "gitlab": (before, "jsmith", "John Smith"),
        "github": (ZERO, "octo", "octo"),  # a new branch: zeros, as GitLab
        "gitea": (before, "gitea", "gitea"),
    }
    with server.client("") as anon:
        created = {}
        for provider, (sent_before, _, _) in expected.items():
            ref = "refs/heads/fresh" if sent_before == ZERO else "refs/heads/main"
            headers, body = delivery(provider, SECRET, ref, sent_before, after)
            response = anon.post(f"/projects/hooked/hooks/{provider}", content=body, headers=headers)
            assert response.status_code == 200, response.text
            created[provider] = int(json_of(response)["pipeline_id"])
    for provider, (sent_before, login, name) in expected.items():
        v = _values(_job_log(server, "hooked", created[provider])[1])
        assert (v["login"], v["name"], v["before"]) == (login, name, sent_before), provider


def test_unknown_refs_and_commits_name_the_project_not_server_paths(
    server_sqlite: ServerProc, tmp_path: Path
) -> None:
    server = server_sqlite
    new_project(server, tmp_path, {".gitlab-ci.yml": CI})
    with server.client() as admin:
        for body in ({"ref": "no-such-branch"}, {"ref": "main", "sha": "0123456789abcdef0123"}):
            response = admin.post("/projects/demo/pipelines", json=body)
            assert response.status_code == 422, response.text
            message = json_of(response)["error"]
            assert "'demo'" in message, message
            assert str(server.home) not in message and "mirror" not in message, message
        message = admin.post("/projects/demo/pipelines", json={"ref": "no-such-branch"}).json()["error"]
        assert message == "'no-such-branch' is not a branch or tag of project 'demo'"
