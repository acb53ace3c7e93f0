"""A masked value never leaves the server through its API (real server, SQLite and PostgreSQL).

Two markers: a masked project variable and a masked variable given when triggering.
Jobs print them (directly, through dotenv, through `set -x`), write one to an
artifact, and a pipeline file uses one in an include path that does not exist.
Every JSON response, every log, every SSE stream and every error message is
searched for the markers.

Artifacts: files a job writes are kept as written. GitLab does not mask
artifacts either (masking applies to the job log only), so the artifact holds
the marker: that is asserted here, as the documented behaviour, and the
artifact is the only place it appears.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from pipeline_helpers import commit, jobs_of, new_project, read_sse, trigger, wait_pipeline
from serverproc import ServerProc

PROJECT_MARKER = "pm-7f3a9c1e-marker"
GIVEN_MARKER = "gm-51e2b8d4-marker"

CI = """
stages: [build, test]
leak:
  stage: build
  script:
    - echo "project=$PROJECT_SECRET given=$GIVEN_SECRET"
    - echo "$PROJECT_SECRET" > leaked.txt
    - echo "FROM_DOTENV=$PROJECT_SECRET" > build.env
    - set -x; true "$GIVEN_SECRET"; set +x
  artifacts:
    paths: [leaked.txt]
    reports:
      dotenv: build.env
use:
  stage: test
  script:
    - echo "via dotenv $FROM_DOTENV"
    - echo "failing with $PROJECT_SECRET" >&2; exit 3
"""

BAD_INCLUDE = 'include:\n  - local: "/$PROJECT_SECRET.yml"\njob:\n  script: [true]\n'


def _no_marker(text: str, where: str) -> None:
    for marker in (PROJECT_MARKER, GIVEN_MARKER):
        assert marker not in text, f"{marker} found in {where}"


def test_masked_values_never_appear_in_api_responses_logs_or_errors(
    server: ServerProc, tmp_path: Path
) -> None:
    repo = new_project(server, tmp_path, {".gitlab-ci.yml": CI})
    seen: list[tuple[str, str]] = []  # (what, text) of every response read
    with server.client() as admin:
        put = admin.put(
            "/projects/demo/variables/PROJECT_SECRET", json={"value": PROJECT_MARKER, "masked": True}
        )
        assert put.status_code in (200, 201), put.text
        seen.append(("variable put", put.text))
        given = [{"key": "GIVEN_SECRET", "value": GIVEN_MARKER, "masked": True}]
        created = admin.post("/projects/demo/pipelines", json={"ref": "main", "variables": given})
        assert created.status_code == 201
        seen.append(("pipeline create", created.text))
        pid = created.json()["id"]
        done = wait_pipeline(admin, "demo", pid)
        assert done["status"] == "failed"

        jobs = jobs_of(admin, "demo", pid)
        logs = {}
        for name, job in jobs.items():
            logs[name] = admin.get(f"/projects/demo/jobs/{job['id']}/log").text
            seen.append((f"log of {name}", logs[name]))
            events = read_sse(server, f"/projects/demo/jobs/{job['id']}/log/stream")
            seen.append((f"SSE of {name}", json.dumps(events)))
            seen.append((f"job {name}", admin.get(f"/projects/demo/jobs/{job['id']}").text))
        # the jobs did print the values: masked in the log
        assert "project=[MASKED] given=[MASKED]" in logs["leak"]
        assert "[MASKED]" in logs["leak"].split("set -x")[-1]
        assert "via dotenv [MASKED]" in logs["use"] and "failing with [MASKED]" in logs["use"]

        # a pipeline file whose error message would hold the value
        commit(repo, {".gitlab-ci.yml": BAD_INCLUDE})
        bad = trigger(admin, "demo", variables=given)
        failed = wait_pipeline(admin, "demo", bad["id"])
        assert failed["status"] == "failed" and failed["error"]
        assert "[MASKED]" in failed["error"]

        for path in (
            "/projects/demo/pipelines",
            f"/projects/demo/pipelines/{pid}",
            f"/projects/demo/pipelines/{pid}/jobs?include_retried=true",
            f"/projects/demo/pipelines/{pid}/test_report",
            f"/projects/demo/pipelines/{bad['id']}",
            "/projects/demo/variables",
            "/projects/demo/audit",
            "/audit",
            "/projects/demo",
            "/openapi.json",
        ):
            response = admin.get(path)
            assert response.status_code == 200, (path, response.text)
            seen.append((path, response.text))
        for action in ("retry", "cancel"):
            response = admin.post(f"/projects/demo/pipelines/{pid}/{action}")
            seen.append((f"pipeline {action}", response.text))
        wait_pipeline(admin, "demo", pid)
        for name, job in jobs_of(admin, "demo", pid).items():
            seen.append(
                (f"log of {name} after retry", admin.get(f"/projects/demo/jobs/{job['id']}/log").text)
            )

        # GitLab does not mask artifacts: the file the job wrote holds the value, as written
        archive = admin.get(f"/projects/demo/jobs/{jobs['leak']['id']}/artifacts")
        with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
            assert zipped.read("leaked.txt").decode().strip() == PROJECT_MARKER

    for what, text in seen:
        _no_marker(text, what)
    # nor in what the server logged, nor in the run's files other than the artifact and the reports
    _no_marker(server.log(), "the server's own log")
    for path in (server.home / "runs").rglob("*"):
        if path.is_file() and "artifacts" not in path.parts and "reports" not in path.parts:
            _no_marker(path.read_text(errors="replace"), str(path))
