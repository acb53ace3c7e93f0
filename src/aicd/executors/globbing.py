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
import os
import posixpath
import re
import shutil
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path

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


# --- selecting files in a workspace -----------------------------------------------------------


@dataclass
class Selection:
    """Workspace-relative paths chosen for an artifact or cache archive.

    ``entries`` maps a path to True for a directory (kept even when empty),
    False for a file or symlink (copied as a link). Insertion-ordered.
    """

    entries: dict[str, bool] = field(default_factory=dict)

    @property
    def file_count(self) -> int:
        return sum(1 for is_dir in self.entries.values() if not is_dir)

    def add_tree(self, root: str, rel: str) -> None:
        """Add directory ``rel`` (relative to ``root``; "" is root itself) and all below it."""
        if rel:
            self.entries[rel] = True
        stack = [rel]
        while stack:
            cur = stack.pop()
            try:
                it = os.scandir(os.path.join(root, cur) if cur else root)
            except OSError:
                continue
            with it:
                for entry in it:
                    sub = f"{cur}/{entry.name}" if cur else entry.name
                    if entry.is_dir(follow_symlinks=False):
                        self.entries[sub] = True
                        stack.append(sub)
                    else:
                        self.entries[sub] = False

    def exclude(self, patterns: Sequence[str]) -> int:
        """Drop entries matching any pattern (not recursive, as GitLab documents). Returns how many."""
        if not patterns:
            return 0
        regexes = [compile_glob(p) for p in patterns]
        drop = [p for p in self.entries if any(r.fullmatch(p) for r in regexes)]
        for p in drop:
            del self.entries[p]
        return len(drop)


def normalise(root: str, pattern: str) -> str | None:
    """A pattern as a clean workspace-relative path; None when it points outside the workspace.

    Absolute patterns (``$CI_PROJECT_DIR/x``) are accepted when under ``root``.
    ``"."`` is the workspace itself and is returned as "".
    """
    if os.path.isabs(pattern):
        rel = os.path.relpath(pattern, root)
    else:
        rel = pattern
    rel = posixpath.normpath(rel.replace(os.sep, "/"))
    if rel == ".":
        return ""
    if rel == ".." or rel.startswith("../") or rel.startswith("/"):
        return None
    return rel


def _inside(root_real: str, path: str) -> bool:
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real + os.sep)


def select(
    root: Path | str,
    patterns: Sequence[str],
    warn: Callable[[str], None],
    selection: Selection | None = None,
) -> Selection:
    """Add what each pattern names under ``root`` to ``selection``.

    A directory match brings its whole tree. A pattern matching nothing gives
    ``WARNING: <pattern>: no matching files``; one outside the workspace is
    refused with a warning. Symlinks are not followed.
    """
    sel = selection if selection is not None else Selection()
    root_s = str(root)
    root_real = os.path.realpath(root_s)
    for original in patterns:
        if not original.strip():
            continue
        rel = normalise(root_s, original)
        if rel is None:
            warn(f"WARNING: {original}: outside the project directory, ignored")
            continue
        before = len(sel.entries)
        if rel == "":
            sel.add_tree(root_s, "")
        elif not has_magic(rel):
            full = os.path.join(root_s, rel)
            if not os.path.lexists(full):
                pass
            elif not _inside(root_real, os.path.dirname(full)):
                warn(f"WARNING: {original}: outside the project directory, ignored")
                continue
            elif os.path.isdir(full) and not os.path.islink(full):
                sel.add_tree(root_s, rel)
            else:
                sel.entries[rel] = False
        else:
            prefix, depth = static_prefix(rel)
            base = os.path.join(root_s, prefix) if prefix else root_s
            if prefix and not _inside(root_real, base):
                warn(f"WARNING: {original}: outside the project directory, ignored")
                continue
            _walk_match(sel, root_s, prefix, compile_glob(rel), depth)
        if len(sel.entries) == before and not _already_selected(sel, rel):
            warn(f"WARNING: {original}: no matching files")
    return sel


def _already_selected(sel: Selection, rel: str) -> bool:
    """A pattern that only names paths an earlier pattern already chose did match."""
    if not rel or has_magic(rel):
        regex = compile_glob(rel) if rel else None
        return any(regex is None or regex.fullmatch(p) for p in sel.entries)
    return rel in sel.entries


def _walk_match(sel: Selection, root: str, prefix: str, regex: re.Pattern[str], depth: int | None) -> None:
    stack: list[tuple[str, int]] = [(prefix, 0)]
    while stack:
        cur, level = stack.pop()
        try:
            it = os.scandir(os.path.join(root, cur) if cur else root)
        except OSError:
            continue
        with it:
            for entry in it:
                sub = f"{cur}/{entry.name}" if cur else entry.name
                is_dir = entry.is_dir(follow_symlinks=False)
                if regex.fullmatch(sub):
                    if is_dir:
                        sel.add_tree(root, sub)
                    else:
                        sel.entries[sub] = False
                elif is_dir and (depth is None or level + 1 < depth):
                    stack.append((sub, level + 1))


def untracked(root: Path | str, tracked: AbstractSet[str], selection: Selection | None = None) -> Selection:
    """Add every file under ``root`` that is not in ``tracked`` (the source snapshot's files)."""
    sel = selection if selection is not None else Selection()
    everything = Selection()
    everything.add_tree(str(root), "")
    for path, is_dir in everything.entries.items():
        # a checkout's own .git (and a submodule's) is never an untracked file, as for `git ls-files -o`
        if not is_dir and path not in tracked and not _in_git_dir(path):
            sel.entries[path] = False
    return sel


def _in_git_dir(path: str) -> bool:
    return path.startswith(".git/") or "/.git/" in path or path == ".git" or path.endswith("/.git")


def resolve_links(root: Path | str, sel: Selection) -> tuple[set[str], list[str]]:
    """Symlinks among the selected files, judged for an archive that must hold what it says.

    A link to a regular file inside ``root`` is kept as that file's contents (returned: copy these
    following the link). Any other link is dropped from ``sel``: a link out of ``root`` (its target
    is not the job's to hand out), a dangling one, or one to a directory. Returns (links to follow,
    one warning line per dropped link).
    """
    root_s = str(root)
    root_real = os.path.realpath(root_s)
    follow: set[str] = set()
    warnings: list[str] = []
    for rel, is_dir in list(sel.entries.items()):
        full = os.path.join(root_s, rel)
        if is_dir or not os.path.islink(full):
            continue
        target = os.readlink(full)
        real = os.path.realpath(full)
        if not _inside(root_real, real):
            why = "it points outside the workspace"
        elif not os.path.exists(real):
            why = "its target does not exist"
        elif os.path.isdir(real):
            why = "it points to a directory (list the directory itself)"
        elif not os.path.isfile(real):
            why = "its target is not a regular file"
        else:
            follow.add(rel)
            continue
        del sel.entries[rel]
        warnings.append(f"WARNING: {rel}: a symbolic link to {target!r}, left out: {why}")
    return follow, warnings


def copy_selection(
    root: Path | str, sel: Selection, dest: Path | str, follow: AbstractSet[str] = frozenset()
) -> int:
    """Copy the selected entries from ``root`` to ``dest`` keeping relative paths; returns files copied.
    Symlinks are copied as links, except those in ``follow`` (their target's contents are copied)."""
    root_s, dest_s = str(root), str(dest)
    made: set[str] = set()
    copied = 0
    for rel, is_dir in sel.entries.items():
        target = os.path.join(dest_s, rel)
        if is_dir:
            if rel not in made:
                os.makedirs(target, exist_ok=True)
                made.add(rel)
            continue
        parent = posixpath.dirname(rel)
        if parent not in made:
            os.makedirs(os.path.join(dest_s, parent), exist_ok=True)
            made.add(parent)
        try:
            shutil.copy2(os.path.join(root_s, rel), target, follow_symlinks=rel in follow)
        except FileNotFoundError:
            continue  # removed while we looked
        copied += 1
    return copied
