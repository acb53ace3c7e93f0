"""Predefined CI/CD variables: values, slugs, environment variables."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from aicd.pipeline.ir import Environment, Job, Variable
from aicd.pipeline.predefined import (
    environment_slug,
    guess_tier,
    job_variables,
    pipeline_variables,
    remote_project_path,
    slugify,
)
from aicd.vcs import ZERO_SHA, GitInfo

SHA = "7fd45781babf67b24414ae34ae91d1f83562cd11"


def info(**kw: object) -> GitInfo:
    base: dict[str, object] = {
        "is_repo": True,
        "sha": SHA,
        "short_sha": SHA[:8],
        "ref_name": "feature/Login-Page",
        "branch": "feature/Login-Page",
        "tag": None,
        "message": "Add login\n\nWith a form.",
        "title": "Add login",
        "description": "With a form.",
        "timestamp": "2024-05-01T12:00:00+02:00",
        "author": "Ada <ada@example.com>",
        "default_branch": "main",
        "before_sha": ZERO_SHA,
        "author_name": "Ada",
        "author_email": "ada@example.com",
    }
    base.update(kw)
    return GitInfo(**base)  # type: ignore[arg-type]


def as_dict(variables: list[Variable]) -> dict[str, str]:
    assert all(not v.expand for v in variables), "predefined variables are raw"
    keys = [v.key for v in variables]
    assert len(keys) == len(set(keys)), "no key twice"
    return {v.key: v.value for v in variables}


def pipeline(git: GitInfo | None = None, **kw: object) -> dict[str, str]:
    args: dict[str, object] = {
        "pipeline_id": 42,
        "pipeline_iid": 7,
        "source": "push",
        "project_dir": Path("/work/projects/my-model"),
        "created_at": 1_700_000_000.0,
        "user_login": "ada",
    }
    args.update(kw)
    return as_dict(pipeline_variables(git or info(), **args))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ref", "slug"),
    [
        ("main", "main"),
        ("feature/Login-Page", "feature-login-page"),
        ("v1.2.3", "v1-2-3"),
        ("UPPER_case", "upper-case"),
        ("-leading-and-trailing-", "leading-and-trailing"),
        ("a//b", "a--b"),  # GitLab does not squeeze dashes here
        ("émoji✓", "-moji-".strip("-")),
        ("x" * 70, "x" * 63),
        ("x" * 62 + "/y", "x" * 62),  # cut to 63, then trailing - removed
        ("", ""),
        ("123", "123"),
    ],
)
def test_slugify(ref: str, slug: str) -> None:
    assert slugify(ref) == slug


def _suffix(name: str) -> str:
    # base 36 of the SHA-256, as in GitLab; computed differently from the module
    n = int(hashlib.sha256(name.encode()).hexdigest(), 16)
    digits = []
    while n:
        n, r = divmod(n, 36)
        digits.append("0123456789abcdefghijklmnopqrstuvwxyz"[r])
    return "".join(reversed(digits))[-6:]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("production", "production"),
        ("staging-1234567890123456", "staging-1234567890123456"),  # 24 chars, unchanged
        ("foo-", "foo"),  # unchanged but for the trailing dash
        ("staging-12345678-", "staging-12345678"),
        ("PRODUCTION", "production-{s}"),
        ("review/1-foo", "review-1-foo-{s}"),
        ("1-foo", "env-1-foo-{s}"),
        ("1/foo", "env-1-foo-{s}"),
        ("foo--bar", "foo-bar-{s}"),
        ("foo**bar", "foo-bar-{s}"),
        ("*-foo", "env-foo-{s}"),
        ("staging-12345678901234567", "staging-123456789-{s}"),
        ("9-staging-123456789012345", "env-9-staging-123-{s}"),
        ("staging-1234567890123456-", "staging-123456789-{s}"),
        ("staging-12345678-01234567", "staging-12345678-{s}"),  # cut ends in '-': no second dash
        ("", "env-{s}"),
    ],
)
def test_environment_slug(name: str, expected: str) -> None:
    slug = environment_slug(name)
    assert slug == expected.format(s=_suffix(name))
    assert len(slug) <= 24
    assert re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", slug)
    assert "--" not in slug


def test_environment_slug_keeps_distinct_names_distinct() -> None:
    assert environment_slug("review/a") != environment_slug("review-a")
    assert environment_slug("Review/A") == environment_slug("Review/A")


@pytest.mark.parametrize(
    ("name", "tier"),
    [
        ("production", "production"),
        ("prod", "production"),
        ("live", "production"),
        ("staging", "staging"),
        ("stg", "staging"),
        ("pre-prod", "staging"),  # 'pre' is checked before 'prod', as in GitLab
        ("demo", "staging"),
        ("test", "testing"),
        ("qa", "testing"),
        ("integration", "testing"),
        ("development", "development"),
        ("review/feature-x", "development"),
        ("canary", "other"),
        ("notprod", "production"),
    ],
)
def test_guess_tier(name: str, tier: str) -> None:
    assert guess_tier(name) == tier


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("git@gitlab.com:group/sub/project.git", "group/sub/project"),
        ("https://gitlab.com/group/project.git", "group/project"),
        ("https://gitlab.example.com:8443/a/b/c", "a/b/c"),
        ("ssh://git@host:2222/team/repo.git", "team/repo"),
        ("https://host/onlyname.git", None),
        ("file:///srv/git/repo.git", None),
        ("/srv/git/repo.git", None),
        ("", None),
    ],
)
def test_remote_project_path(url: str, path: str | None) -> None:
    assert remote_project_path(url) == path


def test_pipeline_variables_for_a_branch() -> None:
    v = pipeline()
    assert v["CI"] == "true"
    assert v["GITLAB_CI"] == "false"
    assert v["CI_SERVER"] == "yes"
    assert v["CI_COMMIT_SHA"] == SHA
    assert v["CI_COMMIT_SHORT_SHA"] == SHA[:8]
    assert v["CI_COMMIT_BEFORE_SHA"] == ZERO_SHA
    assert v["CI_COMMIT_REF_NAME"] == "feature/Login-Page"
    assert v["CI_COMMIT_REF_SLUG"] == "feature-login-page"
    assert v["CI_COMMIT_BRANCH"] == "feature/Login-Page"
    assert "CI_COMMIT_TAG" not in v
    assert v["CI_COMMIT_MESSAGE"] == "Add login\n\nWith a form."
    assert v["CI_COMMIT_TITLE"] == "Add login"
    assert v["CI_COMMIT_DESCRIPTION"] == "With a form."
    assert v["CI_COMMIT_TIMESTAMP"] == "2024-05-01T12:00:00+02:00"
    assert v["CI_COMMIT_AUTHOR"] == "Ada <ada@example.com>"
    assert v["CI_DEFAULT_BRANCH"] == "main"
    assert v["CI_PIPELINE_ID"] == "42"
    assert v["CI_PIPELINE_IID"] == "7"
    assert v["CI_PIPELINE_SOURCE"] == "push"
    assert v["CI_PIPELINE_CREATED_AT"] == "2023-11-14T22:13:20Z"
    assert v["CI_PROJECT_DIR"] == "/work/projects/my-model"
    assert v["CI_PROJECT_NAME"] == "my-model"
    assert v["CI_PROJECT_TITLE"] == "my-model"
    assert v["CI_PROJECT_NAMESPACE"] == "local"
    assert v["CI_PROJECT_PATH"] == "local/my-model"
    assert v["CI_PROJECT_PATH_SLUG"] == "local-my-model"
    assert v["CI_BUILDS_DIR"] == "/work/projects"
    assert v["CI_CONFIG_PATH"] == ".gitlab-ci.yml"
    assert v["CI_REPOSITORY_URL"] == "file:///work/projects/my-model"
    assert v["CI_PROJECT_URL"] == "http://localhost/local/my-model"
    assert v["CI_PIPELINE_URL"] == "http://localhost/local/my-model/-/pipelines/42"
    assert v["CI_SERVER_HOST"] == "localhost"
    assert v["CI_SERVER_PORT"] == "80"
    assert v["GITLAB_USER_LOGIN"] == "ada"
    assert v["GITLAB_USER_NAME"] == "Ada"
    assert v["GITLAB_USER_EMAIL"] == "ada@example.com"


def test_pipeline_variables_for_a_tag_and_a_remote() -> None:
    git = info(
        ref_name="v1.0",
        branch=None,
        tag="v1.0",
        remote_url="https://gitlab.example.com/ml/team/my-model.git",
    )
    v = pipeline(git, server_url="https://ci.example.com:8443/", config_path="ci/pipeline.yml", source="web")
    assert v["CI_COMMIT_TAG"] == "v1.0"
    assert "CI_COMMIT_BRANCH" not in v
    assert v["CI_COMMIT_REF_SLUG"] == "v1-0"
    assert v["CI_PROJECT_NAMESPACE"] == "ml/team"
    assert v["CI_PROJECT_ROOT_NAMESPACE"] == "ml"
    assert v["CI_PROJECT_PATH"] == "ml/team/my-model"
    assert v["CI_PROJECT_PATH_SLUG"] == "ml-team-my-model"
    assert v["CI_REPOSITORY_URL"] == "https://gitlab.example.com/ml/team/my-model.git"
    assert v["CI_SERVER_URL"] == "https://ci.example.com:8443"
    assert v["CI_SERVER_PORT"] == "8443"
    assert v["CI_SERVER_PROTOCOL"] == "https"
    assert v["CI_PIPELINE_URL"] == "https://ci.example.com:8443/ml/team/my-model/-/pipelines/42"
    assert v["CI_CONFIG_PATH"] == "ci/pipeline.yml"
    assert v["CI_PIPELINE_SOURCE"] == "web"


def test_detached_commit_has_neither_branch_nor_tag() -> None:
    v = pipeline(info(ref_name=SHA[:8], branch=None, tag=None))
    assert "CI_COMMIT_BRANCH" not in v
    assert "CI_COMMIT_TAG" not in v
    assert v["CI_COMMIT_REF_NAME"] == SHA[:8]


PIPE = {
    "CI_PROJECT_URL": "http://localhost/local/p",
    "CI_COMMIT_REF_SLUG": "feature-x",
    "STAGE_NAME": "from-pipeline",
}


def job(**kw: object) -> Job:
    base: dict[str, object] = {
        "name": "deploy",
        "base_name": "deploy",
        "stage": "deploy",
        "script": ("true",),
    }
    base.update(kw)
    return Job(**base)  # type: ignore[arg-type]


def jobvars(j: Job, **kw: object) -> dict[str, str]:
    return as_dict(job_variables(j, job_id=1001, pipeline_vars=PIPE, started_at=1_700_000_060.0, **kw))  # type: ignore[arg-type]


def test_job_variables_basic() -> None:
    v = jobvars(job(name="Build: [Linux, AMD64]", base_name="Build", stage="build", timeout_s=600.0))
    assert v["CI_JOB_ID"] == "1001"
    assert v["CI_JOB_NAME"] == "Build: [Linux, AMD64]"
    assert v["CI_JOB_NAME_SLUG"] == "build---linux--amd64"
    assert v["CI_JOB_GROUP_NAME"] == "Build"
    assert v["CI_JOB_STAGE"] == "build"
    assert v["CI_JOB_STATUS"] == "running"
    assert v["CI_JOB_URL"] == "http://localhost/local/p/-/jobs/1001"
    assert v["CI_JOB_STARTED_AT"] == "2023-11-14T22:14:20Z"
    assert v["CI_JOB_TIMEOUT"] == "600"
    assert v["CI_NODE_TOTAL"] == "1"
    assert "CI_NODE_INDEX" not in v
    assert "CI_JOB_MANUAL" not in v
    assert not any(k.startswith("CI_ENVIRONMENT") for k in v)


def test_job_variables_parallel_manual_image() -> None:
    v = jobvars(
        job(name="test 2/3", base_name="test", node_index=2, node_total=3, when="manual", image="python:3.11")
    )
    assert (v["CI_NODE_INDEX"], v["CI_NODE_TOTAL"]) == ("2", "3")
    assert v["CI_JOB_MANUAL"] == "true"
    assert v["CI_JOB_IMAGE"] == "python:3.11"
    assert v["CI_JOB_TIMEOUT"] == "3600"


def test_job_environment_is_expanded_with_job_and_pipeline_variables() -> None:
    j = job(
        stage="review",
        variables=(
            Variable(key="APP", value="shop"),
            Variable(key="HOST", value="$APP.example.com"),  # nested
        ),
        environment=Environment(
            name="review/$CI_COMMIT_REF_SLUG/$CI_JOB_STAGE", url="https://$HOST/$STAGE_NAME"
        ),
    )
    v = jobvars(j)
    assert v["CI_ENVIRONMENT_NAME"] == "review/feature-x/review"
    assert v["CI_ENVIRONMENT_SLUG"] == environment_slug("review/feature-x/review")
    assert v["CI_ENVIRONMENT_URL"] == "https://shop.example.com/from-pipeline"
    assert v["CI_ENVIRONMENT_TIER"] == "development"
    assert v["CI_ENVIRONMENT_ACTION"] == "start"


def test_job_environment_overrides_and_explicit_tier() -> None:
    j = job(
        variables=(Variable(key="TARGET", value="staging"),),
        environment=Environment(name="$TARGET", action="stop", deployment_tier="production"),
    )
    v = jobvars(j, overrides={"TARGET": "prod-eu"})
    assert v["CI_ENVIRONMENT_NAME"] == "prod-eu"
    assert v["CI_ENVIRONMENT_TIER"] == "production"
    assert v["CI_ENVIRONMENT_ACTION"] == "stop"
    assert "CI_ENVIRONMENT_URL" not in v
    assert jobvars(j)["CI_ENVIRONMENT_NAME"] == "staging"


def test_matrix_variables_are_not_predefined() -> None:
    j = job(name="t: [a]", matrix=(("PY", "a"),), variables=(Variable(key="PY", value="a"),))
    assert "PY" not in jobvars(j)
