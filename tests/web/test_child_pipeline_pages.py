"""Child pipelines on the pipeline pages (issue 13/14): a real server app with a trigger job that
includes a local child file, and `aicd ui` over a local home where `aicd run` ran the same pipeline.

The pages show the links the API gives (parent.json / children.json): the trigger job's node and
row lead to its child with the child's status, a list of the children, the child's parent."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from conftest import UI
from fastapi.testclient import TestClient

from aicd.server.app import create_app
from aicd.server.settings import ServerSettings
from aicd.web.local import OPEN_PATH, new_launch
from aicd_testing import aicd, make_repo

TRIGGER = "<i>ship&go</i>"  # a job name the pages must escape
PARENT = f"""
stages: [build, deploy]
build:
  stage: build
  script: [echo built]
"{TRIGGER}":
  stage: deploy
  trigger:
    include: ci/child.yml
    strategy: depend
loose:
  stage: deploy
  trigger:
    include: ci/bad.yml
"""
CHILD = """
one:
  script: [echo child-one]
"""
BAD = """
breaks:
  script: [exit 3]
"""
ESCAPED = "&lt;i&gt;ship&amp;go&lt;/i&gt;"


def _assert_parent_page(html: str, base: str, child_id: int, trigger_id: int) -> None:
    assert TRIGGER not in html and ESCAPED in html  # escaped wherever it is shown
    # the trigger job's graph node leads to its child, with the child's status
    node = re.search(
        rf'<a href="([^"]+)" class="node trigger s-success" data-job="{ESCAPED}"[^>]*data-child="(\d+)"', html
    )
    assert node, html
    assert node.group(1) == f"{base}/pipelines/{child_id}" and int(node.group(2)) == child_id
    assert f'data-child="{child_id}" data-child-status="success"' in html
    assert "<title>&lt;i&gt;ship&amp;go&lt;/i&gt;: success; child pipeline #" in html
    assert ">✓ ↳✓</text>" in html  # the job's status and its child's, as marks (not colour alone)
    # its row in the jobs table too, and the list of child pipelines under the graph
    assert f'<a href="{base}/pipelines/{child_id}" class="child-link">' in html
    assert "<h2>Child pipelines</h2>" in html
    row = re.search(rf'<tr data-child="{child_id}">(.*?)</tr>', html, re.S)
    assert row, html
    assert 'class="badge s-success">success<' in row.group(1)
    assert f'<a href="{base}/jobs/{trigger_id}">{ESCAPED}</a>' in row.group(1)
    assert "Parent pipeline" not in html  # a pipeline no trigger job made


def _assert_failed_child(html: str, base: str, child_id: int) -> None:
    """Without `strategy: depend` the trigger job succeeds: the child's own failure is shown beside."""
    assert (
        f'data-job="loose" data-status="success" data-child="{child_id}" data-child-status="failed"' in html
    )
    assert ">✓ ↳✗</text>" in html
    link = f'<a href="{base}/pipelines/{child_id}" class="child-link">child pipeline #'
    assert re.search(re.escape(link) + r'\d+</a> <span class="badge s-failed">failed</span>', html), html
    row = re.search(rf'<tr data-child="{child_id}">(.*?)</tr>', html, re.S)
    assert row and 'class="badge s-failed">failed<' in row.group(1) and ">loose</a>" in row.group(1)


def _assert_child_page(html: str, base: str, parent_id: int, trigger_id: int) -> None:
    parent = re.search(r'<dd id="parent-pipeline">(.*?)</dd>', html, re.S)
    assert parent, html
    assert f'<a href="{base}/pipelines/{parent_id}">' in parent.group(1)
    assert f'<a href="{base}/jobs/{trigger_id}">{ESCAPED}</a>' in parent.group(1)
    assert 'class="badge s-success">success<' in parent.group(1)
    assert "Child pipelines" not in html and TRIGGER not in html


def test_server_pages_link_trigger_job_child_and_parent(ui: UI, tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo-demo", {".gitlab-ci.yml": PARENT, "ci/child.yml": CHILD, "ci/bad.yml": BAD}
    )
    ui.api("POST", "/projects", json={"name": "demo", "repo_url": str(repo)})
    pid = ui.run("demo")
    assert ui.wait("demo", pid, timeout=600) == "success"
    links = {c["job"]: c for c in ui.api("GET", f"/projects/demo/pipelines/{pid}")["children"]}
    assert set(links) == {TRIGGER, "loose"}
    child_id, trigger_id = links[TRIGGER]["pipeline_id"], links[TRIGGER]["job_id"]
    failed_id = links["loose"]["pipeline_id"]
    assert ui.wait("demo", child_id) == "success" and ui.wait("demo", failed_id) == "failed"
    person = ui.browser()

    for path in (f"/projects/demo/pipelines/{pid}", f"/projects/demo/pipelines/{pid}/live"):
        page = person.get(path)
        assert page.status_code == 200
        _assert_parent_page(page.text, "/projects/demo", child_id, trigger_id)
        _assert_failed_child(page.text, "/projects/demo", failed_id)
    child = person.get(f"/projects/demo/pipelines/{child_id}")
    assert child.status_code == 200
    _assert_child_page(child.text, "/projects/demo", pid, trigger_id)
    # a pipeline's own job rows still lead to the jobs (the trigger job's log names its child)
    assert (
        f'href="/projects/demo/jobs/{trigger_id}">{ESCAPED}</a>'
        in person.get(f"/projects/demo/pipelines/{pid}").text
    )


def test_local_ui_shows_the_children_aicd_run_made(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "shop", {".gitlab-ci.yml": PARENT, "ci/child.yml": CHILD, "ci/bad.yml": BAD})
    ran = aicd(repo, "run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    home = repo / ".aicd"
    settings = ServerSettings.load(
        {}, home=home, database_url=f"sqlite:///{home / 'aicd.db'}", poll=False, environments=False
    )
    port = 8091
    launch, key = new_launch(port)
    app = create_app(dataclasses.replace(settings, local_ui=True, port=port), launch)
    with TestClient(app, base_url=f"http://127.0.0.1:{port}") as client:
        assert client.get(f"{OPEN_PATH}?key={key}", follow_redirects=False).status_code == 303
        project = client.get("/projects/shop").text
        ids = sorted({int(i) for i in re.findall(r'href="/projects/shop/pipelines/(\d+)"', project)})
        assert len(ids) == 3, project  # the parent and its two children
        parent_id = ids[0]
        page = client.get(f"/projects/shop/pipelines/{parent_id}").text
        node = re.search(rf'data-job="{ESCAPED}" data-status="success" data-child="(\d+)"', page)
        assert node, page
        child_id = int(node.group(1))
        trigger = re.search(rf'<tr data-child="{child_id}">.*?/jobs/(\d+)"', page, re.S)
        assert trigger, page
        (failed_id,) = set(ids) - {parent_id, child_id}
        _assert_failed_child(page, "/projects/shop", failed_id)
        _assert_parent_page(page, "/projects/shop", child_id, int(trigger.group(1)))
        child = client.get(f"/projects/shop/pipelines/{child_id}").text
        _assert_child_page(child, "/projects/shop", parent_id, int(trigger.group(1)))
