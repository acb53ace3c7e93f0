"""Parent-child pipelines run by `aicd server` (issue 13, part 3): a real server, real jobs.

The server runs with ONE job slot: a trigger job that held a slot while its child's jobs wait for
one would never end (the deadlock these tests would show as a timeout).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pipeline_helpers import jobs_of, new_project, trigger, wait_pipeline
from serverproc import ServerProc

PARENT = """
variables:
  GLOBAL: g
stages: [build, deploy, after]
build:
  stage: build
  script:
    - |
      cat > generated.yml <<'END'
      made:
        script: ['echo "made by $CI_PIPELINE_SOURCE"']
      END
  artifacts: {paths: [generated.yml]}
static:
  stage: deploy
  variables: {FROM_PARENT: hello}
  trigger:
    include: ci/child.yml
    strategy: depend
dynamic:
  stage: deploy
  needs: [build]
  trigger:
    include:
      - artifact: generated.yml
        job: build
    strategy: depend
after:
  stage: after
  script: [echo after]
"""

CHILD = """
one:
  script:
    - echo "source=$CI_PIPELINE_SOURCE from=$FROM_PARENT global=$GLOBAL"
    - echo "describe=$(git rev-parse HEAD)"
two:
  needs: [one]
  script: [echo two]
"""

FAILING_PARENT = """
stages: [deploy, after]
child:
  stage: deploy
  trigger:
    include: ci/bad.yml
    strategy: depend
loose:
  stage: deploy
  trigger:
    include: ci/bad.yml
after:
  stage: after
  script: [echo after]
"""

BAD = """
breaks:
  script: [exit 3]
"""


@pytest.fixture
def one_slot(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProc]:
    proc = ServerProc(
        tmp_path / "home",
        f"sqlite:///{tmp_path / 'home' / 'aicd.db'}",
        poll=False,
        args=["--concurrency", "1"],
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(check=False)


def _get(client: httpx.Client, path: str) -> Any:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def test_static_and_dynamic_children_run_nested_with_one_slot(one_slot: ServerProc, tmp_path: Path) -> None:
    server = one_slot
    new_project(server, tmp_path, {".gitlab-ci.yml": PARENT, "ci/child.yml": CHILD})
    with server.client() as admin:
        pid = trigger(admin, "demo")["id"]
        parent = wait_pipeline(admin, "demo", pid, timeout=600)
        jobs = jobs_of(admin, "demo", pid)
        assert parent["status"] == "success", (parent["error"], jobs)
        assert {n: j["status"] for n, j in jobs.items()} == {
            "build": "success",
            "static": "success",
            "dynamic": "success",
            "after": "success",
        }
        # nested under their trigger jobs: the parent names its children, each child its parent
        children = {c["job"]: c for c in parent["children"]}
        assert set(children) == {"static", "dynamic"}
        for name, link in children.items():
            assert link["job_id"] == jobs[name]["id"]
            child = _get(admin, f"/projects/demo/pipelines/{link['pipeline_id']}")
            assert child["source"] == "parent_pipeline" and child["status"] == "success"
            assert child["parent"] == {"pipeline_id": pid, "job_id": jobs[name]["id"], "job": name}
        static_jobs = jobs_of(admin, "demo", children["static"]["pipeline_id"])
        assert {n: j["status"] for n, j in static_jobs.items()} == {"one": "success", "two": "success"}
        log = admin.get(f"/projects/demo/jobs/{static_jobs['one']['id']}/log").text
        assert "source=parent_pipeline from=hello global=g" in log
        assert f"describe={parent['sha']}" in log  # the child's jobs check out the same commit
        made = jobs_of(admin, "demo", children["dynamic"]["pipeline_id"])
        made_log = admin.get(f"/projects/demo/jobs/{made['made']['id']}/log").text
        assert "made by parent_pipeline" in made_log
        trigger_log = admin.get(f"/projects/demo/jobs/{jobs['static']['id']}/log").text
        assert f"child pipeline #{children['static']['pipeline_id']} success" in trigger_log


def test_depend_gives_the_trigger_job_the_childs_failure(one_slot: ServerProc, tmp_path: Path) -> None:
    server = one_slot
    new_project(server, tmp_path, {".gitlab-ci.yml": FAILING_PARENT, "ci/bad.yml": BAD})
    with server.client() as admin:
        pid = trigger(admin, "demo")["id"]
        parent = wait_pipeline(admin, "demo", pid, timeout=600)
        jobs = jobs_of(admin, "demo", pid)
        # strategy: depend takes the child's failure; without it the trigger job succeeds
        assert jobs["child"]["status"] == "failed"
        assert jobs["loose"]["status"] == "success"
        assert jobs["after"]["status"] == "skipped"
        assert parent["status"] == "failed"
        for link in parent["children"]:
            child = _get(admin, f"/projects/demo/pipelines/{link['pipeline_id']}")
            assert child["status"] == "failed"


SLOW_PARENT = """
child:
  trigger:
    include: ci/slow.yml
    strategy: depend
"""

SLOW = """
slow:
  script: [sleep 300]
"""


def test_canceling_a_running_child_cancels_its_trigger_job(one_slot: ServerProc, tmp_path: Path) -> None:
    server = one_slot
    new_project(server, tmp_path, {".gitlab-ci.yml": SLOW_PARENT, "ci/slow.yml": SLOW})
    with server.client() as admin:
        pid = trigger(admin, "demo")["id"]
        deadline = time.monotonic() + 120
        child_id = None
        while time.monotonic() < deadline:
            found = _get(admin, f"/projects/demo/pipelines/{pid}")["children"]
            if found:
                child_id = found[0]["pipeline_id"]
                slow = jobs_of(admin, "demo", child_id).get("slow")
                if slow is not None and slow["status"] == "running":
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("the child's job never ran")
        response = admin.post(f"/projects/demo/pipelines/{child_id}/cancel")
        assert response.status_code == 200, response.text
        parent = wait_pipeline(admin, "demo", pid, timeout=600)
        assert _get(admin, f"/projects/demo/pipelines/{child_id}")["status"] == "canceled"
        assert jobs_of(admin, "demo", pid)["child"]["status"] == "canceled"
        assert parent["status"] == "canceled"
