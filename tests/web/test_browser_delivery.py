"""The delivery pages in a real browser (Debian's chromium through Playwright), on real rollouts of
the example iris service: one real `aicd server` for the module, its environments deployed by the
real `aicd deploy` as a server project's deploy job runs it (the server's home, AICD_ENV_SCOPE =
the project; tests/web/test_env_actions.py does the same), real traffic from the demo's load
generator. Watch a canary's weights change live and promote it; see a bad canary rolled back with
its reason; compare two model versions registered by the real `aicd model`; and `aicd ui` on a
local home showing a local run's pipeline. Screenshots at desktop and 360 px in pytest's tmp
folder; no console error; axe-core finds no serious violation.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_testing import DESKTOP, PHONE, Watched, launch_browser, sign_in

from aicd_testing import AICD, aicd, clean_env, make_repo
from deploy.rollout_testing import Load, make_release, trained_model
from server.serverproc import ServerProc

pytest.importorskip("sklearn", reason="the iris example needs scikit-learn: pip install -e '.[examples]'")
pytest.importorskip("flask", reason="the iris example needs flask: pip install -e '.[examples]'")
pytestmark = pytest.mark.slow

PROJECT = "shop"
# promoted by hand at each pause: the weights move 20 -> 60 -> 100 when someone promotes
STEPPED = {
    "strategy": "canary",
    "steps": [{"set_weight": 20}, {"pause": {}}, {"set_weight": 60}, {"pause": {}}],
}
# judged on live traffic, every second, for 8 s at 50 %: a faulty canary is rolled back on its own
GUARDED = {
    "strategy": "canary",
    "steps": [{"set_weight": 50}, {"pause": "8s"}],
    "analysis_interval": "1s",
    "rollback_window": "1s",
}
CI = """
stages: [build, test]
build:
  stage: build
  script: [echo built]
unit:
  stage: test
  needs: [build]
  script: [echo unit-ok]
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_browser()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("delivery")


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[ServerProc]:
    home = folder / "home"
    proc = ServerProc(home, f"sqlite:///{home / 'aicd.db'}", poll=False, args=["--concurrency", "2"])
    proc.start()
    try:
        repo = make_repo(folder / "repo", {".gitlab-ci.yml": CI})
        with proc.client() as admin:
            response = admin.post("/projects", json={"name": PROJECT, "repo_url": str(repo)})
            assert response.status_code == 201, response.text
        yield proc
    finally:
        for env in ("stepped", "guarded"):
            job_cli(proc, folder, "env", "stop", env)
        proc.stop(check=False)


@pytest.fixture(scope="module")
def model(folder: Path) -> Path:
    return trained_model(folder / "iris")


def job_cli(server: ServerProc, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `aicd` as an unsandboxed deploy job of the project runs it (the server's home)."""
    env = {
        **clean_env(),
        "AICD_HOME": str(server.home),
        "AICD_DATABASE_URL": server.database_url,
        "AICD_ENV_SCOPE": PROJECT,
    }
    return subprocess.run([*AICD, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def deploy(server: ServerProc, release: Path, env: str) -> subprocess.CompletedProcess[str]:
    return job_cli(server, release, "deploy", ".", "--env", env)


def weight(page: Any, revision: str) -> str:
    return str(page.locator(f"#env-live [data-revision='{revision}']").get_attribute("data-weight"))


def test_watch_a_canarys_weights_change_and_promote_it(
    browser: Any, server: ServerProc, folder: Path, model: Path
) -> None:
    envs = {"stepped": STEPPED}
    for name in ("v1", "v2"):  # v1: the first deploy serves at once; v2: a canary, paused at 20 %
        done = deploy(server, make_release(folder, f"stepped-{name}", model, environments=envs), "stepped")
        assert done.returncode == 0, done.stdout + done.stderr
    watched = Watched(browser, DESKTOP, folder / "screenshots")
    page = watched.page
    sign_in(watched, server, server.admin_token)
    page.goto(f"{server.url}/projects/{PROJECT}/environments/stepped")
    page.wait_for_selector("#env-live[data-canary='r2'] [data-revision='r2'][data-weight='20']")
    assert weight(page, "r1") == "80"
    assert page.locator("#env-live li[aria-current='step']").inner_text().startswith("pause until promoted")
    watched.shot("environment-canary-desktop")

    # someone promotes from a shell: the open page follows the weights without a reload
    page.evaluate("window.notReloaded = true")
    done = job_cli(server, folder, "promote", "stepped")
    assert done.returncode == 0, done.stdout + done.stderr
    page.wait_for_selector("#env-live [data-revision='r2'][data-weight='60']")
    assert weight(page, "r1") == "40" and page.evaluate("window.notReloaded") is True

    page.get_by_role("button", name="Promote", exact=True).click()  # the last pause: r2 takes it all
    page.wait_for_selector(
        "#env-live[data-stable='r2'][data-canary=''] [data-revision='r2'][data-weight='100']"
    )
    history = page.locator("table:has(th:has-text('Reason')) tbody tr").first.inner_text()
    assert "r2" in history and "succeeded" in history and "canary" in history, history
    page.set_viewport_size(PHONE)
    page.reload()
    page.wait_for_selector("#env-live")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    watched.shot("environment-promoted-phone")
    watched.close()
    with server.client() as admin:
        audit = [(e["action"], e["actor"]) for e in admin.get(f"/projects/{PROJECT}/audit").json()]
    assert ("environment.promote", "admin") in audit


def test_a_bad_canary_is_rolled_back_and_the_page_says_why(
    browser: Any, server: ServerProc, folder: Path, model: Path
) -> None:
    envs = {"guarded": GUARDED}
    done = deploy(server, make_release(folder, "guarded-v1", model, environments=envs), "guarded")
    assert done.returncode == 0, done.stdout + done.stderr
    with server.client() as admin:
        [env] = [e for e in admin.get(f"/projects/{PROJECT}/environments").json() if e["name"] == "guarded"]
    load = Load(env["url"], workers=2, pause=0.01).start()
    try:
        faulty = make_release(
            folder, "guarded-bad", model, environments=envs, service_env={"IRIS_FAULT_RATE": "0.5"}
        )
        done = deploy(server, faulty, "guarded")
    finally:
        load.stop()
    assert done.returncode == 1 and "rolled back" in done.stdout + done.stderr, done.stdout + done.stderr
    with server.client() as admin:
        last = admin.get(f"/projects/{PROJECT}/deployments", params={"environment": "guarded"}).json()[0]
    assert (last["revision"], last["status"]) == ("r2", "rolled_back") and last["reason"]

    watched = Watched(browser, DESKTOP, folder / "screenshots")
    page = watched.page
    sign_in(watched, server, server.admin_token)
    page.goto(f"{server.url}/projects/{PROJECT}/environments/guarded")
    page.wait_for_selector(
        "#env-live[data-stable='r1'][data-canary=''] [data-revision='r1'][data-weight='100']"
    )
    row = page.locator("table:has(th:has-text('Reason')) tbody tr").first.inner_text()
    assert "r2" in row and "rolled back" in row.replace("_", " ") and last["reason"][:40] in row, row
    assert page.locator("#rollback").count() == 1 and page.locator("#promote").count() == 0
    watched.shot("environment-rolled-back-desktop")
    page.set_viewport_size(PHONE)
    page.reload()
    page.wait_for_selector("#env-live")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    watched.shot("environment-rolled-back-phone")
    watched.close()


def test_compare_two_model_versions(browser: Any, server: ServerProc, folder: Path, model: Path) -> None:
    work = folder / "models"
    work.mkdir()
    for number, accuracy in ((1, 0.91), (2, 0.95), (3, 0.89)):
        (work / f"m{number}.json").write_text(json.dumps({"accuracy": accuracy, "f1": accuracy - 0.02}))
        done = job_cli(server, work, "model", "register", "iris", str(model), "--metrics", f"m{number}.json")
        assert done.returncode == 0, done.stdout + done.stderr
    done = job_cli(server, work, "model", "alias", "iris", "production", "1")
    assert done.returncode == 0, done.stdout + done.stderr

    watched = Watched(browser, DESKTOP, folder / "screenshots")
    page = watched.page
    sign_in(watched, server, server.admin_token)
    page.goto(f"{server.url}/models")
    page.get_by_role("link", name="iris", exact=True).click()
    page.wait_for_selector("#compare")
    # by default the newest (v3) against the one in production (v1)
    assert page.locator("#cmp-a").input_value() == "3" and page.locator("#cmp-b").input_value() == "1"
    accuracy = page.locator("#compare tr:has(th:has-text('accuracy'))").inner_text().split()
    assert accuracy[1:] == ["0.89", "0.91", "-0.02"], accuracy
    page.locator("#cmp-a").select_option("2")
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url(re.compile(r"[?&]a=2"))
    accuracy = page.locator("#compare tr:has(th:has-text('accuracy'))").inner_text().split()
    assert accuracy[1:] == ["0.95", "0.91", "+0.04"], accuracy
    watched.shot("model-compare-desktop")
    page.set_viewport_size(PHONE)
    page.reload()
    page.wait_for_selector("#compare")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    watched.shot("model-compare-phone")
    watched.close()


def test_aicd_ui_shows_a_local_runs_pipeline(browser: Any, folder: Path) -> None:
    repo = make_repo(folder / "local" / "shop", {".gitlab-ci.yml": CI})
    ran = aicd(repo, "run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    proc = subprocess.Popen(
        [*AICD, "ui", "--port", "0"],
        cwd=repo,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        printed = []
        for line in proc.stderr:  # until it prints the address (EOF: it ended, the lines say why)
            printed.append(line)
            if line.startswith("open http://"):
                break
        url = printed[-1].split()[1] if printed and printed[-1].startswith("open ") else ""
        assert url, "".join(printed)
        watched = Watched(browser, DESKTOP, folder / "screenshots")
        page = watched.page
        page.goto(url)
        page.wait_for_selector("h1:has-text('Projects')")
        watched.shot("local-projects-desktop")
        page.get_by_role("link", name="shop", exact=True).click()
        page.locator("a[href*='/pipelines/']").first.click()
        page.wait_for_selector(
            "#pipeline-live[data-status='success'] [data-job='unit'][data-status='success']"
        )
        assert page.locator("#pipeline-live svg .edge").count() == 1
        assert page.locator("main button").count() == 0  # a local run is `aicd run`'s: no button
        watched.shot("local-pipeline-desktop")
        page.get_by_role("link", name="build", exact=True).first.click()
        page.wait_for_selector("#log .line:has-text('built')")
        page.set_viewport_size(PHONE)
        page.reload()
        page.wait_for_selector("#log")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
        watched.shot("local-job-phone")
        watched.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
