"""Git ref names from outside (webhooks, the API): checked as `git check-ref-format` does.

A ref that git itself would refuse never reaches the mirror, the database or a
job's environment: newline, NUL, ESC and other control characters, `..`, `@{`,
`~^:?*[\\`, a component starting with `.` or ending with `.lock`, `//`, a lone
surrogate, or a name longer than MAX_REF_BYTES. The error never repeats the
ref raw: control characters are shown escaped and long names cut.
"""

from __future__ import annotations

from aicd.errors import ConfigError

MAX_REF_BYTES = 255  # GitLab's limit on a branch or tag name (and most file systems' on one name)
_FORBIDDEN = frozenset(" ~^:?*[\\\x7f")


def shown(ref: str, limit: int = 80) -> str:
    """A ref for a message: escaped (repr) and cut."""
    text = ref if len(ref) <= limit else ref[:limit] + "..."
    return ascii(text)


def ref_problem(name: str) -> str | None:
    """Why `name` is not a valid ref name (as `git check-ref-format --allow-onelevel`), or None."""
    if not name:
        return "it is empty"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid text (an unpaired surrogate character)"
    if size > MAX_REF_BYTES:
        return f"it is longer than {MAX_REF_BYTES} bytes"
    if any(ord(c) < 32 for c in name):
        return "it contains a control character (newline, NUL, ESC, ...)"
    if any(c in _FORBIDDEN for c in name):
        return "it contains a space or one of ~ ^ : ? * [ \\"
    if ".." in name:
        return "it contains '..'"
    if "@{" in name or name == "@":
        return "it contains '@{' or is '@'"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "it starts or ends with '/' or contains '//'"
    if name.endswith("."):
        return "it ends with '.'"
    if name.startswith("-"):
        return "it starts with '-'"
    for part in name.split("/"):
        if part.startswith("."):
            return "a part of it starts with '.'"
        if part.endswith(".lock"):
            return "a part of it ends with '.lock'"
    return None


def check_ref_name(name: str, *, what: str = "ref") -> str:
    """`name` if git accepts it as a ref name; ConfigError (HTTP 422) saying why otherwise."""
    problem = ref_problem(name)
    if problem is not None:
        raise ConfigError(f"{what} {shown(name)} is not a valid git ref name: {problem}")
    return name
