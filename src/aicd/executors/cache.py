"""Job caches, kept on this machine under ``<cache folder>/<key>/`` (``home/cache/`` for
``aicd run``; ``home/cache/<project id>/`` for a server project).

For each ``cache:`` entry of a job:

- the key is ``cache:key`` with variables expanded (``default`` when empty).
  With ``cache:key:files`` it is ``<prefix>-<digest>`` (or just ``<digest>``
  without a prefix), the digest being a SHA-256 of the named files' paths and
  contents in the workspace. GitLab instead hashes the last commits that
  changed those files; hashing contents gives the same "changes when the
  files change" behaviour without asking git. When none of the files exists
  the key is ``default`` (``<prefix>-default``).
- policy ``pull``/``pull-push``: before the script, the cache of the key is
  copied into the workspace; if there is none, each ``fallback_keys`` entry
  (then ``$CACHE_FALLBACK_KEY``) is tried in order.
- policy ``push``/``pull-push``: after the script (and after_script), when
  ``cache:when`` fits the job's result, ``paths`` (globs as for artifacts)
  and, with ``untracked``, every untracked file replace the cache of the key.

A key is made a safe folder name: characters other than letters, digits,
``.``, ``_`` and ``-`` become ``_``, with a short hash added when anything
changed. Functions here are synchronous and return the info lines to show.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from aicd.executors import globbing
from aicd.executors.workspace import copy_tree, remove_tree
from aicd.pipeline.ir import Cache

Expand = Callable[[str], str]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def cache_key(cache: Cache, workspace: Path, expand: Expand) -> str:
    if cache.key_files:
        sel = globbing.select(workspace, [expand(f) for f in cache.key_files], lambda _msg: None)
        files = sorted(rel for rel, is_dir in sel.entries.items() if not is_dir)
        prefix = expand(cache.key_prefix) if cache.key_prefix else ""
        if not files:
            digest = "default"
        else:
            import hashlib  # jobs with a cache only: not on every run's import path

            h = hashlib.sha256()
            for rel in files:
                h.update(rel.encode() + b"\0")
                with contextlib.suppress(OSError):
                    h.update((workspace / rel).read_bytes())
                h.update(b"\0")
            digest = h.hexdigest()[:40]
        return f"{prefix}-{digest}" if prefix else digest
    return expand(cache.key).strip() or "default"


def safe_key(key: str) -> str:
    safe = _UNSAFE.sub("_", key)
    if safe.strip(".") == "":
        safe = "_" + safe
    if safe != key or len(key) > 100:  # a key expanded from variables may be too long for a folder name
        import hashlib

        safe = f"{safe[:80]}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    return safe


def cache_path(root: Path, key: str) -> Path:
    """The folder of `key` in the cache folder `root`."""
    return root / safe_key(key)


def restore_cache(
    cache: Cache, key: str, root: Path, workspace: Path, expand: Expand, env: Mapping[str, str]
) -> list[str]:
    if cache.policy == "push":
        return []
    candidates = [key, *(expand(k) for k in cache.fallback_keys)]
    global_fallback = env.get("CACHE_FALLBACK_KEY", "")
    if global_fallback:
        candidates.append(global_fallback)
    for candidate in candidates:
        if not candidate:
            continue
        folder = cache_path(root, candidate)
        if folder.is_dir():
            count = copy_tree(folder, workspace)
            return [f"Restored cache '{candidate}': {count} file{'s' if count != 1 else ''}"]
    return [f"No cache found for key '{key}'"]


def save_cache(
    cache: Cache, key: str, root: Path, workspace: Path, expand: Expand, tracked: frozenset[str]
) -> list[str]:
    if cache.policy == "pull":
        return []
    info: list[str] = []
    sel = globbing.select(workspace, [expand(p) for p in cache.paths], info.append)
    if cache.untracked:
        globbing.untracked(workspace, tracked, sel)
    target = cache_path(root, key)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{os.urandom(6).hex()}"
    tmp.mkdir()
    try:
        count = globbing.copy_selection(workspace, sel, tmp)
        trash = None
        if target.exists():
            trash = target.parent / f".old-{os.urandom(6).hex()}"
            os.rename(target, trash)
        os.rename(tmp, target)
        if trash is not None:
            remove_tree(trash)
    except BaseException:
        if tmp.exists():
            remove_tree(tmp)
        raise
    info.append(f"Saved cache '{key}': {count} file{'s' if count != 1 else ''}")
    return info
