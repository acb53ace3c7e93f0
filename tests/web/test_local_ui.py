"""`aicd ui`: the UI of a local home that `aicd run` and `aicd model` wrote (real runs, real registry),
through the real app in-process; the launch key, the Host check, read-only pipelines; the command's
own errors and address (a real process)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aicd.server.app import create_app
from aicd.server.settings import ServerSettings
from aicd.store.db import connect
from aicd.store.projects_repo import ProjectStore, local_name
from aicd.web.local import OPEN_PATH, LocalUI, new_launch
from aicd_testing import AICD, aicd, clean_env, make_repo

CI = """
stages: [build, test]
build:
  stage: build
  script:
    - printf 'built \\033[32mgreen\\033[0m\\n'
unit:
  stage: test
  needs: [build]
  script: [echo unit-ok]
"""
PORT = 8090


@pytest.fixture(scope="module")
def local_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with one pipeline run by `aicd run` and a model registered by `aicd model`."""
    repo = make_repo(tmp_path_factory.mktemp("local") / "shop", {".gitlab-ci.yml": CI})
    ran = aicd(repo, "run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    (repo / "model.bin").write_bytes(b"weights")
    (repo / "metrics.json").write_text(json.dumps({"accuracy": 0.91}))
    made = aicd(repo, "model", "register", "churn", "model.bin", "--metrics", "metrics.json")
    assert made.returncode == 0, made.stdout + made.stderr
    return repo / ".aicd"


class Local:
    def __init__(self, client: TestClient, launch: LocalUI, key: str) -> None:
        self.client = client
        self.launch = launch
        self.key = key

    def open(self) -> None:
        response = self.client.get(f"{OPEN_PATH}?key={self.key}", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/"
        assert "aicd_session" in response.cookies or "aicd_session" in self.client.cookies


@pytest.fixture
def local(local_home: Path) -> Iterator[Local]:
    url = f"sqlite:///{local_home / 'aicd.db'}"
    settings = ServerSettings.load({}, home=local_home, database_url=url, poll=False, environments=False)
    settings = dataclasses.replace(settings, local_ui=True, port=PORT)
    launch, key = new_launch(PORT)
    with TestClient(create_app(settings, launch), base_url=f"http://127.0.0.1:{PORT}") as client:
        yield Local(client, launch, key)


def test_the_local_runs_pipeline_jobs_log_and_model_are_shown(local: Local) -> None:
    local.open()
    client = local.client
    home = client.get("/")
    assert home.status_code == 200 and 'href="/projects/shop"' in home.text
    project = client.get("/projects/shop")
    assert project.status_code == 200
    assert re.search(r"<li><code>main</code> at <code>[0-9a-f]{8}</code> — <a href=", project.text)
    pipelines = re.findall(r"/projects/shop/pipelines/(\d+)", project.text)
    assert pipelines, project.text
    pipeline = client.get(f"/projects/shop/pipelines/{pipelines[0]}")
    assert pipeline.status_code == 200 and "success" in pipeline.text
    assert "build" in pipeline.text and "unit" in pipeline.text
    jobs = re.findall(r"/projects/shop/jobs/(\d+)", pipeline.text)
    logs = [client.get(f"/projects/shop/jobs/{j}").text for j in sorted(set(jobs))]
    assert any('built <span class="fg-2">green</span>' in text for text in logs)
    models = client.get("/models")
    assert models.status_code == 200 and "churn" in models.text
    model = client.get("/models/churn")
    assert model.status_code == 200 and "accuracy" in model.text and "0.91" in model.text
    assert client.get("/reliability").status_code == 200


def test_pipelines_are_read_only_and_the_api_and_admin_are_not_served(local: Local) -> None:
    local.open()
    client = local.client
    project = client.get("/projects/shop").text
    pipeline_id = re.findall(r"/projects/shop/pipelines/(\d+)", project)[0]
    page = client.get(f"/projects/shop/pipelines/{pipeline_id}").text
    assert "Run pipeline" not in project and ">Retry<" not in page and 'href="/admin"' not in page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    for path in ("/projects/shop/pipelines", f"/projects/shop/pipelines/{pipeline_id}/retry"):
        refused = client.post(path, data={"csrf": csrf.group(1)}, follow_redirects=False)
        assert refused.status_code == 403 and "aicd run" in refused.text
    for path in ("/api/v1/projects", "/admin", "/metrics"):
        assert client.get(path).status_code == 404
    signout = client.post("/signout", data={"csrf": csrf.group(1)}, follow_redirects=False)
    assert signout.status_code == 303
    after = client.get("/", follow_redirects=False)
    assert after.status_code == 401 and "aicd ui" in after.text


def test_the_launch_key_and_the_host_are_checked(local: Local) -> None:
    client = local.client
    anonymous = client.get("/", follow_redirects=False)
    assert anonymous.status_code == 401 and "aicd ui" in anonymous.text  # no sign-in form to try tokens on
    assert client.get("/signin").status_code == 401
    for wrong in ("", "?key=", f"?key={local.key[:-1]}", f"?key={local.key}x"):
        refused = client.get(f"{OPEN_PATH}{wrong}", follow_redirects=False)
        assert refused.status_code == 403 and "aicd_session" not in refused.cookies
    local.open()
    assert client.get("/").status_code == 200
    # a DNS-rebinding page's requests name its own domain: refused even with the session cookie
    rebinding = (f"evil.example:{PORT}", f"localhost.evil.example:{PORT}")
    for host in (*rebinding, "127.0.0.1", f"127.0.0.1:{PORT + 1}"):
        rebound = client.get("/", headers={"host": host})
        assert rebound.status_code == 421, host
    for host in (f"localhost:{PORT}", f"127.0.0.1:{PORT}", f"[::1]:{PORT}"):
        assert client.get("/", headers={"host": host}).status_code == 200, host


def test_the_store_names_local_projects_only_when_asked(local_home: Path, tmp_path: Path) -> None:
    database = connect(f"sqlite:///{local_home / 'aicd.db'}")
    try:
        assert ProjectStore(database).list() == []  # the server's view: no local rows
        [shop] = ProjectStore(database, local=True).list()
        assert shop.local and shop.name == "shop" and shop.scope == "" and shop.key.endswith("/shop")
        assert ProjectStore(database, local=True).get("shop") == shop
        assert ProjectStore(database, local=True).get(shop.id) == shop
    finally:
        database.dispose()
    assert local_name("/a/shop", {"shop"}) == "shop-2"
    assert local_name("/a/shop", {"shop", "shop-2"}) == "shop-3"
    assert local_name("/", set()) == "project"


def test_aicd_ui_without_a_home_says_what_to_do(tmp_path: Path) -> None:
    proc = aicd(tmp_path, "ui", "--port", "0", timeout=60)
    assert proc.returncode != 0
    assert "no aicd history" in proc.stderr and "aicd run" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_aicd_ui_prints_an_address_that_signs_in(local_home: Path) -> None:
    """The real command: it listens on 127.0.0.1, prints the address with the key, serves it."""
    import httpx

    proc = subprocess.Popen(
        [*AICD, "ui", "--port", "0"],
        cwd=local_home.parent,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        url = ""
        lines = []
        for line in proc.stderr:  # blocks until printed; the process ends on a failure (EOF)
            lines.append(line)
            if line.startswith("open http://"):
                url = line.split()[1]
                break
        assert url.startswith("http://127.0.0.1:") and f"{OPEN_PATH}?key=" in url, "".join(lines)
        with httpx.Client(timeout=60) as client:
            opened = client.get(url, follow_redirects=True)
            assert opened.status_code == 200 and 'href="/projects/shop"' in opened.text
            base = url.split(OPEN_PATH)[0]
            assert httpx.get(f"{base}/", timeout=60).status_code == 401  # another browser: no key
    finally:
        proc.terminate()
        proc.wait(timeout=60)


SLOW_CI = """
tick:
  script:
    - for i in 1 2 3 4 5 6; do echo "tick $i"; sleep 1; done
"""


def test_a_local_run_in_progress_is_followed_live(tmp_path: Path) -> None:
    """`aicd run` in one terminal, `aicd ui` in the browser: the job's log arrives as it is printed
    (the UI follows the run while its `aicd run` process holds the run's owner lock)."""
    repo = make_repo(tmp_path / "slow", {".gitlab-ci.yml": SLOW_CI})
    run = subprocess.Popen(
        [*AICD, "run"], cwd=repo, env=clean_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        home = repo / ".aicd"
        deadline = time.monotonic() + 120
        while not (home / "running" / "1").is_file():  # the run is recorded and owned
            assert run.poll() is None and time.monotonic() < deadline, "aicd run did not start its pipeline"
            time.sleep(0.05)
        url = f"sqlite:///{home / 'aicd.db'}"
        settings = ServerSettings.load({}, home=home, database_url=url, poll=False, environments=False)
        launch, key = new_launch(PORT)
        app = create_app(dataclasses.replace(settings, local_ui=True, port=PORT), launch)
        with TestClient(app, base_url=f"http://127.0.0.1:{PORT}") as client:
            client.get(f"{OPEN_PATH}?key={key}")
            assert app.state.aicd.dispatcher.is_active(1)
            while "/projects/slow/jobs/" not in (page := client.get("/projects/slow/pipelines/1").text):
                assert time.monotonic() < deadline, "the job was not recorded"
                time.sleep(0.05)
            assert 'hx-trigger="every 2s"' in page  # the pipeline page polls while it runs
            job = re.findall(r"/projects/slow/jobs/(\d+)", page)[0]
            seen: list[str] = []
            with client.stream("GET", f"/projects/slow/jobs/{job}/log/events") as events:
                for line in events.iter_lines():
                    seen.append(line)
                    if line.startswith("event: end"):
                        break
            text = "\n".join(seen)
            assert "tick 1" in text and "tick 6" in text and "event: end" in text, text
            assert text.index("tick 6") < text.index("event: end")
        assert run.wait(timeout=600) == 0
        assert not app.state.aicd.dispatcher.is_active(1)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def test_a_local_canary_is_promoted_from_aicd_ui(tmp_path: Path) -> None:
    """`aicd deploy` on this machine (no server: the home's scope ""), then Promote in `aicd ui`:
    the button reaches the local environment's agent, as `aicd promote` would."""
    pytest.importorskip("sklearn", reason="the iris example needs scikit-learn: pip install -e '.[examples]'")
    pytest.importorskip("flask", reason="the iris example needs flask: pip install -e '.[examples]'")
    from deploy.rollout_testing import make_release, trained_model

    repo = make_repo(tmp_path / "shop", {".gitlab-ci.yml": CI})
    assert aicd(repo, "run").returncode == 0
    home = repo / ".aicd"
    env = {**clean_env(), "AICD_HOME": str(home)}
    steps = [{"set_weight": 20}, {"pause": {}}]
    paused = {"prod": {"strategy": "canary", "steps": steps, "rollback_window": "60s"}}
    model = trained_model(tmp_path / "iris")
    try:
        for name in ("v1", "v2"):
            release = make_release(tmp_path, name, model, environments=paused)
            done = subprocess.run(
                [*AICD, "deploy", ".", "--env", "prod"], cwd=release, env=env, capture_output=True, text=True,
                timeout=240,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
        url = f"sqlite:///{home / 'aicd.db'}"
        settings = ServerSettings.load({}, home=home, database_url=url, poll=False, environments=False)
        launch, key = new_launch(PORT)
        app = create_app(dataclasses.replace(settings, local_ui=True, port=PORT), launch)
        with TestClient(app, base_url=f"http://127.0.0.1:{PORT}") as client:
            client.get(f"{OPEN_PATH}?key={key}")
            assert 'href="/projects/shop/environments/prod"' in client.get("/projects/shop").text
            page = client.get("/projects/shop/environments/prod").text
            assert 'data-revision="r2" data-weight="20"' in page and 'id="promote"' in page
            csrf = re.search(r'name="csrf" value="([^"]+)"', page)
            assert csrf is not None
            base = "/projects/shop/environments/prod"
            promoted = client.post(f"{base}/promote", data={"csrf": csrf.group(1)}, follow_redirects=False)
            assert promoted.status_code == 303, promoted.text
            page = client.get("/projects/shop/environments/prod").text
            assert 'data-stable="r2" data-canary=""' in page
            assert 'data-revision="r2" data-weight="100"' in page
        history = subprocess.run(
            [*AICD, "env", "history", "prod", "--json"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        last = json.loads(history.stdout)[0]
        assert (last["revision"], last["status"]) == ("r2", "succeeded"), last
    finally:
        stop = [*AICD, "env", "stop", "prod"]
        subprocess.run(stop, cwd=tmp_path, env=env, capture_output=True, timeout=600)
