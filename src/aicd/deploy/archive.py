"""A release folder as a tar.gz, both ways: what `aicd deploy` in a server job sends and what the
server unpacks (untrusted input) before deploying it.

The archive holds the release's files (without what `prepare_release` never copies: .git, .aicd,
caches) and, at CONFIG_MEMBER, the aicd.yml the deploy was asked with. Unpacking refuses (ConfigError,
naming the member) absolute names, `..`, links leading out of the release, devices and FIFOs, and
stops beyond a size limit on the unpacked bytes (a small archive may unpack to a huge tree).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from aicd.errors import ConfigError

CONFIG_MEMBER = ".aicd/aicd.yml"  # `.aicd` is never part of a release (client.COPY_IGNORE)
_SKIPPED = frozenset({".git", ".aicd", "__pycache__", ".pytest_cache", ".venv", "node_modules"})


def pack_release(release: Path, config: Path | None, out: BinaryIO) -> None:
    """Write `release`'s files (symlinks as links) and `config` at CONFIG_MEMBER as a tar.gz."""
    root = Path(release)
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED)
            for name in [*dirnames, *sorted(filenames)]:
                path = Path(dirpath) / name
                rel = path.relative_to(root).as_posix()
                try:
                    tar.add(path, arcname=rel, recursive=False)
                except OSError as exc:
                    raise ConfigError(f"cannot pack {path} of the release: {exc.strerror or exc}") from None
        if config is not None:
            tar.add(config, arcname=CONFIG_MEMBER, recursive=False)


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    where = f"release archive member {name!r}"
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (parts and parts[0].endswith(":")) or "\\" in name:
        raise ConfigError(f"{where}: an absolute path; archive the release with relative names")
    if ".." in parts:
        raise ConfigError(f"{where}: '..' leads out of the release; archive it with relative names")
    if member.issym() or member.islnk():
        target = member.linkname
        if member.islnk():
            resolved = posixpath.normpath(target)
        else:
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise ConfigError(f"{where}: a link to {target!r}, out of the release; copy the file in instead")
        return
    if not (member.isfile() or member.isdir()):
        raise ConfigError(f"{where}: a device, FIFO or other special file; a release holds files and folders")


def extract_release(archive: Path, target: Path, *, max_bytes: int) -> None:
    """Unpack the tar.gz `archive` into the (new, empty) folder `target`, checked member by member.

    ConfigError names the first member refused; nothing is written outside `target`, and `target`
    is removed when the archive is refused.
    """
    total = 0
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = []
            for member in tar:
                _check_member(member)
                total += max(member.size, 0)
                if total > max_bytes:
                    raise ConfigError(
                        f"the release unpacks to more than {max_bytes} bytes (the server's limit, "
                        "AICD_DEPLOY_MAX_RELEASE_BYTES x 4): ship a smaller release"
                    )
                members.append(member)
            target.mkdir(parents=True, exist_ok=False)
            tar.extractall(target, members=members, filter="data")
    except ConfigError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise ConfigError(f"the release archive cannot be unpacked: {exc}; send a tar.gz") from None
