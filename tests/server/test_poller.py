"""The poller through the real server: commits become pipelines, by schedule or by POST .../poll."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serverproc import ServerProc, json_of
from test_webhooks import pipelines

from aicd_testing import git, make_repo

CI = "job:\n  script: [echo hello]\n"


def _commit(repo: Path, name: str) -> str:
    (repo / name).write_text(name)
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", name)
    return git(repo, "rev-parse", "HEAD")


def _wait(what: str, check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_poll_now_runs_what_moved(server: ServerProc, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    git(repo, "branch", "old-branch")
    git(repo, "tag", "v0")
    first = git(repo, "rev-parse", "HEAD")
    with server.client() as admin:
        assert admin.post("/projects", json={"name": "demo", "repo_url": str(repo)}).status_code == 201

        # First poll: the default branch's head once, not every branch and tag.
        polled = json_of(admin.post("/projects/demo/poll"))["pipelines"]
        assert [(p["ref"], p["sha"], p["source"]) for p in polled] == [("main", first, "push")]
        assert json_of(admin.post("/projects/demo/poll"))["pipelines"] == []

        second = _commit(repo, "a")
        git(repo, "checkout", "-q", "-b", "feature")
        third = _commit(repo, "b")
        git(repo, "tag", "v1")
        git(repo, "branch", "-D", "old-branch")
        polled = json_of(admin.post("/projects/demo/poll"))["pipelines"]
        assert sorted((p["ref"], p["sha"]) for p in polled) == [
            ("feature", third),
            ("main", second),
            ("v1", third),
        ]
        assert json_of(admin.post("/projects/demo/poll"))["pipelines"] == []
        assert [row[1] for row in pipelines(server, "demo")] == ["main", "feature", "main", "v1"]

        # A force push back is a move too.
        git(repo, "checkout", "-q", "main")
        git(repo, "reset", "-q", "--hard", first)
        polled = json_of(admin.post("/projects/demo/poll"))["pipelines"]
        assert [(p["ref"], p["sha"]) for p in polled] == [("main", first)]
        audit = json_of(admin.get("/projects/demo/audit"))
        assert "project.poll" in [e["action"] for e in audit]
        pushes = [(e["actor"], e["target"]) for e in audit if e["action"] == "poll.push"]
        assert pushes == [
            ("poller", "main"),
            ("poller", "v1"),
            ("poller", "main"),
            ("poller", "feature"),
            ("poller", "main"),
        ]


def test_scheduled_polling_and_one_broken_project(server_sqlite: ServerProc, tmp_path: Path) -> None:
    server = server_sqlite
    good = make_repo(tmp_path / "good", {".gitlab-ci.yml": CI})
    broken = make_repo(tmp_path / "broken", {".gitlab-ci.yml": CI})
    with server.client() as admin:
        # 'broken' is created without polling and scheduled only once its repo is gone: created with
        # an interval, it could be polled (and run) before the repo is deleted.
        for name, repo, interval in (("broken", broken, None), ("good", good, 1)):
            body = {"name": name, "repo_url": str(repo), "poll_interval_s": interval}
            assert admin.post("/projects", json=body).status_code == 201
        shutil.rmtree(broken)  # its polls fail from now on
        patched = admin.patch("/projects/broken", json={"poll_interval_s": 1})
        assert patched.status_code == 200 and patched.json()["poll_interval_s"] == 1, patched.text

        head = git(good, "rev-parse", "HEAD")
        _wait("the first poll of 'good'", lambda: pipelines(server, "good"))
        assert [row[1:] for row in pipelines(server, "good")] == [("main", head, "push")]

        moved = _commit(good, "next")
        _wait("a poll to see the new commit", lambda: len(pipelines(server, "good")) == 2)
        assert pipelines(server, "good")[-1][1:] == ("main", moved, "push")

        shown = _wait(
            "the broken project's error", lambda: json_of(admin.get("/projects/broken"))["last_poll_error"]
        )
        assert str(broken) in shown
        response = admin.post("/projects/broken/poll")
        assert response.status_code == 422 and str(broken) in response.json()["error"]
        assert pipelines(server, "broken") == []

        # Polling stops when the interval is removed.
        assert (
            json_of(admin.patch("/projects/good", json={"poll_interval_s": None}))["poll_interval_s"] is None
        )
        time.sleep(0.3)  # a poll already under way may finish
        _commit(good, "unseen")
        time.sleep(2.5)
        assert len(pipelines(server, "good")) == 2
    assert "Traceback" not in server.log()
