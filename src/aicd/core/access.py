"""Who is calling and what they may do: roles, principals, API tokens (only their hash is kept)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from aicd.errors import ConfigError

if TYPE_CHECKING:
    from aicd.store.job_tokens import JobTokenScope

TOKEN_PREFIX = "aicd_"
JOB_TOKEN_PREFIX = "aicdjob_"  # CI_JOB_TOKEN: told apart from API tokens before any lookup


class Role(IntEnum):
    VIEWER = 1
    DEVELOPER = 2
    MAINTAINER = 3

    @property
    def label(self) -> str:
        """The name the API and the database use: viewer, developer, maintainer."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            choices = ", ".join(role.label for role in cls)
            raise ConfigError(f"unknown role {text!r}: expected one of {choices}") from None


@dataclass(frozen=True)
class Principal:
    """Who calls: a user (API token), or a running job (CI_JOB_TOKEN: `job` set, `user_id` 0)."""

    user_id: int
    name: str
    is_admin: bool
    job: JobTokenScope | None = None


def new_token() -> str:
    """A new API token: "aicd_" and 40 URL-safe characters (240 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(30)


def new_job_token() -> str:
    """A new CI_JOB_TOKEN: "aicdjob_" and 40 URL-safe characters (240 random bits)."""
    return JOB_TOKEN_PREFIX + secrets.token_urlsafe(30)


def hash_token(token: str) -> str:
    """What the database keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
