"""CI_JOB_TOKEN on the real `aicd server` (SQLite and PostgreSQL): a real job uses its token
against the server's API while it runs (curl, so it works sandboxed or not); afterwards the same
token is refused, and the database only ever held its SHA-256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline_helpers import jobs_of, new_project, trigger, wait_pipeline
from serverproc import ServerProc, make_project
from sqlalchemy import select

from aicd.store.db import connect
from aicd.store.schema import job_tokens
from aicd_testing import make_repo

# Each check: a name, the method, the path under /api/v1, and the status the job must get.
CHECKS = [
    ("own project", "GET", "/projects/$CI_PROJECT_NAME"),
    ("own pipeline", "GET", "/projects/$CI_PROJECT_NAME/pipelines/$CI_PIPELINE_ID"),
    ("other project", "GET", "/projects/other"),
    ("own variables", "GET", "/projects/$CI_PROJECT_NAME/variables"),
    ("users", "GET", "/users"),
    ("me", "GET", "/user"),
    ("new token", "POST", "/users/1/tokens"),
    ("audit", "GET", "/audit"),
    ("projects", "GET", "/projects"),
]


def _script() -> str:
    lines = [
        "    - 'env | grep -q ^AICD_HOME= && echo HOME-LEAK > leaks.txt || true'",
        "    - 'env | grep -q ^AICD_DATABASE_URL= && echo DB-LEAK >> leaks.txt || true'",
        "    - touch leaks.txt",
        "    - 'test -z \"$DB_LEAK\" || echo EXPANDED-LEAK >> leaks.txt'",
        '    - echo "the token is $CI_JOB_TOKEN"',
        "    - printf '%s' \"$CI_JOB_TOKEN\" > token.txt",
        "    - printf '%s' \"$AICD_SERVER\" > server.txt",
    ]
    for index, (_name, method, path) in enumerate(CHECKS):
        lines.append(
            f'    - \'curl -s -o /dev/null -w "%{{http_code}}\\n" -X {method} -H "JOB-TOKEN: $CI_JOB_TOKEN" '
            f'"$AICD_SERVER/api/v1{path}" >> codes.txt\''
        )
        del index
    lines.append(
        '    - \'curl -s -o /dev/null -w "%{http_code}\\n" -H "Authorization: Bearer $CI_JOB_TOKEN" '
        '"$AICD_SERVER/api/v1/projects/$CI_PROJECT_NAME" >> codes.txt\''
    )
    return "\n".join(lines)


CI = f"""use-token:
  variables:
    DB_LEAK: $AICD_DATABASE_URL  # the server's own setting: never expanded for a job
  script:
{_script()}
  artifacts:
    paths: [token.txt, codes.txt, leaks.txt, server.txt]
"""


def _artifact(api: object, project: str, job_id: int, path: str) -> str:
    import httpx

    assert isinstance(api, httpx.Client)
    response = api.get(f"/projects/{project}/jobs/{job_id}/artifacts/{path}")
    assert response.status_code == 200, response.text
    return response.text


def test_a_job_token_acts_for_its_project_while_the_job_runs(server: ServerProc, tmp_path: Path) -> None:
    new_project(server, tmp_path, {".gitlab-ci.yml": CI}, name="demo")
    make_project(server, "other", str(make_repo(tmp_path / "other", {"README": "x\n"})))
    with server.client() as api:
        pipeline = trigger(api, "demo")
        done = wait_pipeline(api, "demo", pipeline["id"], timeout=600)
        job = jobs_of(api, "demo", pipeline["id"])["use-token"]
        log = api.get(f"/projects/demo/jobs/{job['id']}/log").text
        assert done["status"] == "success", log
        token = _artifact(api, "demo", job["id"], "token.txt")
        codes = _artifact(api, "demo", job["id"], "codes.txt").split()
        leaks = _artifact(api, "demo", job["id"], "leaks.txt")
        server_url = _artifact(api, "demo", job["id"], "server.txt")

    assert token.startswith("aicdjob_") and len(token) > 40
    # masked in the log like a masked variable
    assert token not in log and "the token is [MASKED]" in log
    # the job sees the server's API, not its home or database
    assert leaks.strip() == ""
    assert server_url == f"http://127.0.0.1:{server.port}"
    got = dict(zip([name for name, _m, _p in CHECKS] + ["bearer"], codes, strict=True))
    assert got == {
        "own project": "200",
        "own pipeline": "200",
        "other project": "404",  # not revealed
        "own variables": "403",  # maintainer's
        "users": "403",
        "me": "403",
        "new token": "403",
        "audit": "403",
        "projects": "200",  # lists its own project only
        "bearer": "200",  # Authorization: Bearer works too
    }

    # the attempt ended: the token is refused, whatever the header
    with server.client(token) as api:
        refused = api.get("/projects/demo")
        assert refused.status_code == 401 and "job token" in refused.json()["error"]
    with server.client("") as api:
        assert api.get("/projects/demo", headers={"JOB-TOKEN": token}).status_code == 401

    # only its SHA-256 was ever stored, bound to the attempt and project, and it is revoked
    database = connect(server.database_url)
    try:
        with database.engine.connect() as conn:
            rows = conn.execute(select(job_tokens)).mappings().all()
    finally:
        database.dispose()
    assert len(rows) == 1
    row = rows[0]
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps({k: str(v) for k, v in row.items()})
    assert row["job_id"] == job["id"] and row["pipeline_id"] == pipeline["id"]
    assert row["revoked_at"] is not None and row["protected_ref"] is True  # main: the default branch
    assert row["expires_at"] > row["created_at"]


FORGE_CI = """register:
  script:
    - printf 'model weights' > m.bin
    - D="sha256:$(sha256sum m.bin | cut -d' ' -f1)"
    - |
      curl -sf -X PUT -H "JOB-TOKEN: $CI_JOB_TOKEN" --data-binary @m.bin "$AICD_SERVER/api/v1/objects/$D"
    - |
      cat > body.json <<JSON
      {"artifact": {"digest": "$D", "name": "m.bin"},
       "lineage": {"commit": "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef", "ref": "forged", "pipeline_id": 999,
                   "job_id": 999, "project": "somebody-else", "pipeline_url": "http://evil.example/p/999"},
       "alias": "production"}
      JSON
    - |
      curl -sf -X POST -H "JOB-TOKEN: $CI_JOB_TOKEN" -H 'Content-Type: application/json' --data @body.json \
        "$AICD_SERVER/api/v1/models/shop-model/versions" > registered.json
  artifacts:
    paths: [registered.json]
"""


def test_the_server_writes_a_job_s_lineage_and_ignores_a_forged_one(
    server: ServerProc, tmp_path: Path
) -> None:
    repo = new_project(server, tmp_path, {".gitlab-ci.yml": FORGE_CI}, name="shop")
    with server.client() as api:
        pipeline = trigger(api, "shop")
        done = wait_pipeline(api, "shop", pipeline["id"], timeout=600)
        job = jobs_of(api, "shop", pipeline["id"])["register"]
        assert done["status"] == "success", api.get(f"/projects/shop/jobs/{job['id']}/log").text
        registered = json.loads(_artifact(api, "shop", job["id"], "registered.json"))
        model = api.get("/models/shop-model").json()
        link = api.get("/models/shop-model/versions/1").json()["pipeline"]
        audit = api.get("/projects/shop/audit").json()
    from aicd_testing import git

    lineage = registered["lineage"]
    assert lineage["commit"] == git(repo, "rev-parse", "HEAD") == pipeline["sha"]
    assert lineage["ref"] == "main"
    assert (lineage["pipeline_id"], lineage["job_id"]) == (pipeline["id"], job["id"])
    assert lineage["project"] == "shop"
    assert lineage["pipeline_url"].endswith(f"/api/v1/projects/shop/pipelines/{pipeline['id']}")
    assert link["id"] == pipeline["id"] and link["job"]["name"] == "register"  # this server's pipeline
    # the model belongs to the job's project; a job of the default branch may set `production`
    assert model["project"] == "shop" and model["aliases"] == {"production": 1}
    assert any(e["action"] == "model.register" and e["actor"] == f"job:{job['id']}" for e in audit)
