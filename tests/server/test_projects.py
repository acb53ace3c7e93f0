"""Projects through the real server (SQLite and PostgreSQL): add, list, show, change, remove; the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from serverproc import ServerProc, json_of, make_user

from aicd_testing import aicd, git, make_repo

CI = "job:\n  script: [echo hello]\n"
SECRET = "webhook-secret-0123"


def test_project_lifecycle(server: ServerProc, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    git(repo, "branch", "develop")
    with server.client() as admin:
        response = admin.post(
            "/projects",
            json={"name": "demo", "repo_url": str(repo), "poll_interval_s": 60, "webhook_secret": SECRET},
        )
        assert response.status_code == 201, response.text
        created = json_of(response)
        assert SECRET not in response.text
        assert created["name"] == "demo" and created["repo_url"] == str(repo)
        assert (created["default_branch"], created["pipeline_file"]) == ("main", ".gitlab-ci.yml")
        assert created["poll_interval_s"] == 60 and created["has_webhook_secret"] is True
        assert created["webhook_paths"]["github"] == "/api/v1/projects/demo/hooks/github"

        assert [p["name"] for p in json_of(admin.get("/projects"))] == ["demo"]
        assert json_of(admin.get("/projects/demo")) == created
        assert json_of(admin.get(f"/projects/{created['id']}"))["name"] == "demo"

        # PATCH: only what is given changes; a branch must exist in the repository.
        patched = json_of(
            admin.patch("/projects/demo", json={"default_branch": "develop", "poll_interval_s": None})
        )
        assert (patched["default_branch"], patched["poll_interval_s"]) == ("develop", None)
        assert patched["has_webhook_secret"] is True and patched["pipeline_file"] == ".gitlab-ci.yml"
        bad = admin.patch("/projects/demo", json={"default_branch": "nope"})
        assert bad.status_code == 422 and "branch 'nope' does not exist" in bad.json()["error"]
        patched = json_of(
            admin.patch("/projects/demo", json={"webhook_secret": None, "pipeline_file": "ci.yml"})
        )
        assert patched["has_webhook_secret"] is False and patched["pipeline_file"] == "ci.yml"
        assert admin.patch("/projects/demo", json={"pipeline_file": "../x"}).status_code == 422

        actions = [e["action"] for e in json_of(admin.get("/projects/demo/audit"))]
        assert actions.count("project.update") == 2 and "project.create" in actions
        audit_text = json.dumps(json_of(admin.get("/audit")))
        assert SECRET not in audit_text

        removed = admin.delete("/projects/demo")
        assert removed.status_code == 204, removed.text
        assert admin.get("/projects/demo").status_code == 404
        assert json_of(admin.get("/projects")) == []
        assert "project.delete" in [e["action"] for e in json_of(admin.get("/audit"))]
        # The name is free again.
        assert admin.post("/projects", json={"name": "demo", "repo_url": str(repo)}).status_code == 201


def test_add_refuses_bad_input_with_clear_messages(server: ServerProc, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    missing = tmp_path / "no-such-repo"
    with server.client() as admin:

        def error(body: dict[str, object], status: int = 422) -> str:
            response = admin.post("/projects", json={"name": "p", "repo_url": str(repo)} | body)
            assert response.status_code == status, response.text
            return str(response.json()["error"])

        message = error({"repo_url": str(missing)})
        assert f"cannot read the repository {missing}" in message
        assert "does not exist" in message or "not appear to be a git repository" in message
        assert f"file://{missing}" in error({"repo_url": f"file://{missing}"})
        assert "not supported" in error({"repo_url": "ext::sh -c id"})
        assert "branch 'trunk' does not exist" in error({"default_branch": "trunk"})
        assert "name" in error({"name": "Bad Name"})
        assert "poll interval" in error({"poll_interval_s": 0.01})
        assert "webhook secret" in error({"webhook_secret": "short"})
        secret_url = "https://user:sup3rs3cret@127.0.0.1:9/x.git"
        assert "sup3rs3cret" not in error({"repo_url": secret_url})
        assert json_of(admin.get("/projects")) == []

        assert admin.post("/projects", json={"name": "p", "repo_url": f"file://{repo}"}).status_code == 201
        assert "already exists" in error({}, 409)

    _, bob = make_user(server, "bob", ("p", "maintainer"))
    with server.client(bob) as client:
        assert client.post("/projects", json={"name": "q", "repo_url": str(repo)}).status_code == 403
        assert client.delete("/projects/p").status_code == 403
        assert client.patch("/projects/p", json={"pipeline_file": "x.yml"}).status_code == 200


def test_projects_are_listed_by_role(server_sqlite: ServerProc, tmp_path: Path) -> None:
    server = server_sqlite
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    with server.client() as admin:
        for name in ("alpha", "beta"):
            assert admin.post("/projects", json={"name": name, "repo_url": str(repo)}).status_code == 201
    _, viewer = make_user(server, "vic", ("beta", "viewer"))
    with server.client(viewer) as client:
        assert [p["name"] for p in json_of(client.get("/projects"))] == ["beta"]
        assert client.get("/projects/alpha").status_code == 404  # not revealed
        assert client.patch("/projects/beta", json={"pipeline_file": "x.yml"}).status_code == 403
        assert client.post("/projects/beta/poll").status_code == 403
        assert client.get("/projects/beta/variables").status_code == 403


def test_cli(server_sqlite: ServerProc, tmp_path: Path) -> None:
    server = server_sqlite
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    env = server.cli_env() | {"HOOK_SECRET": SECRET, "TOKEN_VALUE": "s3cr3t-value-xyz"}

    def run(*args: str, ok: bool = True) -> str:
        proc = aicd(tmp_path, "project", *args, env=env)
        assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        return proc.stdout + proc.stderr

    # A relative path is sent as an absolute one.
    assert "project demo added" in run(
        "add", "demo", "repo", "--poll-interval", "30", "--webhook-secret-env", "HOOK_SECRET"
    )
    shown = json.loads(run("show", "demo", "--json"))
    assert shown["repo_url"] == str(repo) and shown["poll_interval_s"] == 30 and shown["has_webhook_secret"]
    text = run("show", "demo")
    assert "every 30 s" in text and "/api/v1/projects/demo/hooks/gitlab" in text and SECRET not in text
    assert "demo" in run("list")
    missing = run("add", "other", str(tmp_path / "missing"), ok=False)
    assert f"cannot read the repository {tmp_path / 'missing'}" in missing
    assert "project demo updated" in run("update", "demo", "--poll-interval", "0", "--no-webhook-secret")
    shown = json.loads(run("show", "demo", "--json"))
    assert shown["poll_interval_s"] is None and not shown["has_webhook_secret"]

    assert "variable PLAIN set" in run("variable", "set", "demo", "PLAIN", "visible")
    assert "(masked)" in run("variable", "set", "demo", "TOKEN", "--value-env", "TOKEN_VALUE", "--masked")
    listed = run("variable", "list", "demo")
    assert "visible" in listed and "[masked]" in listed and "s3cr3t-value-xyz" not in listed
    variables = json.loads(run("variable", "list", "demo", "--json"))
    assert {v["key"]: v["value"] for v in variables} == {"PLAIN": "visible", "TOKEN": None}
    assert "masked value must be" in run("variable", "set", "demo", "SHORT", "abc", "--masked", ok=False)
    run("variable", "remove", "demo", "PLAIN")
    assert [v["key"] for v in json.loads(run("variable", "list", "demo", "--json"))] == ["TOKEN"]

    assert "--yes" in run("remove", "demo", ok=False)
    assert "project demo removed" in run("remove", "demo", "--yes")
    assert "no project 'demo'" in run("show", "demo", ok=False)


def test_odd_input_is_never_a_500(server_sqlite: ServerProc, tmp_path: Path) -> None:
    server = server_sqlite
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    odd = ["\ud800", "a\x00b", "x" * 5000, "", " ", "-x", "ext::sh", "\x1b[31m"]
    json_headers = {"Content-Type": "application/json"}
    with server.client() as admin:
        assert admin.post("/projects", json={"name": "demo", "repo_url": str(repo)}).status_code == 201
        for value in odd:
            for field in ("name", "repo_url", "default_branch", "pipeline_file", "webhook_secret"):
                raw = json.dumps(
                    {"name": "p", "repo_url": str(repo), field: value}
                ).encode()  # \ud800 escaped
                response = admin.post("/projects", content=raw, headers=json_headers)
                assert response.status_code < 500, (field, value, response.text)
                if response.status_code == 201:
                    assert admin.delete("/projects/p").status_code == 204
                raw = json.dumps({field if field != "name" else "pipeline_file": value}).encode()
                response = admin.patch("/projects/demo", content=raw, headers=json_headers)
                assert response.status_code < 500, (field, value, response.text)
            raw = json.dumps({"value": value, "masked": True}).encode()
            response = admin.put("/projects/demo/variables/K", content=raw, headers=json_headers)
            assert response.status_code < 500, (value, response.text)
        # The ones that must be refused are.
        for field, value in (("repo_url", "a\x00b"), ("name", "-x"), ("default_branch", "\ud800")):
            raw = json.dumps({"name": "p", "repo_url": str(repo), field: value}).encode()
            assert admin.post("/projects", content=raw, headers=json_headers).status_code == 422
        assert admin.put("/projects/demo/variables/K", json={"value": "a\x00b"}).status_code == 422
        document = admin.get("/openapi.json").json()
    mine = [
        ("/api/v1/projects", "post"),
        ("/api/v1/projects", "get"),
        ("/api/v1/projects/{project}", "get"),
        ("/api/v1/projects/{project}", "patch"),
        ("/api/v1/projects/{project}", "delete"),
        ("/api/v1/projects/{project}/poll", "post"),
        ("/api/v1/projects/{project}/variables", "get"),
        ("/api/v1/projects/{project}/variables/{key}", "put"),
        ("/api/v1/projects/{project}/variables/{key}", "delete"),
        ("/api/v1/projects/{project}/hooks/{provider}", "post"),
    ]
    for path, method in mine:
        operation = document["paths"][path][method]
        assert operation["summary"], (path, method)
    assert "Traceback" not in server.log()
