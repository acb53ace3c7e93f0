"""Path globs as GitLab's runner reads them (`artifacts:paths`, `exclude`, `cache:paths`).

Patterns are matched against workspace-relative POSIX paths, whole path:

- ``*`` any run of characters except ``/`` (dot files included, as in Go);
- ``?`` one character except ``/``; ``[abc]``, ``[a-z]``, ``[!a]``/``[^a]`` one of a set;
- ``**`` as a whole path component: zero or more directories (``a/**/b``
  matches ``a/b`` and ``a/x/y/b``; ``a/**`` matches everything *under* ``a``
  but not ``a`` itself); ``**`` inside a component (``cache/**.txt``) is ``*``;
- ``{a,b}`` either alternative; ``\\x`` a literal ``x``.
"""

from __future__ import annotations

import functools
import re

_MAGIC = re.compile(r"[*?\[{\\]")


def has_magic(pattern: str) -> bool:
    return _MAGIC.search(pattern) is not None


def static_prefix(pattern: str) -> tuple[str, int | None]:
    """Split a pattern into its glob-free leading directory and the pattern's depth below it.

    Returns ``(prefix, depth)``: ``prefix`` is a relative directory ("" for the
    root) that holds every possible match; ``depth`` is how many path
    components a match has below ``prefix`` (None when ``**`` makes it unbounded).
    """
    parts = pattern.split("/")
    fixed: list[str] = []
    for part in parts:
        if has_magic(part):
            break
        fixed.append(part)
    rest = parts[len(fixed) :]
    if not rest:  # no magic at all: the pattern is a path
        return "/".join(fixed[:-1]), 1
    depth = None if any(p == "**" for p in rest) else len(rest)
    return "/".join(fixed), depth


@functools.lru_cache(maxsize=512)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """The regex that fully matches the relative paths ``pattern`` names."""
    parts = pattern.split("/")
    out: list[str] = []
    last = len(parts) - 1
    for i, part in enumerate(parts):
        if part == "**":
            if i == last:
                # 'a/**': anything below a (at least one more component).
                out.append(".+" if i else ".*")
            else:
                # '**/' : zero or more whole directories.
                out.append("(?:[^/]+/)*")
            continue
        out.append(_component(part))
        if i != last:
            out.append("/")
    return re.compile("".join(out), re.DOTALL)


def _component(part: str) -> str:
    res: list[str] = []
    i, n = 0, len(part)
    while i < n:
        c = part[i]
        if c == "*":
            while i + 1 < n and part[i + 1] == "*":
                i += 1
            res.append("[^/]*")
        elif c == "?":
            res.append("[^/]")
        elif c == "\\" and i + 1 < n:
            i += 1
            res.append(re.escape(part[i]))
        elif c == "[":
            j = part.find("]", i + 2 if i + 1 < n and part[i + 1] in "!^" else i + 1)
            if j < 0:
                res.append(re.escape(c))
            else:
                body = part[i + 1 : j]
                neg = body[:1] in ("!", "^")
                if neg:
                    body = body[1:]
                body = body.replace("\\", "\\\\")
                res.append(f"[{'^/' if neg else ''}{body}]")
                i = j
        elif c == "{":
            j = part.find("}", i)
            if j < 0:
                res.append(re.escape(c))
            else:
                alts = part[i + 1 : j].split(",")
                res.append("(?:" + "|".join(_component(a) for a in alts) + ")")
                i = j
        else:
            res.append(re.escape(c))
        i += 1
    return "".join(res)


def matches(pattern: str, path: str) -> bool:
    return compile_glob(pattern).fullmatch(path) is not None
