"""Who is calling and what they may do: roles, principals, API tokens (only their hash is kept)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import IntEnum

from aicd.errors import ConfigError

TOKEN_PREFIX = "aicd_"


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
    user_id: int
    name: str
    is_admin: bool


def new_token() -> str:
    """A new API token: "aicd_" and 40 URL-safe characters (240 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(30)


def hash_token(token: str) -> str:
    """What the database keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
