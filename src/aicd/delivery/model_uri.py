"""Model URIs and names: ``models:/iris@production``, ``models:/iris/3``, ``models:/iris`` (latest)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aicd.errors import ConfigError

SCHEME = "models:/"
LATEST = "latest"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
ALIAS_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")
FORMS = "models:/NAME@ALIAS, models:/NAME/VERSION or models:/NAME (the latest version)"
MAX_VERSION = 2**31 - 1  # versions are 32-bit INTEGER columns


@dataclass(frozen=True)
class ModelURI:
    name: str
    version: int | None = None  # a number; None with no alias: the latest version
    alias: str | None = None

    def __str__(self) -> str:
        if self.alias is not None:
            return f"{SCHEME}{self.name}@{self.alias}"
        if self.version is not None:
            return f"{SCHEME}{self.name}/{self.version}"
        return f"{SCHEME}{self.name}"


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise ConfigError(
            f"{name!r} is not a valid model name: use letters, digits, '_', '.' and '-' "
            "(starting with a letter or digit, at most 200 characters)"
        )
    return name


def check_alias(alias: str) -> str:
    if alias == LATEST:
        raise ConfigError(
            f"{alias!r} cannot be an alias: models:/NAME/latest always means the newest version"
        )
    if not ALIAS_RE.fullmatch(alias):
        raise ConfigError(
            f"{alias!r} is not a valid alias: use letters, digits, '_', '.' and '-', starting with a "
            "letter or '_' (e.g. production, staging, champion), at most 100 characters"
        )
    return alias


def check_version(text: str | int, what: str = "version") -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        number = text
    elif isinstance(text, str) and text.strip().isascii() and text.strip().isdigit():
        number = int(text.strip())
    else:
        raise ConfigError(f"{what} {text!r}: expected a version number (1, 2, ...)")
    if number < 1:
        raise ConfigError(f"{what} {text!r}: versions are numbered from 1")
    if number > MAX_VERSION:
        raise ConfigError(f"{what} {text!r}: versions go up to {MAX_VERSION}")
    return number


def is_model_uri(text: str) -> bool:
    return text.startswith(SCHEME)


def parse_model_uri(text: str) -> ModelURI:
    """Parse a model URI (ConfigError naming the accepted forms when it is not one)."""
    if not is_model_uri(text):
        raise ConfigError(f"{text!r} is not a model URI: expected {FORMS}")
    rest = text[len(SCHEME) :]
    if "@" in rest:
        name, _, alias = rest.partition("@")
        _check_part(text, name)
        if not alias:
            raise ConfigError(f"{text!r}: the alias after '@' is missing; expected {FORMS}")
        if alias == LATEST:
            return ModelURI(name=check_name(name))
        return ModelURI(name=check_name(name), alias=check_alias(alias))
    name, sep, version = rest.partition("/")
    _check_part(text, name)
    if not sep or version in ("", LATEST):
        return ModelURI(name=check_name(name))
    if "/" in version:
        raise ConfigError(f"{text!r}: too many '/'; expected {FORMS}")
    return ModelURI(name=check_name(name), version=check_version(version, f"{text!r}:"))


def _check_part(text: str, name: str) -> None:
    if not name:
        raise ConfigError(f"{text!r}: the model name is missing; expected {FORMS}")


def model_ref(name_or_uri: str, version_or_alias: str | None = None) -> ModelURI:
    """A URI, or NAME with an optional VERSION (a number, 'latest' or an alias) as the CLI takes them."""
    if is_model_uri(name_or_uri):
        if version_or_alias is not None:
            raise ConfigError(f"give either {name_or_uri} or a model NAME and VERSION, not both")
        return parse_model_uri(name_or_uri)
    name = check_name(name_or_uri)
    if version_or_alias is None or version_or_alias == LATEST:
        return ModelURI(name=name)
    text = version_or_alias.removeprefix("@")
    if text.isascii() and text.isdigit():
        return ModelURI(name=name, version=check_version(text))
    return ModelURI(name=name, alias=check_alias(text))
