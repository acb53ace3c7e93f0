"""The UI in a real browser: Debian's chromium (headless) driven by Playwright, against a real
`aicd server` process running real pipelines. Sign in, run a pipeline and follow its graph to
success, watch a job's log grow, play a manual job, cancel a running pipeline; a viewer sees no
button and a forged POST from their session is refused. No console error on any page.

Chromium missing is a failure with what to do, never a skip. Screenshots (desktop and 360 px
wide) go to the test's tmp folder: <pytest tmp>/.../screenshots.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from web_seed import seed_environment, seed_models

from aicd_testing import git, make_repo
from server.serverproc import ServerProc, make_user

pytestmark = pytest.mark.slow
try:
    from axe_playwright_python.sync_playwright import Axe
    from playwright import sync_api as playwright_api
except ImportError:  # a failure with what to do (in the fixture), not a skip
    playwright_api = None  # type: ignore[assignment]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 90_000  # generous: the machine may be busy
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 360, "height": 740}

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


def chromium_path() -> str:
    found = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if not found:
        pytest.fail(
            "chromium is not installed: the browser tests drive Debian's chromium. "
            "Install it with `apt-get install -y chromium` (.ci/run does) and run the tests again."
        )
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if playwright_api is None:
        pytest.fail("Playwright is not installed: pip install -e '.[dev]' (it brings pytest-playwright)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProc]:
    home = tmp_path / "home"
    proc = ServerProc(home, f"sqlite:///{home / 'aicd.db'}", poll=False, args=["--concurrency", "4"])
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(check=False)


class Watched:
    """A page whose console errors and uncaught exceptions are collected (and must stay none)."""

    def __init__(self, browser: Any, viewport: dict[str, int], shots: Path) -> None:
        self.context = browser.new_context(viewport=viewport)
        self.context.set_default_timeout(WAIT_MS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.shots = shots
        shots.mkdir(parents=True, exist_ok=True)

    def shot(self, name: str) -> None:
        """A screenshot, and axe-core's accessibility check of the page (no serious violation)."""
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)
        results = Axe().run(self.page)
        serious = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"]
            if v.get("impact") in ("serious", "critical")
        ]
        assert serious == [], f"{name}: accessibility violations: {serious}"

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], f"console errors: {self.errors}"


def sign_in(watched: Watched, server: ServerProc, token: str) -> None:
    page = watched.page
    page.goto(f"{server.url}/")
    page.wait_for_url(re.compile(r"/signin"))
    watched.shot("signin")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("h1:has-text('Projects')")


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
