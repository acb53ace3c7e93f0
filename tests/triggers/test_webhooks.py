"""Verifying and parsing webhook deliveries of GitHub, GitLab and Gitea (pure functions)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from aicd.errors import AuthError, ConfigError
from aicd.triggers import webhooks
from aicd.triggers.webhooks import PROVIDERS, Provider

from .payloads import ZERO, delivery, sign

SECRET = "s3cret-value-123"
A = "a" * 40
B = "b" * 40


@pytest.mark.parametrize("provider", PROVIDERS)
def test_valid_push_verifies_and_parses(provider: Provider) -> None:
    headers, body = delivery(provider, SECRET, "refs/heads/main", A, B, delivery_id="d-1")
    webhooks.verify(provider, headers, body, SECRET)
    parsed = webhooks.parse(provider, headers, body)
    assert parsed.kind == "push"
    assert parsed.delivery_id == "d-1"
    assert parsed.push is not None
    assert (parsed.push.ref, parsed.push.before, parsed.push.after) == ("refs/heads/main", A, B)
    assert parsed.push.short_ref == "main" and not parsed.push.is_tag and not parsed.push.deleted
    assert parsed.push.user in ("octo", "jsmith", "gitea")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tag_push(provider: Provider) -> None:
    headers, body = delivery(provider, SECRET, "refs/tags/v1.0", ZERO, B)
    push = webhooks.parse(provider, headers, body).push
    assert push is not None and push.is_tag and push.short_ref == "v1.0" and not push.deleted


@pytest.mark.parametrize("provider", PROVIDERS)
def test_branch_deletion_is_marked_deleted(provider: Provider) -> None:
    headers, body = delivery(provider, SECRET, "refs/heads/feature", A, ZERO)
    push = webhooks.parse(provider, headers, body).push
    assert push is not None and push.deleted


@pytest.mark.parametrize("provider", PROVIDERS)
def test_wrong_secret_is_refused(provider: Provider) -> None:
    headers, body = delivery(provider, "another-secret-1", "refs/heads/main", A, B)
    with pytest.raises(AuthError):
        webhooks.verify(provider, headers, body, SECRET)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_missing_signature_is_refused_and_named(provider: Provider) -> None:
    headers, body = delivery(provider, None, "refs/heads/main", A, B)
    with pytest.raises(AuthError, match="missing X-"):
        webhooks.verify(provider, headers, body, SECRET)


@pytest.mark.parametrize("provider", ["github", "gitea"])
def test_signature_covers_the_body(provider: Provider) -> None:
    headers, body = delivery(provider, SECRET, "refs/heads/main", A, B)
    tampered = body.replace(B.encode(), A.encode())
    with pytest.raises(AuthError, match="does not match"):
        webhooks.verify(provider, headers, tampered, SECRET)


def test_github_signature_needs_the_sha256_prefix() -> None:
    headers, body = delivery("github", SECRET, "refs/heads/main", A, B)
    headers["X-Hub-Signature-256"] = sign(SECRET, body)  # no "sha256="
    with pytest.raises(AuthError, match="sha256="):
        webhooks.verify("github", headers, body, SECRET)


def test_headers_are_case_insensitive() -> None:
    headers, body = delivery("github", SECRET, "refs/heads/main", A, B)
    lowered = {k.lower(): v for k, v in headers.items()}
    webhooks.verify("github", lowered, body, SECRET)
    assert webhooks.parse("github", lowered, body).kind == "push"


def test_gitlab_token_is_compared_exactly() -> None:
    headers, body = delivery("gitlab", SECRET, "refs/heads/main", A, B)
    headers["X-Gitlab-Token"] = SECRET + " "
    with pytest.raises(AuthError):
        webhooks.verify("gitlab", headers, body, SECRET)


def test_github_ping_and_other_events() -> None:
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    ping = webhooks.parse("github", {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "x"}, body)
    assert ping.kind == "ping"
    issue = webhooks.parse("github", {"X-GitHub-Event": "issues"}, b"{}")
    assert issue.kind == "ignored" and issue.event_name == "issues"
    merge = webhooks.parse("gitlab", {"X-Gitlab-Event": "Merge Request Hook"}, b"{}")
    assert merge.kind == "ignored"


def test_non_branch_refs_are_ignored() -> None:
    headers, body = delivery("gitea", SECRET, "refs/notes/commits", A, B)
    assert webhooks.parse("gitea", headers, body).kind == "ignored"


def test_github_form_encoded_body() -> None:
    _, body = delivery("github", SECRET, "refs/heads/dev", A, B)
    form = urlencode({"payload": body.decode()}).encode()
    headers = {"X-GitHub-Event": "push", "Content-Type": "application/x-www-form-urlencoded"}
    push = webhooks.parse("github", headers, form).push
    assert push is not None and push.ref == "refs/heads/dev"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "body is empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (json.dumps({"before": A, "after": B}).encode(), "field 'ref' is missing"),
        (json.dumps({"ref": "refs/heads/main", "after": B}).encode(), "field 'before' is missing"),
        (json.dumps({"ref": "refs/heads/main", "before": A, "after": 5}).encode(), "'after' must be"),
        (json.dumps({"ref": "refs/heads/main", "before": A, "after": "xyz"}).encode(), "not a commit SHA"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_malformed_bodies_are_clear_config_errors(provider: Provider, body: bytes, message: str) -> None:
    headers, _ = delivery(provider, SECRET, "refs/heads/main", A, B)
    with pytest.raises(ConfigError, match=message) as info:
        webhooks.parse(provider, headers, body)
    assert provider in str(info.value)


def test_missing_event_header() -> None:
    with pytest.raises(ConfigError, match="missing X-GitHub-Event header"):
        webhooks.parse("github", {}, b"{}")
    with pytest.raises(ConfigError, match="missing X-Gitlab-Event header"):
        webhooks.parse("gitlab", {}, b"{}")


def test_body_key_depends_on_the_body_only() -> None:
    _, body = delivery("github", SECRET, "refs/heads/main", A, B)
    assert webhooks.body_key(body) == webhooks.body_key(bytes(body))
    assert webhooks.body_key(body) != webhooks.body_key(body + b" ")
    assert webhooks.body_key(body).startswith("body:") and len(webhooks.body_key(body)) == 69


def test_check_provider() -> None:
    assert webhooks.check_provider("gitea") == "gitea"
    with pytest.raises(ConfigError, match="github, gitlab, gitea"):
        webhooks.check_provider("bitbucket")


def test_deeply_nested_json_is_a_config_error() -> None:
    headers, _ = delivery("github", SECRET, "refs/heads/main", A, B)
    with pytest.raises(ConfigError, match="nested too deeply"):
        webhooks.parse("github", headers, b"[" * 100_000 + b"]" * 100_000)


def test_refs_and_pushers_are_checked_after_the_signature() -> None:
    """Issue 11: refs with control characters, `..` or 10,000 characters created pipelines; a
    pusher's name with NUL reached the database."""
    for ref in ("refs/heads/ma\nin", "refs/heads/ma\x00in", "refs/heads/../x", "refs/heads/" + "a" * 10_000):
        payload = json.loads(delivery("github", "s3cret-secret", "refs/heads/main", ZERO, "a" * 40)[1])
        payload["ref"] = ref
        headers, body = delivery(
            "github", "s3cret-secret", "refs/heads/main", ZERO, "a" * 40, body=json.dumps(payload).encode()
        )
        with pytest.raises(ConfigError, match="not a valid git ref name"):
            webhooks.parse("github", headers, body)
    payload = json.loads(delivery("gitea", "s3cret-secret", "refs/heads/main", ZERO, "a" * 40)[1])
    payload["pusher"] = {"login": "ev\x00il\x1b[2J", "full_name": "Na\x00me\ud800"}
    headers, body = delivery(
        "gitea", "s3cret-secret", "refs/heads/main", ZERO, "a" * 40, body=json.dumps(payload).encode()
    )
    push = webhooks.parse("gitea", headers, body).push
    assert push is not None and (push.user, push.user_name) == ("evil[2J", "Name")
