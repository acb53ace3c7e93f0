"""Webhook deliveries shaped like the real ones (fields as GitHub, GitLab and Gitea send them).

`delivery(provider, secret, ref, before, after)` -> (headers, body) signed as that provider signs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

ZERO = "0" * 40


def github_push(ref: str, before: str, after: str, *, deleted: bool = False) -> dict[str, Any]:
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "repository": {
            "id": 35129377,
            "node_id": "MDEwOlJlcG9zaXRvcnkzNTEyOTM3Nw==",
            "name": "demo",
            "full_name": "octo/demo",
            "private": False,
            "owner": {"name": "octo", "email": None, "login": "octo", "id": 21031067},
            "html_url": "https://github.com/octo/demo",
            "clone_url": "https://github.com/octo/demo.git",
            "default_branch": "main",
        },
        "pusher": {"name": "octo", "email": "octo@example.com"},
        "sender": {"login": "octo", "id": 21031067, "type": "User"},
        "created": before == ZERO,
        "deleted": deleted,
        "forced": False,
        "base_ref": None,
        "compare": f"https://github.com/octo/demo/compare/{before[:12]}...{after[:12]}",
        "commits": [] if deleted else [{"id": after, "message": "change", "distinct": True}],
        "head_commit": None if deleted else {"id": after, "message": "change", "tree_id": "a" * 40},
    }


def gitlab_push(ref: str, before: str, after: str) -> dict[str, Any]:
    tag = ref.startswith("refs/tags/")
    return {
        "object_kind": "tag_push" if tag else "push",
        "event_name": "tag_push" if tag else "push",
        "before": before,
        "after": after,
        "ref": ref,
        "ref_protected": True,
        "checkout_sha": None if after == ZERO else after,
        "message": None,
        "user_id": 4,
        "user_name": "John Smith",
        "user_username": "jsmith",
        "user_email": "john@example.com",
        "user_avatar": "https://s.gravatar.com/avatar/d4c74594d841139328695756648b6bd6?s=8://s.gravatar.com",
        "project_id": 15,
        "project": {
            "id": 15,
            "name": "Diaspora",
            "web_url": "http://example.com/mike/diaspora",
            "git_http_url": "http://example.com/mike/diaspora.git",
            "path_with_namespace": "mike/diaspora",
            "default_branch": "main",
        },
        "commits": [] if after == ZERO else [{"id": after, "message": "change", "title": "change"}],
        "total_commits_count": 0 if after == ZERO else 1,
        "repository": {"name": "Diaspora", "url": "git@example.com:mike/diaspora.git"},
    }


def gitea_push(ref: str, before: str, after: str) -> dict[str, Any]:
    user = {"id": 1, "login": "gitea", "full_name": "", "email": "gitea@example.com", "username": "gitea"}
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "compare_url": f"http://localhost:3000/gitea/webhooks/compare/{before}...{after}",
        "commits": [] if after == ZERO else [{"id": after, "message": "change\n", "url": "http://x"}],
        "total_commits": 0 if after == ZERO else 1,
        "head_commit": None if after == ZERO else {"id": after, "message": "change\n"},
        "repository": {"id": 140, "owner": user, "name": "webhooks", "full_name": "gitea/webhooks"},
        "pusher": user,
        "sender": user,
    }


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery(
    provider: str,
    secret: str | None,
    ref: str,
    before: str,
    after: str,
    *,
    delivery_id: str | None = None,
    body: bytes | None = None,
) -> tuple[dict[str, str], bytes]:
    """(headers, body) of a push, signed with `secret` (None: no signature header)."""
    delivery_id = delivery_id or str(uuid.uuid4())
    tag = ref.startswith("refs/tags/")
    headers = {"Content-Type": "application/json", "User-Agent": f"{provider}-hookshot"}
    if provider == "github":
        payload = github_push(ref, before, after, deleted=after == ZERO)
        headers |= {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery_id, "X-GitHub-Hook-ID": "1"}
    elif provider == "gitlab":
        payload = gitlab_push(ref, before, after)
        event = "Tag Push Hook" if tag else "Push Hook"
        headers |= {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": delivery_id, "X-Gitlab-Instance": "x"}
    else:
        payload = gitea_push(ref, before, after)
        headers |= {"X-Gitea-Event": "push", "X-Gitea-Delivery": delivery_id, "X-Gitea-Event-Type": "push"}
    if body is None:
        body = json.dumps(payload).encode()
    if secret is not None:
        if provider == "github":
            headers["X-Hub-Signature-256"] = "sha256=" + sign(secret, body)
        elif provider == "gitlab":
            headers["X-Gitlab-Token"] = secret
        else:
            headers["X-Gitea-Signature"] = sign(secret, body)
    return headers, body
