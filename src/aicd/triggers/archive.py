"""A commit's tree as a gzipped tar, streamed from a project's mirror (`git archive`).

What a worker on another host fetches to run a job: the files of the pipeline's
commit, read from the server's bare mirror, never from a working tree.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

from aicd.errors import GitError
from aicd.triggers.mirror import git_env, has_commit

CHUNK = 64 * 1024


def commit_archive(mirror: Path, sha: str) -> Iterator[bytes]:
    """The tree of `sha` as tar.gz chunks. GitError at once when the mirror lacks the commit.

    The git process is killed when the consumer stops early (a client that hangs up).
    """
    if not has_commit(mirror, sha):
        raise GitError(f"commit {sha[:12]} is not in the project's mirror")
    return _stream(mirror, sha)


def _stream(mirror: Path, sha: str) -> Iterator[bytes]:
    proc = subprocess.Popen(
        ["git", "archive", "--format=tar.gz", sha],
        cwd=mirror,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=git_env(),
    )
    assert proc.stdout is not None
    try:
        while chunk := proc.stdout.read(CHUNK):
            yield chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.wait()
