"""GET /job/source on the real server (SQLite and PostgreSQL): a running job fetches its own
commit's tree with its CI_JOB_TOKEN (what a worker on another host does); API tokens cannot."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from pipeline_helpers import jobs_of, new_project, trigger, wait_pipeline
from serverproc import ServerProc

FETCH = (
    'curl -s -o src.tar.gz -w "%{http_code}\\n" -H "JOB-TOKEN: $CI_JOB_TOKEN" '
    '"$AICD_SERVER/api/v1/job/source"'
)
CI = f"""fetch-source:
  script:
    - '{FETCH} > code.txt'
    - printf '%s' "$CI_JOB_TOKEN" > token.txt
  artifacts:
    paths: [src.tar.gz, code.txt, token.txt]
"""


def _artifact(api: object, job_id: int, path: str) -> bytes:
    import httpx

    assert isinstance(api, httpx.Client)
    response = api.get(f"/projects/demo/jobs/{job_id}/artifacts/{path}")
    assert response.status_code == 200, response.text
    return response.content


def test_a_running_job_fetches_its_commit_s_tree(server: ServerProc, tmp_path: Path) -> None:
    files = {".gitlab-ci.yml": CI, "model/train.py": "print('train')\n", "README": "hello\n"}
    new_project(server, tmp_path, files, name="demo")
    with server.client() as api:
        pipeline = trigger(api, "demo")
        done = wait_pipeline(api, "demo", pipeline["id"], timeout=600)
        assert done["status"] == "success", done
        job = jobs_of(api, "demo", pipeline["id"])["fetch-source"]
        assert _artifact(api, job["id"], "code.txt").decode().strip() == "200"
        data = io.BytesIO(_artifact(api, job["id"], "src.tar.gz"))
        with tarfile.open(fileobj=data, mode="r:gz") as archive:
            members = {m.name: m for m in archive.getmembers() if m.isfile()}
            assert set(members) == set(files)
            extracted = archive.extractfile(members["model/train.py"])
            assert extracted is not None and extracted.read() == b"print('train')\n"

        # An API token (the admin's too) is not a job token; the job's token ended with its job.
        refused = api.get("/job/source")
        assert refused.status_code == 403 and "CI_JOB_TOKEN" in refused.json()["error"]
        token = _artifact(api, job["id"], "token.txt").decode()
    with server.client("") as anonymous:
        ended = anonymous.get("/job/source", headers={"JOB-TOKEN": token})
        assert ended.status_code == 401 and "job token" in ended.json()["error"]
