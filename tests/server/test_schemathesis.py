"""Schemathesis against the real server's OpenAPI document: no 5xx anywhere (`not_a_server_error`),
and every response matches its documented schema (`response_schema_conformance`).

The server (SQLite, poller off so that what runs is only what the cases start) gets a world
first, so that path parameters can hit real things: project "demo" with a finished pipeline (a
job with an artifact and a JUnit report), a member, a variable, a registered model version with
aliases, an uploaded object. Every operation is called, as the admin, with cases whose path
parameters are those real values and with cases whose path parameters are generated, in both
positive (valid per the schema) and negative (invalid) data. Operations that destroy or rewrite
their target only ever get a throwaway one: a generated id could be the admin's own token, or
project 1. A few positive bodies are steered to real values (SteerCase) so that they get past
the first check and exercise the code behind it: a project on the real repository, a pipeline
on "main" with generated variables, an object whose digest matches its bytes, a version of an
uploaded object.

The SSE log stream is included: on a finished job it sends the log and `end`, then closes.
Deterministic (derandomize) and bounded (MAX_EXAMPLES per operation and mode), well under a
minute on 2 cores. By hand: AICD_SCHEMATHESIS_SCALE=10 searches ten times as long,
AICD_SCHEMATHESIS_RANDOM=1 with other cases each run.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance
from serverproc import API, ServerProc, make_project, make_user

from aicd_testing import git, make_repo

_SCALE = float(os.environ.get("AICD_SCHEMATHESIS_SCALE", "1"))
MAX_EXAMPLES = {GenerationMode.POSITIVE: int(10 * _SCALE), GenerationMode.NEGATIVE: int(6 * _SCALE)}
CHECKS = [not_a_server_error, response_schema_conformance]
REQUEST_TIMEOUT_S = 15
# we send Authorization; PRIVATE-TOKEN and JOB-TOKEN are generated
SECURITY_HEADERS = {"Authorization", "PRIVATE-TOKEN", "JOB-TOKEN"}
CI = """\
build:
  script:
    - echo built > out.txt
    - printf '<testsuite name="s" tests="1"><testcase name="t"/></testsuite>' > report.xml
  artifacts:
    paths: [out.txt]
    reports:
      junit: report.xml
"""

# Operations whose target is destroyed or rewritten: only the throwaway target of World.real_for,
# never a generated value.
FIXED_ONLY = {
    ("DELETE", "/users/{user_id}"),
    ("DELETE", "/tokens/{token_id}"),
    ("DELETE", "/projects/{project}"),
    ("PATCH", "/projects/{project}"),
    ("PUT", "/projects/{project}/members/{user_id}"),
    ("DELETE", "/projects/{project}/members/{user_id}"),
    ("DELETE", "/runners/{runner_id}"),
}


@dataclass
class World:
    repo: Path
    real: dict[str, str]  # path parameter -> a real value
    real_for: dict[tuple[str, str], dict[str, str]]  # route -> its own real values (throwaway targets)
    names: Iterator[int] = field(default_factory=itertools.count)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProc]:
    proc = ServerProc(tmp_path / "home", f"sqlite:///{tmp_path / 'home' / 'aicd.db'}", poll=False)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(check=False)


def _world(server: ServerProc, tmp_path: Path) -> World:
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    head = git(repo, "rev-parse", "HEAD")
    for name in ("demo", "scratch", "doomed"):
        make_project(server, name, str(repo), webhook_secret="fuzz-webhook-secret")
    member_id, _ = make_user(server, "member", ("demo", "developer"))
    victim_id, _ = make_user(server, "victim")
    with server.client() as admin:
        token = admin.post(f"/users/{member_id}/tokens", json={"name": "doomed"})
        assert token.status_code == 201, token.text
        assert admin.put("/projects/demo/variables/FUZZ_VAR", json={"value": "v"}).status_code == 200
        pipeline = admin.post("/projects/demo/pipelines", json={"ref": "main"})
        assert pipeline.status_code == 201, pipeline.text
        pipeline_id = pipeline.json()["id"]
        deadline = time.monotonic() + 60
        while admin.get(f"/projects/demo/pipelines/{pipeline_id}").json()["status"] != "success":
            assert time.monotonic() < deadline, "the set-up pipeline did not succeed"
            time.sleep(0.1)
        job_id = admin.get(f"/projects/demo/pipelines/{pipeline_id}/jobs").json()[0]["id"]

        data = b"fuzz model weights"
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        assert admin.put(f"/objects/{digest}", content=data).status_code == 201
        body = {
            "artifact": {"digest": digest, "name": "m.bin"},
            "alias": "staging",
            "lineage": {"commit": head},
        }
        assert admin.post("/models/fuzz-model/versions", json=body).status_code == 201
        assert admin.put("/models/fuzz-model/aliases/doomed", json={"version": 1}).status_code == 200
        runners = [admin.post("/runners", json={"tags": ["fuzz"]}) for _ in range(2)]
        assert all(r.status_code == 201 for r in runners), [r.text for r in runners]
    real = {
        "project": "demo",
        "reader": "scratch",
        "pipeline_id": str(pipeline_id),
        "job_id": str(job_id),
        "incident_id": "1",
        "user_id": str(member_id),
        "token_id": str(token.json()["id"]),
        "key": "FUZZ_VAR",
        "provider": "github",
        "path": "out.txt",
        "name": "fuzz-model",
        "version": "1",
        "alias": "staging",
        "sha": head[:7],
        "digest": digest,
        "hook": "rollout",  # integrations: a Flagger webhook type and a canary's namespace
        "namespace": "ml",
        "runner_id": str(runners[0].json()["id"]),
        "env": "staging",  # no agent: a deploy case stops at its body (422) or its rollout
        "action": "promote",  # on an environment never deployed to: 404
    }
    real_for = {
        ("DELETE", "/users/{user_id}"): {"user_id": str(victim_id)},
        ("DELETE", "/projects/{project}"): {"project": "doomed"},
        ("PATCH", "/projects/{project}"): {"project": "scratch"},
        ("DELETE", "/models/{name}/aliases/{alias}"): {"alias": "doomed"},
        ("DELETE", "/runners/{runner_id}"): {"runner_id": str(runners[1].json()["id"])},
    }
    return World(repo=repo, real=real, real_for=real_for)


# -- steering positive cases to real values ---------------------------------------------------------


def _steer_project(world: World, case: Any) -> None:
    """The real repository and its branch; a new name (POST); other fields as generated."""
    if not isinstance(case.body, dict):
        return
    case.body["repo_url"] = str(world.repo)
    case.body["default_branch"] = "main"
    if "name" in case.body:
        case.body["name"] = f"fuzz-{next(world.names)}"


def _steer_pipeline(world: World, case: Any) -> None:
    if isinstance(case.body, dict):
        case.body["ref"] = "main"


def _steer_object(world: World, case: Any) -> None:
    data = getattr(case.body, "data", case.body)  # schemathesis wraps generated bytes in Binary
    if isinstance(data, bytes):
        case.path_parameters["digest"] = "sha256:" + hashlib.sha256(data).hexdigest()


def _steer_version(world: World, case: Any) -> None:
    if isinstance(case.body, dict) and isinstance(case.body.get("artifact"), dict):
        case.body["artifact"]["digest"] = world.real["digest"]


STEER: dict[tuple[str, str], Callable[[World, Any], None]] = {
    ("POST", "/projects"): _steer_project,
    ("PATCH", "/projects/{project}"): _steer_project,
    ("POST", "/projects/{project}/pipelines"): _steer_pipeline,
    ("PUT", "/objects/{digest}"): _steer_object,
    ("POST", "/models/{name}/versions"): _steer_version,
}


def _constrained(parameter: Any) -> bool:
    """Whether a value of the parameter can be invalid (a string without constraints cannot)."""
    schema = parameter.raw_schema
    if not isinstance(schema, dict):
        return False
    limits = {"pattern", "enum", "const", "minLength", "maxLength", "format"}
    return schema.get("type") != "string" or bool(limits & set(schema))


def _strategy(
    operation: Any, mode: GenerationMode, world: World, route: tuple[str, str], headers: dict[str, str]
) -> Any | None:
    """Cases with the real path parameters, or generated ones; None: nothing to generate.

    Negative cases need something that can be invalid: a JSON body, or a parameter with a type
    other than string or with constraints (path parameters: only generated ones)."""
    names = [p.name for p in operation.path_parameters]
    positive = mode == GenerationMode.POSITIVE
    inputs = [*operation.query, *(h for h in operation.headers if h.name not in SECURITY_HEADERS)]
    json_body = any("json" in body.media_type for body in operation.body)
    other = json_body or any(map(_constrained, inputs))
    options = []
    if positive or other:
        fixed = None
        if names:
            values = {**world.real, **world.real_for.get(route, {})}
            fixed = {n: values[n] for n in names}
        options.append(operation.as_strategy(generation_mode=mode, headers=headers, path_parameters=fixed))
    if (
        names
        and route not in FIXED_ONLY
        and (positive or other or any(map(_constrained, operation.path_parameters)))
    ):
        options.append(operation.as_strategy(generation_mode=mode, headers=headers))
    if not options:
        return None
    strategy = st.one_of(options)
    steer = STEER.get(route)
    if positive and steer is not None:

        def steered(case: Any) -> Any:
            steer(world, case)
            return case

        strategy = strategy.map(steered)
    return strategy


def _run(server: ServerProc, strategy: Any, examples: int, seen: collections.Counter[int]) -> str | None:
    """Call the operation with `examples` cases and check each response; what failed, or None."""

    @settings(
        max_examples=examples,
        derandomize=not os.environ.get("AICD_SCHEMATHESIS_RANDOM"),
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def call(case: Any) -> None:
        response = case.call(base_url=server.url, timeout=REQUEST_TIMEOUT_S)
        seen[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    try:
        call()
    except (Exception, BaseExceptionGroup) as exc:  # FailureGroup is a BaseExceptionGroup
        return str(exc)
    return None


def test_the_api_against_its_openapi_document(server: ServerProc, tmp_path: Path) -> None:
    world = _world(server, tmp_path)
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    schema = schemathesis.openapi.from_url(f"{server.url}{API}/openapi.json")
    failures: list[str] = []
    statuses: dict[tuple[str, str], collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document is valid
        operation = result.ok()
        route = (operation.method.upper(), operation.path.removeprefix(API))
        for mode, examples in MAX_EXAMPLES.items():
            strategy = _strategy(operation, mode, world, route, headers)
            if strategy is None:
                continue
            failure = _run(server, strategy, examples, statuses[route])
            if failure:
                failures.append(f"{route[0]} {route[1]} ({mode.value}): {failure}"[:3000])
    assert not failures, f"{len(failures)} operations failed:\n" + "\n\n".join(failures)

    assert len(statuses) >= 50, sorted(statuses)
    assert set(FIXED_ONLY) | set(world.real_for) | set(STEER) <= set(statuses)
    # The real values were real: each kind of target answered 2xx at least once.
    for route in [
        ("GET", "/projects/{project}/jobs/{job_id}/artifacts/{path}"),
        ("GET", "/projects/{project}/pipelines/{pipeline_id}/test_report"),
        ("GET", "/projects/{project}/jobs/{job_id}/log/stream"),
        ("GET", "/models/{name}/versions/{version}/artifact"),
        ("GET", "/lineage/commits/{sha}"),
        ("DELETE", "/tokens/{token_id}"),
        ("DELETE", "/users/{user_id}"),
        ("DELETE", "/projects/{project}"),
        ("DELETE", "/models/{name}/aliases/{alias}"),
        *STEER,
    ]:
        assert any(200 <= status < 300 for status in statuses[route]), (route, statuses[route])
    with httpx.Client(base_url=f"{server.url}{API}", headers=headers, timeout=10) as admin:
        assert admin.get("/user").json()["name"] == "admin"  # the admin's token survived
    log = server.log()
    assert "internal error" not in log and "Traceback" not in log, log[-3000:]
