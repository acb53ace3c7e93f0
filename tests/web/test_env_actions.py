"""Promote and roll back from the environment page, on a real rollout: the real `aicd deploy`
(as a server project's deploy job runs it: the server's home, AICD_ENV_SCOPE = the project)
starts the agent and a paused canary of the iris service; the page's buttons reach that agent."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import UI, csrf_of

from aicd_testing import AICD, clean_env
from deploy.rollout_testing import make_release, trained_model

pytest.importorskip("sklearn", reason="the iris example needs scikit-learn: pip install -e '.[examples]'")
pytest.importorskip("flask", reason="the iris example needs flask: pip install -e '.[examples]'")
pytestmark = pytest.mark.slow

PAUSED_CANARY = {
    "prod": {
        "strategy": "canary",
        "steps": [{"set_weight": 20}, {"pause": {}}],
        "analysis_interval": "1s",
        "rollback_window": "60s",
    }
}


def aicd(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**clean_env(), "AICD_HOME": str(home), "AICD_ENV_SCOPE": "demo"}
    return subprocess.run([*AICD, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def deployed(ui: UI, tmp_path: Path) -> Iterator[None]:
    ui.project(tmp_path, "demo", "job:\n  script: [echo hi]\n")
    model = trained_model(tmp_path / "iris")
    for name in ("v1", "v2"):
        release = make_release(tmp_path, name, model, environments=PAUSED_CANARY)
        done = aicd(ui.home, release, "deploy", ".", "--env", "prod")
        assert done.returncode == 0, done.stdout + done.stderr
    try:
        yield
    finally:
        aicd(ui.home, tmp_path, "env", "stop", "prod")


def test_promote_then_roll_back_from_the_page(ui: UI, deployed: None) -> None:
    viewer = ui.browser(ui.user("watcher", "demo", "viewer"))
    page = viewer.get("/projects/demo/environments/prod")
    text = re.sub(r"\s+", " ", page.text)
    assert '<li class="step-current" aria-current="step">pause until promoted' in text
    assert "<code>r2</code> (canary): <strong>20%</strong>" in text
    refused = viewer.post("/projects/demo/environments/prod/promote", data={"csrf": csrf_of(page.text)})
    assert refused.status_code == 403
    assert ui.api("GET", "/projects/demo/environments")[0]["canary_revision"] == "r2"

    person = ui.browser(ui.user("dev", "demo", "developer"))
    page = person.get("/projects/demo/environments/prod")
    promoted = person.post("/projects/demo/environments/prod/promote", data={"csrf": csrf_of(page.text)})
    assert promoted.status_code == 303, promoted.text
    [env] = ui.api("GET", "/projects/demo/environments")
    assert (env["stable_revision"], env["canary_revision"], env["weights"]["r2"]) == ("r2", None, 100)

    page = person.get("/projects/demo/environments/prod")
    assert 'id="rollback"' in page.text and 'id="promote"' not in page.text
    rolled = person.post(
        "/projects/demo/environments/prod/rollback", data={"csrf": csrf_of(page.text), "to": ""}
    )
    assert rolled.status_code == 303, rolled.text
    history = ui.api("GET", "/projects/demo/deployments")
    got = [(d["revision"], d["strategy"], d["status"], d["actor"]) for d in history[:2]]
    assert got[0] == ("r1", "rollback", "succeeded", "dev"), history[:2]
    assert got[1][:3] == ("r2", "canary", "rolled_back"), history[:2]
    audit = [(e["action"], e["actor"]) for e in ui.api("GET", "/projects/demo/audit")]
    assert ("environment.promote", "dev") in audit and ("environment.rollback", "dev") in audit
    assert "Deployment #" in person.get("/projects/demo/environments/prod").text
