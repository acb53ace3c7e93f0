"""Access control, route by route: who may call what, from the app's own OpenAPI document.

MINIMUM says, for every route of the API, the least a caller needs:
  anonymous   nothing (no token needed)
  user        any valid token
  viewer, developer, maintainer
              that role (or more) on the path's {project}; admins count as maintainers
  admin       an admin user
  contributor an admin, or a user with the developer role (or more) on at least one project
              (uploading an artifact's bytes, which belong to no project yet)
  model-viewer, model-developer
              that role (or more) on the project the model belongs to (the matrix's model belongs
              to the path's project); a caller who may not read it gets 404, as for projects
  webhook     no API token counts: the project's webhook secret authenticates
  job-token   only a running job's CI_JOB_TOKEN: every API token gets 403 (tests/server/test_job_source.py)

Every route is called by seven callers: no token, a bad token, a user with no role on the
project, a viewer, a developer, a maintainer and the admin. A denied call must get exactly:
401 without a valid token (webhooks: 401 for everyone, since no call here is signed); 404 for
a user without a role on the project of a {project} route (its existence is not revealed);
403 for a role (or non-admin) below the minimum. An allowed call must get past access control:
not 401/403, not the 404 of an unknown project, and no server error (a minimal body may
give 422: that passed access control). The registry's routes get real targets (a model with
versions, aliases, an uploaded object, the commit it came from) and real bodies, so an allowed
call to them must succeed (2xx).

A route in the OpenAPI document and missing from MINIMUM fails the test: whoever adds a
route adds its line here. Lines for routes not served yet are kept (the contract's full
list) and skipped until the route exists.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from serverproc import API, ServerProc, make_project, make_user

from aicd.server.app import create_app
from aicd.server.settings import ServerSettings
from aicd_testing import git, make_repo

ANONYMOUS, USER, VIEWER, DEVELOPER, MAINTAINER, ADMIN, CONTRIBUTOR, WEBHOOK = (
    "anonymous",
    "user",
    "viewer",
    "developer",
    "maintainer",
    "admin",
    "contributor",
    "webhook",
)
MODEL_VIEWER, MODEL_DEVELOPER = "model-viewer", "model-developer"
JOB_TOKEN = "job-token"
LEVELS = {
    JOB_TOKEN,
    ANONYMOUS,
    USER,
    VIEWER,
    DEVELOPER,
    MAINTAINER,
    ADMIN,
    CONTRIBUTOR,
    WEBHOOK,
    MODEL_VIEWER,
    MODEL_DEVELOPER,
}
_PROJECT_ROLES = (VIEWER, DEVELOPER, MAINTAINER)
_P = "/projects/{project}"

MINIMUM: dict[tuple[str, str], str] = {
    # health, me, users, tokens, audit (H-ACCESS)
    ("GET", "/health"): ANONYMOUS,
    ("GET", "/user"): USER,
    ("GET", "/users"): ADMIN,
    ("POST", "/users"): ADMIN,
    ("DELETE", "/users/{user_id}"): ADMIN,
    # Tokens of *another* user: admin only (the owner may too: test_users_tokens.py).
    ("POST", "/users/{user_id}/tokens"): ADMIN,
    ("GET", "/users/{user_id}/tokens"): ADMIN,
    ("DELETE", "/tokens/{token_id}"): ADMIN,
    ("GET", "/audit"): ADMIN,
    ("GET", f"{_P}/audit"): MAINTAINER,
    ("GET", f"{_P}/members"): MAINTAINER,
    ("PUT", f"{_P}/members/{{user_id}}"): MAINTAINER,
    ("DELETE", f"{_P}/members/{{user_id}}"): MAINTAINER,
    # projects, variables, webhooks (H-PROJECTS)
    ("GET", "/projects"): USER,
    ("POST", "/projects"): ADMIN,
    ("GET", _P): VIEWER,
    ("PATCH", _P): MAINTAINER,
    ("DELETE", _P): ADMIN,
    ("POST", f"{_P}/poll"): DEVELOPER,
    ("GET", f"{_P}/variables"): MAINTAINER,
    ("PUT", f"{_P}/variables/{{key}}"): MAINTAINER,
    ("DELETE", f"{_P}/variables/{{key}}"): MAINTAINER,
    ("POST", f"{_P}/hooks/{{provider}}"): WEBHOOK,
    # pipelines, jobs (H-RUNNER)
    ("POST", f"{_P}/pipelines"): DEVELOPER,
    ("GET", f"{_P}/pipelines"): VIEWER,
    ("GET", f"{_P}/pipelines/{{pipeline_id}}"): VIEWER,
    ("GET", f"{_P}/pipelines/{{pipeline_id}}/jobs"): VIEWER,
    ("POST", f"{_P}/pipelines/{{pipeline_id}}/cancel"): DEVELOPER,
    ("POST", f"{_P}/pipelines/{{pipeline_id}}/retry"): DEVELOPER,
    ("GET", f"{_P}/pipelines/{{pipeline_id}}/test_report"): VIEWER,
    ("GET", f"{_P}/jobs/{{job_id}}"): VIEWER,
    ("GET", f"{_P}/jobs/{{job_id}}/log"): VIEWER,
    ("GET", f"{_P}/jobs/{{job_id}}/log/stream"): VIEWER,
    ("GET", f"{_P}/jobs/{{job_id}}/artifacts"): VIEWER,
    ("GET", f"{_P}/jobs/{{job_id}}/artifacts/{{path}}"): VIEWER,
    ("POST", f"{_P}/jobs/{{job_id}}/cancel"): DEVELOPER,
    ("POST", f"{_P}/jobs/{{job_id}}/retry"): DEVELOPER,
    ("POST", f"{_P}/jobs/{{job_id}}/play"): DEVELOPER,
    ("GET", f"{_P}/environments"): VIEWER,
    ("GET", f"{_P}/deployments"): VIEWER,
    ("POST", f"{_P}/environments/{{env}}/{{action}}"): DEVELOPER,
    ("POST", f"{_P}/environments/{{env}}/deployments"): DEVELOPER,  # production: see test_deploy_route
    # reliability figures (any token; each caller sees the projects it has a role on)
    ("GET", "/reliability"): USER,
    ("GET", "/metrics"): USER,
    ("GET", f"{_P}/deployment-events"): VIEWER,
    # incidents: read by viewers, declared and resolved by developers
    ("GET", f"{_P}/incidents"): VIEWER,
    ("POST", f"{_P}/incidents"): DEVELOPER,
    ("POST", f"{_P}/incidents/{{incident_id}}/resolve"): DEVELOPER,
    # models, objects, lineage (H-REGISTRY): a model belongs to a project; its members read it,
    # its developers write it (protected aliases: tests/server/test_registry_access.py)
    ("GET", "/models"): USER,
    ("GET", "/models/{name}"): MODEL_VIEWER,
    ("PATCH", "/models/{name}"): ADMIN,
    ("GET", "/models/{name}/versions"): MODEL_VIEWER,
    ("POST", "/models/{name}/versions"): MODEL_DEVELOPER,
    ("GET", "/models/{name}/versions/{version}"): MODEL_VIEWER,
    ("GET", "/models/{name}/versions/{version}/artifact"): MODEL_VIEWER,
    ("GET", "/models/{name}/aliases"): MODEL_VIEWER,
    ("GET", "/models/{name}/aliases/{alias}"): MODEL_VIEWER,
    ("PUT", "/models/{name}/aliases/{alias}"): MODEL_DEVELOPER,
    ("DELETE", "/models/{name}/aliases/{alias}"): MODEL_DEVELOPER,
    ("GET", "/models/{name}/history"): MODEL_VIEWER,
    ("GET", f"{_P}/model-readers"): VIEWER,
    ("PUT", f"{_P}/model-readers/{{reader}}"): MAINTAINER,
    ("DELETE", f"{_P}/model-readers/{{reader}}"): MAINTAINER,
    ("GET", f"{_P}/protected-aliases"): VIEWER,
    ("PUT", f"{_P}/protected-aliases"): MAINTAINER,
    ("GET", "/lineage/commits/{sha}"): USER,
    ("PUT", "/objects/{digest}"): CONTRIBUTOR,
    # aicd's judge for Argo Rollouts and Flagger: any token (Flagger's may come in its metadata)
    ("POST", "/integrations/argo-rollouts/judge"): USER,
    ("POST", "/integrations/flagger/{hook}"): USER,
    ("PUT", "/integrations/flagger/canaries/{namespace}/{name}"): USER,
    ("GET", "/integrations/flagger/canaries/{namespace}/{name}"): USER,
    ("DELETE", "/integrations/flagger/canaries/{namespace}/{name}"): USER,
    # runners (issue 15): admins manage them; a worker checks in with its runner token (RUNNER-TOKEN
    # header, no API token: tests/server/test_runners.py)
    ("POST", "/runners"): ADMIN,
    ("GET", "/runners"): ADMIN,
    ("GET", "/runners/{runner_id}"): ADMIN,
    ("POST", "/runners/{runner_id}/pause"): ADMIN,
    ("POST", "/runners/{runner_id}/resume"): ADMIN,
    ("DELETE", "/runners/{runner_id}"): ADMIN,
    ("POST", "/runners/verify"): ANONYMOUS,
    ("GET", "/job/source"): JOB_TOKEN,
    # jobs on workers (issue 15): a worker claims an attempt with its runner token (RUNNER-TOKEN,
    # no API token); everything after that with the attempt's CI_JOB_TOKEN (tests/workers/)
    ("POST", "/runners/jobs/{job_id}/claim"): ANONYMOUS,
    ("POST", "/job/heartbeat"): JOB_TOKEN,
    ("POST", "/job/log"): JOB_TOKEN,
    ("GET", "/job/artifacts/{job_id}"): JOB_TOKEN,
    ("PUT", "/job/artifacts"): JOB_TOKEN,
    ("POST", "/job/result"): JOB_TOKEN,
}
# Routes whose allowed calls must succeed: they get real targets and real bodies.
MUST_SUCCEED = {route for route in MINIMUM if route[1].startswith(("/models", "/objects", "/lineage"))}

CALLERS = ("no token", "bad token", "outsider", VIEWER, DEVELOPER, MAINTAINER, ADMIN)
BAD_TOKEN = "aicd_" + "x" * 40
CI = "build:\n  script: [echo built > out.txt]\n  artifacts:\n    paths: [out.txt]\n"
WEBHOOK_SECRET = "matrix-webhook-secret"


def expected(level: str, caller: str, path: str) -> int | None:
    """The status a denied call must get; None: allowed."""
    if level == ANONYMOUS:
        return None
    if level == WEBHOOK or caller in ("no token", "bad token"):
        return 401
    if level == JOB_TOKEN:
        return 403
    if level == USER:
        return None
    # A token that is not the caller's is answered as one that does not exist (issue 11: ids
    # could be enumerated by 404 vs 403).
    on_project = "{project}" in path or path == "/tokens/{token_id}"
    if caller == ADMIN:
        return None
    if level in (MODEL_VIEWER, MODEL_DEVELOPER):
        if caller == "outsider":
            return 404  # the model is not revealed
        return 403 if level == MODEL_DEVELOPER and caller == VIEWER else None
    if caller == "outsider":
        return 404 if on_project else 403
    if level == ADMIN:
        return 404 if path == "/tokens/{token_id}" else 403
    if level == CONTRIBUTOR:
        return 403 if caller == VIEWER else None
    return 403 if _PROJECT_ROLES.index(caller) < _PROJECT_ROLES.index(level) else None


def openapi_routes() -> set[tuple[str, str]]:
    """(METHOD, path under /api/v1) of every operation the app documents."""
    app = create_app(ServerSettings.load(environ={}, home="/nonexistent-aicd-home"))
    routes = set()
    for path, operations in app.openapi()["paths"].items():
        assert path.startswith(API), f"route {path} outside {API}"
        for method in operations:
            routes.add((method.upper(), path.removeprefix(API)))
    return routes


def test_every_route_has_a_line_in_the_matrix() -> None:
    assert set(MINIMUM.values()) <= LEVELS
    for (_method, path), level in MINIMUM.items():
        if level in _PROJECT_ROLES or level == WEBHOOK:
            assert "{project}" in path, f"{path}: a project role needs a {{project}} route"
        if level in (CONTRIBUTOR, MODEL_VIEWER, MODEL_DEVELOPER):
            assert "{project}" not in path, f"{path}: contributor is a role on any project, not this one"
    missing = sorted(openapi_routes() - set(MINIMUM))
    assert not missing, (
        "routes without a line in tests/server/test_access_matrix.py MINIMUM (add their minimum role): "
        + ", ".join(f"{m} {p}" for m, p in missing)
    )


# -- the world the calls run in ---------------------------------------------------------------------


@dataclass
class World:
    server: ServerProc
    admin: httpx.Client
    repo: Path
    tokens: dict[str, str] = field(default_factory=dict)  # caller -> token ("" for none)
    user_ids: dict[str, int] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def fresh(self, prefix: str) -> str:
        return f"{prefix}-{next(self.counter)}"

    def new_project(self) -> str:
        """A project on which viewer, developer and maintainer have their roles."""
        name = self.fresh("mx")
        make_project(self.server, name, str(self.repo), webhook_secret=WEBHOOK_SECRET)
        for role in _PROJECT_ROLES:
            put = self.admin.put(f"/projects/{name}/members/{self.user_ids[role]}", json={"role": role})
            assert put.status_code == 200, put.text
        return name

    def new_token(self) -> str:
        created = self.admin.post(f"/users/{self.params['user_id']}/tokens", json={"name": self.fresh("t")})
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    def new_user(self) -> str:
        created = self.admin.post("/users", json={"name": self.fresh("gone")})
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    def new_runner(self) -> str:
        created = self.admin.post("/runners", json={"tags": ["matrix"]})
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    def ensure(self, method: str, path: str, response: httpx.Response) -> None:
        assert response.status_code < 300, f"setup {method} {path}: {response.status_code} {response.text}"


# Per-call set-up for calls that destroy what they act on: each call gets its own target.
def _prepare(world: World, method: str, path: str) -> dict[str, str]:
    params = dict(world.params)
    if (method, path) == ("DELETE", _P):
        params["project"] = world.new_project()
    elif (method, path) == ("DELETE", "/users/{user_id}"):
        params["user_id"] = world.new_user()
    elif (method, path) == ("DELETE", "/tokens/{token_id}"):
        params["token_id"] = world.new_token()
    elif (method, path) == ("DELETE", f"{_P}/members/{{user_id}}"):
        target = f"/projects/{params['project']}/members/{params['user_id']}"
        world.ensure("PUT", target, world.admin.put(target, json={"role": "viewer"}))
    elif (method, path) == ("DELETE", f"{_P}/variables/{{key}}"):
        target = f"/projects/{params['project']}/variables/{params['key']}"
        world.ensure("PUT", target, world.admin.put(target, json={"value": "v"}))
    elif (method, path) == ("DELETE", "/models/{name}/aliases/{alias}"):
        params["alias"] = "doomed"
        target = f"/models/{params['name']}/aliases/doomed"
        world.ensure("PUT", target, world.admin.put(target, json={"version": 1}))
    elif (method, path) == ("DELETE", "/runners/{runner_id}"):
        params["runner_id"] = world.new_runner()
    elif (method, path) == ("PUT", "/objects/{digest}"):
        params["object"] = world.fresh("object-bytes")  # new bytes: an allowed call stores them (201)
        params["digest"] = _digest(params["object"].encode())
    return params


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _first_model(world: World) -> None:
    """Version 1 of a model, its artifact uploaded, registered from the repo's head, alias 'staging'."""
    data = b"matrix model weights"
    digest = _digest(data)
    world.ensure("PUT", "/objects", world.admin.put(f"/objects/{digest}", content=data))
    head = git(world.repo, "rev-parse", "HEAD")
    body = {
        "artifact": {"digest": digest, "name": "m.bin"},
        "alias": "staging",
        "lineage": {"commit": head},
        "project": world.params["project"],
    }
    registered = world.admin.post("/models/matrix-model/versions", json=body)
    world.ensure("POST", "/models/matrix-model/versions", registered)
    assert registered.json()["version"] == 1, registered.text
    world.params.update(name="matrix-model", version="1", alias="staging", sha=head[:7], digest=digest)


def _body(
    world: World,
    params: dict[str, str],
    method: str,
    path: str,
    operation: dict[str, Any],
    document: dict[str, Any],
) -> Any:
    """The JSON body of the call (None: none), or bytes to send as they are."""
    overrides: dict[tuple[str, str], Callable[[], Any]] = {
        ("POST", "/users"): lambda: {"name": world.fresh("new")},
        ("POST", "/runners"): lambda: {"tags": ["matrix"]},
        ("POST", "/projects"): lambda: {
            "name": world.fresh("created"),
            "repo_url": str(world.repo),
            "poll_interval_s": None,
        },
        ("PATCH", _P): lambda: {},
        ("PUT", f"{_P}/members/{{user_id}}"): lambda: {"role": "viewer"},
        ("POST", f"{_P}/pipelines"): lambda: {"ref": "main"},
        ("POST", f"{_P}/hooks/{{provider}}"): lambda: {},
        ("POST", "/models/{name}/versions"): lambda: {
            "artifact": {"digest": params["digest"], "name": "m.bin"}
        },
        ("PUT", "/models/{name}/aliases/{alias}"): lambda: {"version": 1},
        ("PUT", "/objects/{digest}"): lambda: params["object"].encode(),
        ("PUT", f"{_P}/protected-aliases"): lambda: {"aliases": ["production"]},
        ("PATCH", "/models/{name}"): lambda: {"project": params["project"]},
    }
    if (method, path) in overrides:
        return overrides[(method, path)]()
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return None if schema is None else example(schema, document)


def example(schema: dict[str, Any], document: dict[str, Any]) -> Any:
    """A small instance of a JSON schema: required properties only."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return example(document["components"]["schemas"][name], document)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example(options[0], document)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: example(properties[name], document) for name in schema.get("required", [])}
    if kind == "array":
        return []
    if kind == "string":
        return "x" * max(1, int(schema.get("minLength", 1)))
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return int(low) + 1
    if kind == "boolean":
        return False
    return None


def _call(
    world: World, caller: str, method: str, path: str, operation: dict[str, Any], document: dict[str, Any]
) -> tuple[int, str, str]:
    params = _prepare(world, method, path)
    url = path.format(**{name: params.get(name, "1") for name in _names(path)})
    query = {
        p["name"]: "x"
        for p in operation.get("parameters", [])
        if p.get("in") == "query" and p.get("required")
    }
    body = _body(world, params, method, path, operation, document)
    token = world.tokens[caller]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kwargs: dict[str, Any] = {"headers": headers, "params": query}
    if isinstance(body, bytes):
        kwargs["content"] = body
    elif body is not None or method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = body if body is not None else {}
    with (
        httpx.Client(base_url=f"{world.server.url}{API}", timeout=30) as client,
        client.stream(method, url, **kwargs) as response,
    ):
        text = response.read().decode("utf-8", "replace") if response.status_code >= 400 else ""
    return response.status_code, text, params["project"]


def _names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _first_pipeline(world: World, document: dict[str, Any]) -> None:
    """A finished pipeline (with a job and an artifact) of the project, when the routes exist."""
    if "post" not in document["paths"].get(f"{API}{_P}/pipelines", {}):
        return
    project = world.params["project"]
    created = world.admin.post(f"/projects/{project}/pipelines", json={"ref": "main"})
    assert created.status_code in (200, 201), created.text
    pipeline_id = created.json()["id"]
    world.params["pipeline_id"] = str(pipeline_id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = world.admin.get(f"/projects/{project}/pipelines/{pipeline_id}").json()["status"]
        if status in ("success", "failed", "canceled", "skipped"):
            break
        time.sleep(0.1)
    jobs = world.admin.get(f"/projects/{project}/pipelines/{pipeline_id}/jobs")
    if jobs.status_code == 200 and jobs.json():
        world.params["job_id"] = str(jobs.json()[0]["id"])


def test_access_matrix(server: ServerProc, tmp_path: Path) -> None:
    document = httpx.get(f"{server.url}{API}/openapi.json", timeout=10).json()
    served = {
        (method.upper(), path.removeprefix(API))
        for path, operations in document["paths"].items()
        for method in operations
    }
    with server.client() as admin:
        world = World(server=server, admin=admin, repo=make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI}))
        world.tokens = {"no token": "", "bad token": BAD_TOKEN, ADMIN: server.admin_token}
        for caller in ("outsider", *_PROJECT_ROLES):
            world.user_ids[caller], world.tokens[caller] = make_user(server, caller)
        target_id, _ = make_user(server, "target")
        world.params = {
            "user_id": str(target_id),
            "key": "MATRIX_VAR",
            "provider": "github",
            "pipeline_id": "1",
            "job_id": "1",
            "path": "out.txt",
            "hook": "rollout",
            "namespace": "ml",
        }
        world.params["project"] = world.new_project()
        world.params["reader"] = world.new_project()
        world.params["token_id"] = world.new_token()
        world.params["runner_id"] = world.new_runner()
        _first_pipeline(world, document)
        _first_model(world)

        failures: list[str] = []
        checked = 0
        for (method, path), level in sorted(MINIMUM.items(), key=lambda item: (item[0][1], item[0][0])):
            if (method, path) not in served:
                continue
            operation = document["paths"][f"{API}{path}"][method.lower()]
            for caller in CALLERS:
                want = expected(level, caller, path)
                status, text, project = _call(world, caller, method, path, operation, document)
                checked += 1
                where = f"{method} {path} as {caller} (minimum {level})"
                if want is None:
                    auth_404 = status == 404 and f"no project {project!r}" in text
                    if status in (401, 403) or auth_404 or status >= 500:
                        failures.append(f"{where}: allowed expected, got {status} {text[:200]}")
                    elif (method, path) in MUST_SUCCEED and status >= 300:
                        failures.append(f"{where}: success expected, got {status} {text[:200]}")
                elif status != want:
                    failures.append(f"{where}: {want} expected, got {status} {text[:200]}")
                elif not text.startswith('{"error":'):
                    failures.append(f"{where}: body is not {{'error': ...}}: {text[:200]}")
    assert checked >= 7 * len(MINIMUM) - 7 * 5  # a few contract routes may not be served yet
    assert not failures, f"{len(failures)} of {checked} calls wrong:\n" + "\n".join(failures)


@pytest.mark.parametrize(
    ("level", "caller", "path", "want"),
    [
        (ANONYMOUS, "no token", "/health", None),
        (USER, "bad token", "/user", 401),
        (USER, "outsider", "/projects", None),
        (VIEWER, "outsider", _P, 404),
        (DEVELOPER, VIEWER, f"{_P}/poll", 403),
        (DEVELOPER, DEVELOPER, f"{_P}/poll", None),
        (MAINTAINER, ADMIN, f"{_P}/members", None),
        (ADMIN, "outsider", "/users", 403),
        (ADMIN, "outsider", _P, 404),
        (ADMIN, MAINTAINER, _P, 403),
        (CONTRIBUTOR, "no token", "/objects/{digest}", 401),
        (CONTRIBUTOR, "outsider", "/objects/{digest}", 403),
        (CONTRIBUTOR, VIEWER, "/objects/{digest}", 403),
        (CONTRIBUTOR, MAINTAINER, "/objects/{digest}", None),
        (MODEL_DEVELOPER, "outsider", "/models/{name}/versions", 404),
        (MODEL_DEVELOPER, VIEWER, "/models/{name}/versions", 403),
        (MODEL_DEVELOPER, DEVELOPER, "/models/{name}/versions", None),
        (MODEL_DEVELOPER, ADMIN, "/models/{name}/aliases/{alias}", None),
        (MODEL_VIEWER, "outsider", "/models/{name}", 404),
        (MODEL_VIEWER, VIEWER, "/models/{name}", None),
        (WEBHOOK, ADMIN, f"{_P}/hooks/{{provider}}", 401),
    ],
)
def test_expected_outcomes(level: str, caller: str, path: str, want: int | None) -> None:
    assert expected(level, caller, path) == want
