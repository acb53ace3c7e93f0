"""Runners: registered `aicd worker`s, with GitLab's runner semantics for tags.

An admin registers a runner (`aicd runner register --tags gpu,cuda`); the server
keeps its token's SHA-256 only and shows the token once. A job may run on a
runner when every tag of the job is one of the runner's, and an untagged job
only on a runner that takes untagged jobs (`run_untagged`) -- GitLab's rule.

Work reaches workers through broker queues: one queue per set of job tags
(`queue_for`), and a worker consumes the queue of every non-empty subset of its
tags, plus the untagged queue when it runs untagged jobs (`queues_of`). So a job
tagged `gpu` waits only in a queue that workers declaring `gpu` read.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from itertools import combinations
from typing import TYPE_CHECKING, Literal

from aicd.core.access import hash_token
from aicd.errors import AuthError, ConfigError

if TYPE_CHECKING:
    from aicd.store.runners import RunnerRecord, RunnerStore

RUNNER_TOKEN_PREFIX = "aicdrt_"  # told apart from API and job tokens before any lookup
ONLINE_WITHIN_S = 60.0  # a runner seen within the last minute is online (GitLab's rule)
MAX_TAGS = 8  # a worker reads 2**tags - 1 queues
MAX_TAG_LENGTH = 64
MAX_DESCRIPTION_LENGTH = 500
MAX_REPORTED_LENGTH = 200  # version and host as a worker tells them
QUEUE_PREFIX = "aicd.jobs"
UNTAGGED_QUEUE = f"{QUEUE_PREFIX}.untagged"

_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]*\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

RunnerStatus = Literal["online", "offline", "never_contacted"]


def new_runner_token() -> str:
    """A new runner token: "aicdrt_" and 40 URL-safe characters (240 random bits)."""
    return RUNNER_TOKEN_PREFIX + secrets.token_urlsafe(30)


def parse_tags(tags: str | Iterable[str]) -> tuple[str, ...]:
    """Runner or job tags from "gpu,cuda" or a list: checked, without duplicates, sorted.

    ConfigError names the first bad tag and what a tag may be.
    """
    items = tags.split(",") if isinstance(tags, str) else list(tags)
    found: set[str] = set()
    for item in items:
        tag = item.strip()
        if not tag and isinstance(tags, str):
            continue  # "gpu," or "" : nothing between the commas
        if len(tag) > MAX_TAG_LENGTH or not _TAG.match(tag):
            raise ConfigError(
                f"runner tag {tag[:MAX_TAG_LENGTH]!r}: a tag is letters, digits and _ . : + - "
                f"(starting with a letter or digit, at most {MAX_TAG_LENGTH} characters)"
            )
        found.add(tag)
    if len(found) > MAX_TAGS:
        raise ConfigError(f"runner tags: {len(found)} given, at most {MAX_TAGS}")
    return tuple(sorted(found))


def check_description(description: str) -> str:
    text = description.strip()
    if len(text) > MAX_DESCRIPTION_LENGTH:
        raise ConfigError(f"runner description: at most {MAX_DESCRIPTION_LENGTH} characters")
    if _CONTROL.search(text):
        raise ConfigError("runner description: no control characters or direction overrides")
    return text


def reported(value: str | None) -> str | None:
    """A version or host name as a worker tells it: shortened, control characters dropped."""
    if value is None:
        return None
    text = _CONTROL.sub("", value).strip()[:MAX_REPORTED_LENGTH]
    return text or None


def register(
    store: RunnerStore, *, tags: str | Iterable[str], run_untagged: bool, description: str, actor: str
) -> tuple[RunnerRecord, str]:
    """Register a runner: (its row, its token -- shown once, only its hash is kept)."""
    checked = parse_tags(tags)
    if not checked and not run_untagged:
        raise ConfigError("a runner without tags must take untagged jobs: give --tags, or --run-untagged")
    text = check_description(description)
    token = new_runner_token()
    record = store.create(
        hash_token(token), tags=checked, run_untagged=run_untagged, description=text, created_by=actor
    )
    return record, token


def authenticate(store: RunnerStore, token: str, *, version: str | None, host: str | None) -> RunnerRecord:
    """The runner a worker's token belongs to (its contact recorded); AuthError otherwise."""
    if not token.startswith(RUNNER_TOKEN_PREFIX):
        raise AuthError(
            "not a runner token (they start with aicdrt_; an admin makes one: aicd runner register)"
        )
    record = store.contact(hash_token(token), version=reported(version), host=reported(host))
    if record is None:
        raise AuthError("unknown runner token (the runner was deleted, or the token is mistyped)")
    return record


def identify(store: RunnerStore, token: str) -> RunnerRecord:
    """The runner a worker's token belongs to, without recording a contact; AuthError otherwise."""
    if not token.startswith(RUNNER_TOKEN_PREFIX):
        raise AuthError(
            "not a runner token (they start with aicdrt_; an admin makes one: aicd runner register)"
        )
    record = store.by_token_hash(hash_token(token))
    if record is None:
        raise AuthError("unknown runner token (the runner was deleted, or the token is mistyped)")
    return record


def status(record: RunnerRecord, now: float | None = None) -> RunnerStatus:
    """online (seen within the last minute), offline, or never_contacted."""
    if record.contacted_at is None:
        return "never_contacted"
    now = time.time() if now is None else now
    return "online" if now - record.contacted_at <= ONLINE_WITHIN_S else "offline"


def can_run(record: RunnerRecord, job_tags: Iterable[str]) -> bool:
    """GitLab's rule: every job tag is a runner tag; an untagged job needs run_untagged."""
    wanted = set(job_tags)
    if not wanted:
        return record.run_untagged
    return wanted <= set(record.tags)


def queue_for(job_tags: Iterable[str], prefix: str = QUEUE_PREFIX) -> str:
    """The broker queue of a job with these tags (the server's AICD_QUEUE_PREFIX first)."""
    tags = sorted(set(job_tags))
    return f"{prefix}.tags.{'+'.join(tags)}" if tags else f"{prefix}.untagged"


def queues_of(record: RunnerRecord, prefix: str = QUEUE_PREFIX) -> list[str]:
    """Every queue a runner reads: one per non-empty subset of its tags, and the untagged one."""
    tags = sorted(record.tags)
    names = [queue_for(subset, prefix) for n in range(1, len(tags) + 1) for subset in combinations(tags, n)]
    if record.run_untagged:
        names.append(queue_for((), prefix))
    return names


def why_waiting(
    runners: Iterable[RunnerRecord], job_tags: Iterable[str], now: float | None = None
) -> str | None:
    """Why a job with these tags would wait: None when an online, active runner can take it."""
    tags = sorted(set(job_tags))
    able = [r for r in runners if can_run(r, tags)]
    if any(not r.paused and status(r, now) == "online" for r in able):
        return None
    what = f"tags {', '.join(tags)}" if tags else "untagged jobs"
    if not able:
        return f"no worker with {what}"
    if all(r.paused for r in able):
        return f"every worker with {what} is paused"
    return f"no worker with {what} is online"
