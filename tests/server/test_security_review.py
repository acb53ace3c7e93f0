"""Regression tests for the server defects of the outside security review (issue 11, part 4).

Each test plays the attacker against the real `aicd server` (SQLite, and PostgreSQL where the
database matters), with real git repositories; each failed before its fix.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pipeline_helpers import commit, wait_pipeline
from serverproc import ServerProc, json_of, make_user

from aicd_testing import AICD, git, make_repo
from triggers.payloads import ZERO, delivery

CI = "job:\n  script: [echo hello]\n"
SECRET = "webhook-secret-0123"
# What would tell the database apart in an answer: its kind, host, port, user, file.
DATABASE_MARKS = ("postgres", "psycopg", "5432", "127.0.0.1:", "sqlite", "aicd.db", "database at")


def _pipelines(client: httpx.Client, project: str) -> list[dict[str, object]]:
    return list(json_of(client.get(f"/projects/{project}/pipelines", params={"limit": 1000})))


def _add(client: httpx.Client, name: str, repo: Path | str, **fields: object) -> dict[str, object]:
    response = client.post("/projects", json={"name": name, "repo_url": str(repo), **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _branchy_repo(tmp_path: Path) -> tuple[Path, str, str]:
    """A repo with main and an unprotected branch `feature` one commit ahead: (repo, main, feature)."""
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    main = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "feature")
    feature = commit(repo, {"evil.txt": "only on feature\n"})
    git(repo, "checkout", "-q", "main")
    return repo, main, feature


# -- a trigger's sha must be on its ref -----------------------------------------------------------


def test_a_trigger_runs_only_commits_its_ref_holds(server_sqlite: ServerProc, tmp_path: Path) -> None:
    repo, main, feature = _branchy_repo(tmp_path)
    older = main
    main = commit(repo, {"more.txt": "main moves on\n"})
    with server_sqlite.client() as admin:
        _add(admin, "demo", repo, webhook_secret=SECRET)
        # The sha of the feature branch with ref=main would run with main's protected variables.
        refused = admin.post("/projects/demo/pipelines", json={"ref": "main", "sha": feature})
        assert refused.status_code == 422, refused.text
        assert "is not on main" in refused.json()["error"]
        # A sha is not a ref either (GitLab runs pipelines for branches and tags only).
        as_ref = admin.post("/projects/demo/pipelines", json={"ref": feature})
        assert as_ref.status_code == 422 and "is not a branch or tag" in as_ref.json()["error"]
        assert _pipelines(admin, "demo") == []
        # What the ref holds runs: its head, an older commit of it, the branch's own commit.
        for ref, sha in (("main", main), ("main", older), ("feature", feature), ("refs/heads/main", None)):
            created = admin.post("/projects/demo/pipelines", json={"ref": ref, "sha": sha})
            assert created.status_code == 201, created.text
        shown = [(p["ref"], p["sha"]) for p in reversed(_pipelines(admin, "demo"))]
        assert shown == [("main", main), ("main", older), ("feature", feature), ("main", main)]

        # A (signed) webhook claiming main moved to the feature's commit: refused too.
        headers, body = delivery("github", SECRET, "refs/heads/main", main, feature)
        pushed = httpx.post(
            f"{server_sqlite.url}/api/v1/projects/demo/hooks/github", content=body, headers=headers
        )
        assert pushed.status_code == 422 and "is not on refs/heads/main" in pushed.json()["error"], (
            pushed.text
        )
        assert len(_pipelines(admin, "demo")) == 4


# -- refs checked as git does ---------------------------------------------------------------------

BAD_REFS = {
    "newline": "main\nINJECTED",
    "nul": "ma\x00in",
    "escape": "ma\x1b[31min",
    "dot-dot": "../../etc",
    "long": "a" * 10_000,
    "surrogate": "ma\ud800in",
    "lock": "main.lock",
    "reflog": "main@{1}",
    "space": "ma in",
}


def test_refs_are_checked_as_git_does(server: ServerProc, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    head = git(repo, "rev-parse", "HEAD")
    with server.client() as admin, server.client("") as anon:
        _add(admin, "demo", repo, webhook_secret=SECRET)
        for label, ref in BAD_REFS.items():
            for provider in ("github", "gitlab", "gitea"):
                payload = json.loads(delivery(provider, SECRET, "refs/heads/main", ZERO, head)[1])
                payload["ref"] = "refs/heads/" + ref
                body = json.dumps(payload).encode()  # \u0000, \ud800: JSON escapes of what git refuses
                headers, signed = delivery(provider, SECRET, "refs/heads/main", ZERO, head, body=body)
                answer = anon.post(f"/projects/demo/hooks/{provider}", content=signed, headers=headers)
                assert answer.status_code == 422, (label, provider, answer.text)
                assert "not a valid git ref name" in answer.json()["error"], answer.text
                assert "\n" not in answer.json()["error"] and "\x1b" not in answer.json()["error"]
            via_api = admin.post(
                "/projects/demo/pipelines",
                content=json.dumps({"ref": ref}),  # ASCII JSON: "\ud800" travels as an escape
                headers={"Content-Type": "application/json"},
            )
            assert via_api.status_code == 422, (label, via_api.text)
        assert _pipelines(admin, "demo") == []
    log = server.log()
    assert "Traceback" not in log and "internal error" not in log


# -- NUL anywhere: 422; the database never named ---------------------------------------------------


def test_nul_is_refused_everywhere_and_the_database_never_named(server: ServerProc, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    with server.client() as admin:
        _add(admin, "demo", repo)
        me = json_of(admin.get("/user"))["id"]
        attempts = [
            admin.get("/projects/demo/pipelines", params={"ref": "\x00"}),
            admin.get("/projects/demo/pipelines?ref=%00"),
            admin.get("/audit", params={"project": "de\x00mo"}),
            admin.get("/projects/de%00mo"),
            admin.get("/projects/demo/pipelines/1%00"),
            admin.post(f"/users/{me}/tokens", json={"name": "lap\x00top"}),
            admin.post(
                f"/users/{me}/tokens",
                content=json.dumps({"name": "lap\ud800top"}),
                headers={"Content-Type": "application/json"},
            ),
            admin.post("/users", json={"name": "eve", "k\x00": 1}),
            admin.post(
                "/projects/demo/pipelines", json={"ref": "main", "variables": [{"key": "A", "value": "\x00"}]}
            ),
            admin.put("/projects/demo/variables/KEY", json={"value": "a\x00b"}),
            admin.patch("/projects/demo", json={"pipeline_file": "ci\x00.yml"}),
            admin.get("/models", params={"q": "\x00"}),
        ]
        for response in attempts:
            assert response.status_code == 422, (response.request.url, response.text)
            assert "NUL" in response.json()["error"], response.text
            for mark in DATABASE_MARKS:
                assert mark not in response.text.lower(), (mark, response.text)
        # The message says where: which query parameter, which field of the body.
        assert attempts[0].json()["error"].startswith("query parameter 'ref': a NUL character")
        assert attempts[5].json()["error"].startswith("body.name: a NUL character")
        # A JSON text that merely shows a backslash and "u0000" is no NUL: accepted.
        fine = admin.post(f"/users/{me}/tokens", json={"name": "\\u0000 is fine"})
        assert fine.status_code == 201, fine.text
    assert "Traceback" not in server.log()


def test_a_database_error_answers_a_generic_503_and_logs_without_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The handler itself (no database can be made to fail on demand here): a StoreError names
    the database; the answer must not."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from aicd.errors import StoreError
    from aicd.server import errors

    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    def boom() -> None:
        raise StoreError("database at postgresql+psycopg://bob:hunter2@db.internal:5432/prod: cannot read")

    with TestClient(app) as client, caplog.at_level("WARNING", logger="aicd.server"):
        answer = client.get("/boom")
    assert answer.status_code == 503
    assert answer.json() == {"error": errors.STORE_UNAVAILABLE}
    assert "db.internal" in caplog.text and "hunter2" not in caplog.text


# -- webhook bodies: size checked first, streamed with a cap ----------------------------------------


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    """The process's resident memory now (VmRSS) or at its peak (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


def test_webhook_bodies_are_capped_before_being_read(server_sqlite: ServerProc, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    head = git(repo, "rev-parse", "HEAD")
    mib = 1024 * 1024
    with server_sqlite.client() as admin:
        _add(admin, "demo", repo, webhook_secret=SECRET)
    url = f"{server_sqlite.url}/api/v1/projects/demo/hooks/github"
    headers, _ = delivery("github", "wrong-secret-1", "refs/heads/main", ZERO, head)
    declared = httpx.post(url, content=b" " * (2 * mib), headers=headers, timeout=30)
    assert declared.status_code == 413 and "larger than 1048576 bytes" in declared.json()["error"]

    def chunked(total: int) -> Iterator[bytes]:
        for _ in range(total // (64 * 1024)):
            yield b" " * (64 * 1024)

    streamed = httpx.post(url, content=chunked(3 * mib), headers=headers, timeout=30)
    assert streamed.status_code == 413, streamed.text
    # The same for a project that does not exist: nothing tells them apart.
    ghost = httpx.post(
        url.replace("/demo/", "/ghost/"), content=b" " * (2 * mib), headers=headers, timeout=30
    )
    assert (ghost.status_code, ghost.json()) == (declared.status_code, declared.json())

    # 12 unauthenticated senders of 20 MiB each, at once: the server reads at most 1 MiB of each.
    assert server_sqlite.proc is not None
    pid = server_sqlite.proc.pid
    before = _rss_kib(pid)

    def send() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(url, content=chunked(20 * mib), headers=headers, timeout=60)

    senders = [threading.Thread(target=send) for _ in range(12)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(120)
    grown_mib = (_rss_kib(pid, "VmHWM") - before) / 1024
    assert grown_mib < 80, f"the server's peak memory grew by {grown_mib:.0f} MiB"  # was +234 MB
    assert httpx.get(f"{server_sqlite.url}/api/v1/health", timeout=10).status_code == 200


def test_bodies_read_before_authentication_are_bounded(server_sqlite: ServerProc) -> None:
    """A sibling: FastAPI reads a JSON body whole before the route checks the token."""
    import socket

    from aicd.server.inputs import MAX_JSON_BODY_BYTES

    host, port = server_sqlite.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = (
            f"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {MAX_JSON_BODY_BYTES + 1}\r\n\r\n"
        )
        sock.sendall(head.encode())  # and no body at all: the size alone is refused
        answer = ""
        while not answer.endswith("}"):  # the head and the JSON body may come in two reads
            chunk = sock.recv(65536).decode()
            if not chunk:
                break
            answer += chunk
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "request body larger than" in answer

    def endless() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(MAX_JSON_BODY_BYTES // (1024 * 1024) + 2):
            yield b"a" * (1024 * 1024)

    streamed = httpx.post(
        f"{server_sqlite.url}/api/v1/users",
        content=endless(),
        headers={"Content-Type": "text/plain"},
        timeout=60,
    )
    assert streamed.status_code == 413, streamed.text
    assert httpx.get(f"{server_sqlite.url}/api/v1/health", timeout=10).status_code == 200


# -- local repositories: admins only, under allowed roots, never the home ---------------------------


def test_local_repositories_are_for_admins_under_allowed_roots(
    server_sqlite: ServerProc, tmp_path: Path
) -> None:
    server = server_sqlite
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    other = make_repo(tmp_path / "other", {".gitlab-ci.yml": CI})
    with server.client() as admin:
        victim = _add(admin, "victim", other)
        _add(admin, "mine", repo)
        _, mallory = make_user(server, "mallory", ("mine", "maintainer"))
        created = admin.post("/projects/victim/pipelines", json={"ref": "main"})
        assert created.status_code == 201  # the victim's mirror now exists in the server's home
        mirror = server.home / "mirrors" / f"{victim['id']}.git"
        assert (mirror / "HEAD").is_file()

        with server.client(mallory) as maintainer:
            for url in (str(mirror), f"file://{mirror}", str(other), f"file://{other}"):
                answer = maintainer.patch("/projects/mine", json={"repo_url": url})
                assert answer.status_code == 403, (url, answer.text)
                assert "only an admin" in answer.json()["error"]
        link = tmp_path / "innocent"
        link.symlink_to(server.home)
        for url in (
            str(mirror),
            f"file://{mirror}",
            str(link / "mirrors" / f"{victim['id']}.git"),
            f"{tmp_path}/repo/../home/mirrors/{victim['id']}.git",
            str(server.home),
        ):
            answer = admin.patch("/projects/mine", json={"repo_url": url})
            assert answer.status_code == 422, (url, answer.text)
            assert "inside the server's home" in answer.json()["error"], answer.text
        for url in (
            f"file://{mirror}?x=1",
            f"file://{str(mirror).replace('/', '%2F')}",
            "file://other-host/x",
        ):
            answer = admin.patch("/projects/mine", json={"repo_url": url})
            assert answer.status_code == 422 and "file:// URL names a local folder" in answer.json()["error"]
        assert json_of(admin.get("/projects/mine"))["repo_url"] == str(repo)

    # Without an allowed root, no local repository at all, even for an admin.
    strict = ServerProc(tmp_path / "home2", f"sqlite:///{tmp_path / 'home2' / 'aicd.db'}", poll=False)
    strict.extra_env["AICD_ALLOWED_REPO_ROOTS"] = ""
    strict.start()
    try:
        with strict.client() as admin:
            answer = admin.post("/projects", json={"name": "p", "repo_url": str(repo)})
            assert answer.status_code == 422, answer.text
            assert "--allowed-repo-root" in answer.json()["error"]
    finally:
        strict.stop(check=False)


# -- a symlinked pipeline file --------------------------------------------------------------------


def test_a_symlinked_pipeline_file_is_refused_without_showing_its_target(
    server_sqlite: ServerProc, tmp_path: Path
) -> None:
    outside = tmp_path / "server-secret.txt"
    outside.write_text("TOPSECRET-41f2 root:x:0:0:root:/root:/bin/bash\n")  # as /etc/passwd
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    (repo / ".gitlab-ci.yml").symlink_to(outside)
    commit(repo, {}, "a pipeline file that is a link")
    with server_sqlite.client() as admin:
        _add(admin, "demo", repo)
        created = admin.post("/projects/demo/pipelines", json={"ref": "main"})
        assert created.status_code == 201, created.text
        done = wait_pipeline(admin, "demo", created.json()["id"])
        assert done["status"] == "failed"
        assert "symbolic link" in str(done["error"]), done
        everything = json.dumps([done, json_of(admin.get(f"/projects/demo/pipelines/{done['id']}/jobs"))])
        assert "TOPSECRET" not in everything and "server-secret" not in everything


# -- masked values in reports ---------------------------------------------------------------------

REPORTING_CI = r"""
test:
  script:
    - T=$TOKEN
    - echo "<testsuite name=\"s\"><testcase name=\"test_$T\" classname=\"c\">" > report.xml
    - echo "<failure message=\"got $T\">$T</failure><system-out>$T</system-out>" >> report.xml
    - echo "</testcase></testsuite>" >> report.xml
    - echo "acc{token=\"$T\"} 0.5" > metrics.txt
  artifacts:
    reports:
      junit: report.xml
      metrics: metrics.txt
"""


def test_masked_values_stay_masked_in_test_reports_and_metrics(
    server_sqlite: ServerProc, tmp_path: Path
) -> None:
    secret = "masked-S3CRET-value-0123"
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": REPORTING_CI})
    with server_sqlite.client() as admin:
        _add(admin, "demo", repo)
        put = admin.put("/projects/demo/variables/TOKEN", json={"value": secret, "masked": True})
        assert put.status_code in (200, 201), put.text
        created = admin.post("/projects/demo/pipelines", json={"ref": "main"}).json()
        wait_pipeline(admin, "demo", created["id"])
        report = admin.get(f"/projects/demo/pipelines/{created['id']}/test_report")
        jobs = admin.get(f"/projects/demo/pipelines/{created['id']}/jobs")
    assert report.status_code == 200 and jobs.status_code == 200
    case = report.json()["test_suites"][0]["test_cases"][0]
    assert case["name"] == "test_[MASKED]" and "[MASKED]" in str(case["system_output"])
    assert jobs.json()[0]["metrics"] == {'acc{token="[MASKED]"}': 0.5}
    assert secret not in report.text + jobs.text


# -- credentials in repository URLs ---------------------------------------------------------------


@contextlib.contextmanager
def _dumb_http_git(root: Path, token: str) -> Iterator[str]:
    """Git's dumb HTTP protocol over `root`, as a server that takes `?private_token=` would."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def translate_path(self, path: str) -> str:
            # git appends "/info/refs&service=..." to a URL that has a query
            path = path.replace(f"?private_token={token}", "").replace("&service=", "?service=")
            return super().translate_path(path)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_credentials_in_a_repository_url_are_never_shown(server_sqlite: ServerProc, tmp_path: Path) -> None:
    token = "glpat-S3CRETtoken0123"
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": "job:\n  script: [echo $CI_REPOSITORY_URL]\n"})
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(served / "repo.git")], check=True)
    subprocess.run(["git", "update-server-info"], cwd=served / "repo.git", check=True)
    with _dumb_http_git(served, token) as base, server_sqlite.client() as admin:
        url = f"{base}/repo.git?private_token={token}"
        created = _add(admin, "demo", url)
        pipeline = admin.post("/projects/demo/pipelines", json={"ref": "main"}).json()
        wait_pipeline(admin, "demo", pipeline["id"])
        bad = admin.patch("/projects/demo", json={"repo_url": f"{base}/nothing.git?private_token={token}"})
        assert bad.status_code == 422
        wrong_user = admin.patch(
            "/projects/demo", json={"repo_url": f"http://alice:{token}@127.0.0.1:1/x.git"}
        )
        assert wrong_user.status_code == 422
        shown = [
            json.dumps(created),
            admin.get("/projects/demo").text,
            admin.get("/projects").text,
            admin.get("/audit").text,
            bad.text,
            wrong_user.text,
            admin.get(f"/projects/demo/pipelines/{pipeline['id']}").text,
        ]
        jobs = json_of(admin.get(f"/projects/demo/pipelines/{pipeline['id']}/jobs"))
        shown.append(admin.get(f"/projects/demo/jobs/{jobs[0]['id']}/log").text)
        for text in shown:
            assert token not in text, text
        assert "private_token=***" in shown[1] and "private_token=***" in shown[-1]
    assert token not in server_sqlite.log()


# -- tokens: enumeration, lifetime, what the CLI prints ---------------------------------------------


def _cli(
    server: ServerProc, *args: str, token: str | None = None, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = server.cli_env(token)
    if url is not None:
        env["AICD_SERVER"] = url
    return subprocess.run([*AICD, *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def test_tokens_cannot_be_enumerated_nor_break_the_cli(server_sqlite: ServerProc) -> None:
    server = server_sqlite
    bob_id, bob = make_user(server, "bob")
    with server.client() as admin, server.client(bob) as bob_client:
        admin_id = json_of(admin.get("/user"))["id"]
        admins_token = json_of(admin.get(f"/users/{admin_id}/tokens"))[0]["id"]
        theirs = bob_client.delete(f"/tokens/{admins_token}")
        nothing = bob_client.delete("/tokens/987654")
        assert theirs.status_code == nothing.status_code == 404
        assert theirs.json()["error"].replace(str(admins_token), "N") == nothing.json()["error"].replace(
            "987654", "N"
        )
        # A lifetime no date holds was accepted, and `aicd token list` died on it.
        for lifetime in (1e308, 10 * 366 * 86400 + 1):
            answer = admin.post(f"/users/{bob_id}/tokens", json={"name": "forever", "expires_in_s": lifetime})
            assert answer.status_code == 422, answer.text
        assert (
            admin.post(
                f"/users/{bob_id}/tokens", json={"name": "year", "expires_in_s": 365 * 86400}
            ).status_code
            == 201
        )
        # A token name that would drive the terminal.
        answer = admin.post(f"/users/{bob_id}/tokens", json={"name": "evil\x1b[2J\nname"})
        assert answer.status_code == 201
        # Non-ASCII in the token header: 401, not a crash.
        raw = httpx.get(
            f"{server.url}/api/v1/user", headers={"Authorization": "Bearer t\u00e9st".encode("latin-1")}
        )
        assert raw.status_code == 401, raw.text

    listed = _cli(server, "token", "list", "bob")
    assert listed.returncode == 0, listed.stderr
    assert "\x1b" not in listed.stdout and "evil\\x1b[2J\\x0aname" in listed.stdout
    for bad_token in (bob + "\nX-Injected: 1", "t\u00e9st-token", "a b"):
        run = _cli(server, "user", "list", token=bad_token)
        assert run.returncode != 0
        assert "Traceback" not in run.stderr and bob not in run.stderr + run.stdout
        assert "no aicd token has" in run.stderr, run.stderr
    unreachable = _cli(server, "user", "list", url="http://alice:pa55word@127.0.0.1:1")
    assert unreachable.returncode != 0 and "Traceback" not in unreachable.stderr
    assert "pa55word" not in unreachable.stderr and "cannot reach the aicd server" in unreachable.stderr
    assert "Traceback" not in server.log()


def test_the_cli_escapes_what_a_server_sends(tmp_path: Path) -> None:
    """A server (or a man in the middle) answering with escapes and newlines in an error."""

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"error": "denied\x1b]0;pwned\x07\x1b[2J"}).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AICD_")}
        env.update(AICD_SERVER=f"http://127.0.0.1:{httpd.server_address[1]}", AICD_TOKEN="abc")
        run = subprocess.run(
            [*AICD, "user", "list"], capture_output=True, text=True, env=env, timeout=60, check=False
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert run.returncode != 0 and "denied" in run.stderr
    assert "\x1b" not in run.stderr and "\x07" not in run.stderr and "\\x1b" in run.stderr
