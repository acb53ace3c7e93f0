"""Webhook deliveries from GitHub, GitLab and Gitea: verify, then parse (pure functions).

Authentication, per provider:

- GitHub: ``X-Hub-Signature-256: sha256=<hex>``, HMAC-SHA256 of the raw body
  keyed with the project's webhook secret.
- GitLab: ``X-Gitlab-Token``: the secret itself (compared in constant time).
- Gitea: ``X-Gitea-Signature: <hex>``, HMAC-SHA256 of the raw body.

Always verify before parsing: an unauthenticated body is never looked at.
A malformed body (not JSON, a field missing or of the wrong type) is a
ConfigError, which the server answers with HTTP 422 and the reason.

Replays: the delivery id header is not covered by the signature, so the
server records both that id and :func:`body_key` (a hash of the signed body);
either one seen before makes the delivery a replay.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

from aicd.errors import AuthError, ConfigError
from aicd.triggers.refs import check_ref_name

Provider = Literal["github", "gitlab", "gitea"]
PROVIDERS: tuple[Provider, ...] = ("github", "gitlab", "gitea")
ZERO_SHA = "0" * 40
MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub's own limit on a payload (the server's cap is a setting)

_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_EVENT_HEADER = {"github": "x-github-event", "gitlab": "x-gitlab-event", "gitea": "x-gitea-event"}
_DELIVERY_HEADER = {
    "github": "x-github-delivery",
    "gitlab": "x-gitlab-event-uuid",
    "gitea": "x-gitea-delivery",
}
_PUSH_EVENTS = {"github": {"push"}, "gitlab": {"Push Hook", "Tag Push Hook"}, "gitea": {"push"}}


@dataclass(frozen=True)
class PushEvent:
    ref: str  # "refs/heads/main" or "refs/tags/v1"
    before: str  # sha; zeros for a new ref
    after: str  # sha; zeros for a deleted ref
    deleted: bool
    user: str  # who pushed: their login ("" when the payload does not say)
    user_name: str = ""  # their full name, when the payload gives one (GitLab, Gitea)

    @property
    def is_tag(self) -> bool:
        return self.ref.startswith("refs/tags/")

    @property
    def short_ref(self) -> str:
        return self.ref.removeprefix("refs/tags/" if self.is_tag else "refs/heads/")


@dataclass(frozen=True)
class Delivery:
    provider: Provider
    kind: Literal["push", "ping", "ignored"]
    event_name: str  # the event header's value
    delivery_id: str | None  # the provider's delivery header (not signed)
    push: PushEvent | None  # for kind "push"


def check_provider(provider: str) -> Provider:
    for known in PROVIDERS:
        if provider == known:
            return known
    raise ConfigError(f"unknown webhook provider {provider!r}: use one of {', '.join(PROVIDERS)}")


def body_key(body: bytes) -> str:
    """The replay key of a body: "body:<sha256 hex>"."""
    return "body:" + hashlib.sha256(body).hexdigest()


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


def signature(secret: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of the body keyed with the secret (what GitHub and Gitea send)."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(provider: Provider, headers: Mapping[str, str], body: bytes, secret: str) -> None:
    """AuthError unless the delivery carries the right signature (or token) for `secret`."""
    lowered = _lower(headers)
    if provider == "gitlab":
        token = lowered.get("x-gitlab-token")
        if token is None:
            raise AuthError(
                "missing X-Gitlab-Token header: set the hook's secret token to the project's secret"
            )
        if not hmac.compare_digest(token.encode("utf-8"), secret.encode("utf-8")):
            raise AuthError("X-Gitlab-Token does not match the project's webhook secret")
        return
    header = "X-Hub-Signature-256" if provider == "github" else "X-Gitea-Signature"
    given = lowered.get(header.lower())
    if given is None:
        raise AuthError(f"missing {header} header: configure the hook with the project's webhook secret")
    given = given.strip()
    if provider == "github":
        if not given.startswith("sha256="):
            raise AuthError(f'{header} must look like "sha256=<hex digest>"')
        given = given[len("sha256=") :]
    if not hmac.compare_digest(given.lower().encode("ascii", "replace"), signature(secret, body).encode()):
        raise AuthError(f"{header} does not match the body signed with the project's webhook secret")


def parse(provider: Provider, headers: Mapping[str, str], body: bytes) -> Delivery:
    """What the (verified) delivery says. ConfigError for a malformed one."""
    lowered = _lower(headers)
    event_header = _EVENT_HEADER[provider]
    event = lowered.get(event_header, "").strip()
    if not event:
        raise ConfigError(f"{provider} webhook: missing {_title(event_header)} header")
    delivery_id = _clean(lowered.get(_DELIVERY_HEADER[provider], "").strip()[:150]) or None
    if provider == "github" and event == "ping":
        return Delivery(provider, "ping", event, delivery_id, None)
    if event not in _PUSH_EVENTS[provider]:
        return Delivery(provider, "ignored", event, delivery_id, None)
    payload = _load(provider, lowered, body)
    ref = _field(provider, payload, "ref")
    if not ref.startswith(("refs/heads/", "refs/tags/")) or len(ref) <= len("refs/tags/"):
        return Delivery(provider, "ignored", event, delivery_id, None)
    check_ref_name(ref, what=f"{provider} push event: ref")
    before = _sha(provider, payload, "before")
    after = _sha(provider, payload, "after")
    deleted = payload.get("deleted") is True or set(after) == {"0"}
    push = PushEvent(
        ref=ref,
        before=before,
        after=after,
        deleted=deleted,
        user=_user(provider, payload),
        user_name=_user_name(provider, payload),
    )
    return Delivery(provider, "push", event, delivery_id, push)


def _title(header: str) -> str:
    return "-".join("GitHub" if p == "github" else p.capitalize() for p in header.split("-"))


def _load(provider: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    if len(body) > MAX_BODY_BYTES:
        raise ConfigError(f"{provider} webhook: body of {len(body)} bytes is larger than {MAX_BODY_BYTES}")
    if not body.strip():
        raise ConfigError(f"{provider} webhook: the body is empty; expected the push event as JSON")
    text: str | bytes = body
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":  # GitHub's other content type
        form = parse_qs(body.decode("utf-8", errors="replace"))
        if "payload" not in form:
            raise ConfigError(f"{provider} webhook: form body without a 'payload' field")
        text = form["payload"][0]
    try:
        payload = json.loads(text)
    except RecursionError:
        raise ConfigError(f"{provider} webhook: the JSON body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{provider} webhook: the body is not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise ConfigError(f"{provider} webhook: the body must be a JSON object, not {type(payload).__name__}")
    return payload


def _field(provider: str, payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name)
    if value is None:
        raise ConfigError(f"{provider} push event: field {name!r} is missing")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{provider} push event: field {name!r} must be a non-empty string")
    return value


def _sha(provider: str, payload: Mapping[str, Any], name: str) -> str:
    value = _field(provider, payload, name).lower()
    if not _SHA.fullmatch(value):
        raise ConfigError(f"{provider} push event: field {name!r} is not a commit SHA: {value[:80]!r}")
    return value


def _user(provider: str, payload: Mapping[str, Any]) -> str:
    candidates: list[object] = []
    if provider == "gitlab":
        candidates = [payload.get("user_username"), payload.get("user_name")]
    for key in ("pusher", "sender"):
        who = payload.get(key)
        if isinstance(who, Mapping):
            candidates += [who.get("login"), who.get("username"), who.get("name")]
    for candidate in candidates:
        if isinstance(candidate, str) and _clean(candidate):
            return _clean(candidate[:200])
    return ""


def _user_name(provider: str, payload: Mapping[str, Any]) -> str:
    """The pusher's full name: GitLab's user_name, Gitea's pusher.full_name ("" if none)."""
    candidate: object = None
    if provider == "gitlab":
        candidate = payload.get("user_name")
    elif provider == "gitea":
        who = payload.get("pusher")
        candidate = who.get("full_name") if isinstance(who, Mapping) else None
    return _clean(candidate[:200]) if isinstance(candidate, str) else ""


def _clean(text: str) -> str:
    """Text of the payload for the database and a job's environment: control characters and lone
    surrogates (which no database column or environment can hold) dropped."""
    if text.isprintable() and text.isascii():
        return text
    kept = "".join(c for c in text if ord(c) >= 32 and c != "\x7f" and not 0xD800 <= ord(c) <= 0xDFFF)
    return kept
