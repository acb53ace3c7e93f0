"""`aicd deploy` in a job of the real `aicd server`: the job packs its release and sends it to
POST /projects/{project}/environments/{env}/deployments with its CI_JOB_TOKEN; the server records the
deployment from the token and its environment agent serves the release. The route refuses a job of
another project (404), a production deploy from an unprotected ref (403), archives that would write
outside their folder (422) and bodies beyond its limit (413).

The server runs its jobs as it is configured here (sandboxed where bubblewrap works); the jobs call
`"$PYTHON" -m aicd.cli.main` with PYTHON a project variable (this interpreter), and the service's
command is this interpreter too. Every environment started is stopped at the end (`aicd env stop`
against the server's home, as its operator would), and its address no longer answers.
"""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pipeline_helpers import commit, jobs_of, trigger, wait_pipeline
from serverproc import ServerProc, make_project, make_user

from aicd.deploy.archive import pack_release
from aicd_testing import AICD, clean_env, git, make_repo

LIMIT = 200_000  # the server's AICD_DEPLOY_MAX_RELEASE_BYTES here

APP = """import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from " + os.environ.get("GREETING", "?")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

CONFIG = f"""service:
  command: [{sys.executable!r}, app.py]
  port_variable: PORT
  health_path: /healthz
  readiness_timeout: 30s
  instances: 1
  stop_grace: 2s
  env:
    GREETING: shop
environments:
  staging:
    strategy: blue-green
"""

DEPLOY_CI = """deploy-staging:
  script:
    - '"$PYTHON" -m aicd.cli.main deploy . --env staging'
"""

PRODUCTION_CI = """deploy-production:
  script:
    - '"$PYTHON" -m aicd.cli.main deploy . --env production'
"""

INTRUDER_CI = """intrude:
  script:
    - printf 'not a tar' > body.bin
    - |
      curl -s -o /dev/null -w "%{http_code}\\n" -X POST -H "JOB-TOKEN: $CI_JOB_TOKEN" \\
        -H 'Content-Type: application/octet-stream' --data-binary @body.bin \\
        "$AICD_SERVER/api/v1/projects/shop/environments/staging/deployments" > code.txt
  artifacts:
    paths: [code.txt]
"""


@pytest.fixture
def deploy_server(tmp_path: Path) -> Iterator[ServerProc]:
    home = tmp_path / "home"
    server = ServerProc(
        home,
        f"sqlite:///{home / 'aicd.db'}",
        poll=False,
        # developers may deploy to non-production environments here (the default is protected refs only:
        # test_by_default_only_protected_refs_and_maintainers_deploy)
        env={"AICD_DEPLOY_MAX_RELEASE_BYTES": str(LIMIT), "AICD_DEPLOY_ANY_REF": "1"},
    )
    server.start()
    try:
        yield server
    finally:
        try:
            for env in ("staging", "production", "review"):
                _stop_environment(server, "shop", env)
        finally:
            server.stop(check=False)


def _stop_environment(server: ServerProc, scope: str, env: str) -> None:
    """`aicd env stop` on the server's host (its home, database and the project's scope)."""
    environ = {
        **clean_env(),
        "AICD_HOME": str(server.home),
        "AICD_DATABASE_URL": server.database_url,
        "AICD_ENV_SCOPE": scope,
    }
    subprocess.run(
        [*AICD, "env", "stop", env], env=environ, capture_output=True, text=True, timeout=600, check=False
    )


def _tar(entries: list[tarfile.TarInfo], data: bytes = b"x") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info in entries:
            if info.isfile():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    return info


def _wait_down(url: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
        except httpx.HTTPError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.timeout(600)
def test_a_job_deploys_its_release_through_the_api(deploy_server: ServerProc, tmp_path: Path) -> None:
    server = deploy_server
    repo = make_repo(tmp_path / "shop", {".gitlab-ci.yml": DEPLOY_CI, "app.py": APP, "aicd.yml": CONFIG})
    make_project(server, "shop", str(repo))
    make_project(server, "other", str(make_repo(tmp_path / "other", {".gitlab-ci.yml": INTRUDER_CI})))
    with server.client(timeout=60) as api:
        for project in ("shop", "other"):
            put = api.put(f"/projects/{project}/variables/PYTHON", json={"value": sys.executable})
            assert put.status_code == 200, put.text
        pipeline = trigger(api, "shop")
        done = wait_pipeline(api, "shop", pipeline["id"], timeout=300)
        job = jobs_of(api, "shop", pipeline["id"])["deploy-staging"]
        log = api.get(f"/projects/shop/jobs/{job['id']}/log").text
        assert done["status"] == "success", log
        [deployment] = api.get("/projects/shop/deployments").json()
        [environment] = api.get("/projects/shop/environments").json()
        events = api.get("/projects/shop/deployment-events").json()

        intruder = trigger(api, "other")
        assert wait_pipeline(api, "other", intruder["id"], timeout=600)["status"] == "success"
        intrude = jobs_of(api, "other", intruder["id"])["intrude"]
        code = api.get(f"/projects/other/jobs/{intrude['id']}/artifacts/code.txt").text.strip()
        assert api.get("/projects/other/deployments").json() == []

        # production from a branch that is not protected: refused before anything starts
        git(repo, "checkout", "-q", "-b", "feature")
        commit(repo, {".gitlab-ci.yml": PRODUCTION_CI}, "deploy production")
        feature = trigger(api, "shop", ref="feature")
        refused = wait_pipeline(api, "shop", feature["id"], timeout=300)
        prod_job = jobs_of(api, "shop", feature["id"])["deploy-production"]
        prod_log = api.get(f"/projects/shop/jobs/{prod_job['id']}/log").text
        after = api.get("/projects/shop/environments").json()
        audit = api.get("/projects/shop/audit").json()

    # the job printed what `aicd deploy` prints locally: the events, then the deployment
    assert "deployment #1 (" in log and "blue-green) deployed: succeeded; serving at http://" in log
    # recorded from the job's token: its pipeline, job, commit, ref and user
    head = git(repo, "rev-parse", "main")
    assert deployment["status"] == "succeeded" and deployment["environment"] == "staging"
    got = (deployment["pipeline_id"], deployment["job_id"], deployment["sha"], deployment["ref"])
    assert got == (str(pipeline["id"]), str(job["id"]), head, "main")
    assert deployment["commit_at"] is not None
    assert any(e["kind"] == "deployment.succeeded" for e in events), events
    # the service answers at the environment's address
    assert environment["name"] == "staging" and environment["status"] in ("healthy", "deploying")
    url = environment["url"]
    assert httpx.get(url, timeout=10).text == "hello from shop"
    assert ("environment.deploy", f"job:{job['id']}") in {(e["action"], e["actor"]) for e in audit}
    # another project's job: the project is not revealed
    assert code == "404"
    # a protected environment from an unprotected ref
    assert refused["status"] == "failed", prod_log
    assert "protected" in prod_log and "production" in prod_log
    assert [e["name"] for e in after] == ["staging"]

    _stop_environment(server, "shop", "staging")
    assert _wait_down(url), f"{url} still answers after `aicd env stop`"


def test_bad_archives_are_refused_and_nothing_is_written_outside(
    deploy_server: ServerProc, tmp_path: Path
) -> None:
    server = deploy_server
    make_project(server, "shop", str(make_repo(tmp_path / "shop", {"README": "x\n"})))
    _, token = make_user(server, "dev", ("shop", "developer"))
    marker = f"aicd-escape-{secrets.token_hex(4)}"
    outside = Path(tempfile.gettempdir())
    bodies = {
        "dotdot": _tar([_member(f"../{marker}-dotdot")]),
        "absolute": _tar([_member(f"{outside}/{marker}-abs")]),
        "symlink out": _tar([_member("out", tarfile.SYMTYPE, "../.."), _member(f"out/{marker}-link")]),
        "absolute symlink": _tar([_member("etc", tarfile.SYMTYPE, "/etc")]),
        "hard link out": _tar([_member("h", tarfile.LNKTYPE, f"../{marker}-hard")]),
        "device": _tar([_member("dev", tarfile.CHRTYPE)]),
        "not a tar": b"plain bytes",
    }
    answers = {}
    with server.client(token) as api:
        for what, body in bodies.items():
            response = api.post(
                "/projects/shop/environments/staging/deployments",
                content=body,
                headers={"Content-Type": "application/octet-stream"},
            )
            answers[what] = (response.status_code, response.json().get("error", ""))
        big = secrets.token_bytes(LIMIT + 1)
        declared = api.post(
            "/projects/shop/environments/staging/deployments",
            content=big,
            headers={"Content-Type": "application/octet-stream"},
        )

        def chunks() -> Iterator[bytes]:  # no Content-Length: the cap counts what arrives
            for start in range(0, len(big), 16_384):
                yield big[start : start + 16_384]

        streamed = api.post(
            "/projects/shop/environments/staging/deployments",
            content=chunks(),
            headers={"Content-Type": "application/octet-stream"},
        )
        environments = api.get("/projects/shop/environments").json()

    for what, (status, error) in answers.items():
        assert status == 422, (what, status, error)
        assert "release archive" in error, (what, error)
    assert "'..'" in answers["dotdot"][1] and "absolute path" in answers["absolute"][1]
    assert "out of the release" in answers["symlink out"][1]
    assert "special file" in answers["device"][1]
    assert (declared.status_code, streamed.status_code) == (413, 413), (declared.text, streamed.text)
    assert "AICD_DEPLOY_MAX_RELEASE_BYTES" in declared.json()["error"]
    assert not list(outside.glob(f"{marker}*")) and not list(outside.parent.glob(f"{marker}*"))
    assert not list(outside.glob("aicd-deploy-*/release")), "a refused release was left behind"
    assert environments == []  # nothing was started


def test_a_developer_deploys_without_waiting_but_not_to_production(
    deploy_server: ServerProc, tmp_path: Path
) -> None:
    """A user's deploy (not a job's): who is the user, no pipeline; `wait=false` answers once the
    rollout started; a production-tier environment needs a maintainer."""
    server = deploy_server
    make_project(server, "shop", str(make_repo(tmp_path / "shop", {"README": "x\n"})))
    _, token = make_user(server, "dev", ("shop", "developer"))
    release = tmp_path / "release"
    release.mkdir()
    (release / "app.py").write_text(APP)
    (release / "aicd.yml").write_text(CONFIG)
    archive = io.BytesIO()
    pack_release(release, release / "aicd.yml", archive)
    headers = {"Content-Type": "application/octet-stream"}
    with server.client(token, timeout=600) as api:
        denied = api.post("/projects/shop/environments/production/deployments", content=archive.getvalue(),
                          headers=headers)  # fmt: skip
        started = api.post(
            "/projects/shop/environments/review/deployments",
            content=archive.getvalue(),
            headers=headers,
            params={"wait": "false", "strategy": "recreate"},
        )
        lines = [json.loads(line) for line in started.text.splitlines() if line.strip()]
        deadline = time.monotonic() + 120
        while True:
            [deployment] = api.get("/projects/shop/deployments").json()
            if deployment["status"] != "running" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        [environment] = api.get("/projects/shop/environments").json()
        answer = httpx.get(environment["url"], timeout=10).text

    assert denied.status_code == 403 and "maintainer" in denied.json()["error"], denied.text
    assert started.status_code == 200, started.text
    assert started.headers["content-type"].startswith("application/x-ndjson")
    assert lines[-1]["ok"] is True and lines[-1]["result"]["deployment"]["environment"] == "review"
    assert deployment["status"] == "succeeded" and deployment["strategy"] == "recreate"
    assert (deployment["actor"], deployment["pipeline_id"], deployment["job_id"]) == ("dev", None, None)
    assert answer == "hello from shop"


def test_by_default_only_protected_refs_and_maintainers_deploy(tmp_path: Path) -> None:
    """A deployed service runs unsandboxed on the server's host: without AICD_DEPLOY_ANY_REF a developer
    cannot deploy even to a review environment (nothing is started), and the answer says why."""
    home = tmp_path / "home"
    server = ServerProc(home, f"sqlite:///{home / 'aicd.db'}", poll=False).start()
    try:
        make_project(server, "shop", str(make_repo(tmp_path / "shop", {"README": "x\n"})))
        _, token = make_user(server, "dev", ("shop", "developer"))
        release = tmp_path / "release"
        release.mkdir()
        (release / "app.py").write_text(APP)
        (release / "aicd.yml").write_text(CONFIG)
        archive = io.BytesIO()
        pack_release(release, release / "aicd.yml", archive)
        with server.client(token, timeout=600) as api:
            denied = api.post(
                "/projects/shop/environments/review/deployments",
                content=archive.getvalue(),
                headers={"Content-Type": "application/octet-stream"},
                params={"wait": "false", "strategy": "recreate"},
            )
            environments = api.get("/projects/shop/environments").json()
        assert denied.status_code == 403, denied.text
        assert "unsandboxed" in denied.json()["error"] and "AICD_DEPLOY_ANY_REF" in denied.json()["error"]
        assert environments == []
    finally:
        server.stop(check=False)
