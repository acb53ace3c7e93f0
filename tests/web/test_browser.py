"""The UI in a real browser: Debian's chromium (headless) driven by Playwright, against a real
`aicd server` process running real pipelines. Sign in, run a pipeline and follow its graph to
success, watch a job's log grow, play a manual job, cancel a running pipeline; a viewer sees no
button and a forged POST from their session is refused. No console error on any page.

Chromium missing is a failure with what to do, never a skip. Screenshots (desktop and 360 px
wide) go to the test's tmp folder: <pytest tmp>/.../screenshots.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_testing import DESKTOP, PHONE, Watched, launch_browser, sign_in
from web_seed import seed_environment, seed_models

from aicd_testing import git, make_repo
from server.serverproc import ServerProc, make_user

pytestmark = pytest.mark.slow

CI = """
stages: [build, test, deploy]
build:
  stage: build
  script:
    - for i in 1 2 3 4 5 6; do printf '\\033[32mtick %s\\033[0m\\n' "$i"; sleep 1; done
unit:
  stage: test
  needs: [build]
  script: [echo unit-ok]
ship:
  stage: deploy
  when: manual
  script: [echo shipped-it]
"""
SLOW_CI = """
wait:
  script: [echo waiting, sleep 300]
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_browser()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProc]:
    home = tmp_path / "home"
    proc = ServerProc(home, f"sqlite:///{home / 'aicd.db'}", poll=False, args=["--concurrency", "4"])
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(check=False)


def new_project(server: ServerProc, tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    git(repo, "checkout", "-q", "-b", "slow")
    (repo / ".gitlab-ci.yml").write_text(SLOW_CI)
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qam", "slow")
    git(repo, "checkout", "-q", "main")
    with server.client() as admin:
        response = admin.post("/projects", json={"name": "demo", "repo_url": str(repo)})
        assert response.status_code == 201, response.text
    return repo


def test_follow_a_pipeline_its_live_log_play_and_cancel(
    browser: Any, server: ServerProc, tmp_path: Path
) -> None:
    new_project(server, tmp_path)
    shots = tmp_path / "screenshots"
    watched = Watched(browser, DESKTOP, shots)
    page = watched.page
    sign_in(watched, server, server.admin_token)
    watched.shot("projects-desktop")

    page.get_by_role("link", name="demo").click()
    page.get_by_role("button", name="Run pipeline").click()
    page.wait_for_url(re.compile(r"/projects/demo/pipelines/\d+$"))
    pipeline_url = page.url
    # the job list updates live; open the running job and watch its log grow
    page.get_by_role("link", name="build", exact=True).first.click()
    page.wait_for_url(re.compile(r"/projects/demo/jobs/\d+$"))
    page.wait_for_selector("#log .line:has-text('tick 2')")
    page.wait_for_selector("#log .line:has-text('tick 6')")
    assert page.locator("#log .fg-2").first.inner_text().startswith("tick")
    page.wait_for_selector("#job-live[data-status='success']")  # the end event re-renders the job
    assert page.locator("#L1").count() == 1
    watched.shot("job-desktop")

    page.goto(pipeline_url)
    page.wait_for_selector("#pipeline-live [data-job='unit'][data-status='success']")
    assert page.locator("#pipeline-live svg .edge").count() == 1
    watched.shot("pipeline-desktop")

    page.get_by_role("button", name="Play ship").click()
    page.wait_for_url(re.compile(r"/projects/demo/jobs/\d+$"))
    page.wait_for_selector("#job-live[data-status='success']")
    page.wait_for_selector("#log .line:has-text('shipped-it')")
    page.goto(pipeline_url)
    page.wait_for_selector("#pipeline-live[data-status='success'] [data-job='ship'][data-status='success']")

    # a pipeline that would run for minutes, canceled from its page
    page.goto(f"{server.url}/projects/demo")
    page.get_by_label("Branch or tag").fill("slow")
    page.get_by_role("button", name="Run pipeline").click()
    page.wait_for_url(re.compile(r"/projects/demo/pipelines/\d+$"))
    page.wait_for_selector("#pipeline-live [data-job='wait'][data-status='running']")
    page.get_by_role("button", name="Cancel pipeline").click()
    page.wait_for_selector("#pipeline-live[data-status='canceled']")

    page.set_viewport_size(PHONE)
    for name, url in (("projects", f"{server.url}/"), ("pipeline", pipeline_url)):
        page.goto(url)
        page.wait_for_selector("main h1")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"] + 1, f"{name} page is {width} px wide at 360 px"
        watched.shot(f"{name}-phone")
    watched.close()


def test_a_viewer_sees_no_buttons_and_cannot_forge_a_post(
    browser: Any, server: ServerProc, tmp_path: Path
) -> None:
    new_project(server, tmp_path)
    with server.client() as admin:
        pipeline = admin.post("/projects/demo/pipelines", json={"ref": "main"}).json()
    _, token = make_user(server, "watcher", ("demo", "viewer"))
    watched = Watched(browser, PHONE, tmp_path / "screenshots")
    page = watched.page
    sign_in(watched, server, token)
    page.goto(f"{server.url}/projects/demo/pipelines/{pipeline['id']}")
    page.wait_for_selector("#pipeline-live [data-job='ship'][data-status='manual']")
    watched.shot("pipeline-viewer-phone")
    assert page.locator("main button").count() == 0
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    assert csrf
    with server.client() as admin:
        jobs = {j["name"]: j for j in admin.get(f"/projects/demo/pipelines/{pipeline['id']}/jobs").json()}
    forged = page.request.post(
        f"{server.url}/projects/demo/jobs/{jobs['ship']['id']}/play", form={"csrf": csrf}, max_redirects=0
    )
    assert forged.status == 403
    with server.client() as admin:
        assert admin.get(f"/projects/demo/jobs/{jobs['ship']['id']}").json()["status"] == "manual"
    watched.close()
    assert httpx.get(f"{server.url}/static/vendor/htmx.min.js").status_code == 200


def test_models_environment_reliability_and_admin_pages(
    browser: Any, server: ServerProc, tmp_path: Path
) -> None:
    """The delivery pages (filled through the stores, as the deploy agent and the registry fill
    them) at both widths: what they show, no console error, axe, no sideways scrolling."""
    new_project(server, tmp_path)
    with server.client() as admin:
        project = admin.get("/projects/demo").json()
        pipeline = admin.post("/projects/demo/pipelines", json={"ref": "main"}).json()
    seed_models(server.database_url, "demo", project["id"], pipeline["id"], 0, pipeline["sha"])
    seed_environment(server.database_url, "demo", tmp_path)
    watched = Watched(browser, DESKTOP, tmp_path / "screenshots")
    page = watched.page
    sign_in(watched, server, server.admin_token)
    pages = (
        ("models", "/models", "h1:has-text('Models')"),
        ("model", "/models/iris", "#compare"),
        ("environment", "/projects/demo/environments/production", "#judge"),
        ("reliability", "/reliability", "svg.timeline"),
        ("admin", "/admin", "#audit-log"),
    )
    for viewport, suffix in ((DESKTOP, "desktop"), (PHONE, "phone")):
        page.set_viewport_size(viewport)
        for name, path, selector in pages:
            page.goto(f"{server.url}{path}")
            page.wait_for_selector(selector)
            if viewport is PHONE:
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= PHONE["width"] + 1, f"{name} page is {width} px wide at 360 px"
            watched.shot(f"{name}-{suffix}")
    page.goto(f"{server.url}/projects/demo/environments/production")
    assert page.locator("#promote").count() == 1 and page.locator("svg.pairs rect.bar").count() == 10
    watched.close()
