"""A content-addressed object store: <home>/objects/sha256/<2 hex>/<62 hex>.

A file is stored as it is; a folder as a deterministic tar (entries sorted,
times, owners and permission noise removed) so that its digest depends only
on the names, contents and executable bits of its files. Objects are written
to a temporary file and renamed into place: a reader never sees half an
object, and storing the same content twice is a no-op (after checking that the
stored copy still has its digest: a corrupt one is replaced). Every read checks
the digest again, so a corrupted object is an error, never a wrong model, and
registering the model again repairs it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from aicd.errors import ConfigError, ConflictError, StoreError

CHUNK = 1 << 20
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
KIND_FILE = "file"
KIND_DIR = "dir"


@dataclass(frozen=True)
class StoredObject:
    digest: str  # "sha256:<hex>"
    size: int  # bytes of the object (of the tar for a folder)


def check_digest(digest: str) -> str:
    if not DIGEST_RE.fullmatch(digest):
        raise ConfigError(f"{digest!r} is not a digest: expected 'sha256:' and 64 lowercase hex digits")
    return digest


def digest_file(path: Path) -> StoredObject:
    """The sha256 digest and size of a file."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return StoredObject(f"sha256:{h.hexdigest()}", size)


def dataset_digest(path: Path) -> str:
    """The digest of a data set: of the file, or of the deterministic tar of the folder."""
    if path.is_dir():
        with tempfile.TemporaryFile() as tmp:
            write_tar(path, tmp)
            tmp.seek(0)
            return _digest_stream(tmp).digest
    try:
        return digest_file(path).digest
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such data set file or folder") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the data set: {exc.strerror or exc}") from None


def _digest_stream(fh: BinaryIO) -> StoredObject:
    h = hashlib.sha256()
    size = 0
    while chunk := fh.read(CHUNK):
        h.update(chunk)
        size += len(chunk)
    return StoredObject(f"sha256:{h.hexdigest()}", size)


def _entries(folder: Path) -> list[tuple[str, Path]]:
    """(posix name relative to folder, path), sorted by name; symlinks refused."""
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = base / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                raise ConfigError(
                    f"{path}: symbolic links cannot be stored in a model artifact; copy the file instead"
                )
            out.append((rel, path))
    out.sort(key=lambda item: item[0])
    return out


def write_tar(folder: Path, out: BinaryIO) -> None:
    """A deterministic tar of `folder`'s contents (names relative to it) into `out`."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, path in _entries(folder):
            mode = path.stat().st_mode
            info = tarfile.TarInfo(rel)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if stat.S_ISDIR(mode):
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            elif stat.S_ISREG(mode):
                info.size = path.stat().st_size
                info.mode = 0o755 if mode & stat.S_IXUSR else 0o644
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                raise ConfigError(f"{path}: not a regular file or folder; it cannot be stored")


class ObjectStore:
    """Objects under <home>/objects/sha256/."""

    def __init__(self, home: Path) -> None:
        self.root = Path(home) / "objects" / "sha256"

    def path_of(self, digest: str) -> Path:
        hexdigest = check_digest(digest).removeprefix("sha256:")
        return self.root / hexdigest[:2] / hexdigest[2:]

    def has(self, digest: str) -> bool:
        return self.path_of(digest).is_file()

    # -- writing --------------------------------------------------------------------------------

    def put_path(self, path: Path) -> tuple[StoredObject, str]:
        """Store a file or a folder; returns the object and its kind (file or dir)."""
        if path.is_dir():
            with self._staging() as (tmp, fh):
                write_tar(path, fh)
                fh.flush()
                fh.seek(0)
                obj = _digest_stream(fh)
                self._commit(tmp, obj.digest)
            return obj, KIND_DIR
        if not path.exists():
            raise ConfigError(f"{path}: no such model file or folder")
        try:
            with path.open("rb") as src:
                return self.put_stream(_chunks(src)), KIND_FILE
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the model artifact: {exc.strerror or exc}") from None

    def put_stream(self, chunks: Iterable[bytes], expected: str | None = None) -> StoredObject:
        """Store bytes as they come; with `expected`, refuse them (ConfigError) unless they match."""
        with self._staging() as (tmp, fh):
            h = hashlib.sha256()
            size = 0
            for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                fh.write(chunk)
            obj = StoredObject(f"sha256:{h.hexdigest()}", size)
            if expected is not None and obj.digest != expected:
                raise ConfigError(
                    f"the uploaded bytes have digest {obj.digest}, not {expected}: the upload was damaged"
                )
            self._commit(tmp, obj.digest)
        return obj

    @contextmanager
    def _staging(self) -> Iterator[tuple[Path, BinaryIO]]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=".incoming-", dir=self.root)
        except OSError as exc:
            raise StoreError(f"cannot write to the object store {self.root}: {exc.strerror or exc}") from None
        tmp = Path(name)
        try:
            with os.fdopen(fd, "w+b") as fh:
                yield tmp, fh
        except OSError as exc:
            raise StoreError(f"cannot write to the object store {self.root}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def _commit(self, tmp: Path, digest: str) -> None:
        target = self.path_of(digest)
        if target.is_file() and self._intact(target, digest):
            return  # the same content is there already
        # absent, or corrupt (a flipped byte, a truncated copy): the new bytes replace it atomically
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, target)

    @staticmethod
    def _intact(path: Path, digest: str) -> bool:
        try:
            return digest_file(path).digest == digest
        except OSError:
            return False

    # -- reading --------------------------------------------------------------------------------

    def verified_path(self, digest: str) -> Path:
        """The object's file, after checking its content still has this digest (StoreError if not)."""
        path = self.path_of(digest)
        try:
            actual = digest_file(path).digest
        except FileNotFoundError:
            raise StoreError(f"object {digest} is missing from the object store {self.root}") from None
        except OSError as exc:
            raise StoreError(f"cannot read object {digest}: {exc.strerror or exc}") from None
        if actual != digest:
            raise StoreError(
                f"object {digest} in {self.root} is corrupt (its content has digest {actual}); "
                "register the model again"
            )
        return path

    def restore(self, digest: str, kind: str, target: Path, *, force: bool = False) -> Path:
        """Write the object to `target`: the file, or the folder unpacked from its tar."""
        source = self.verified_path(digest)
        return restore_from(source, kind, target, force=force)


def restore_from(source: Path, kind: str, target: Path, *, force: bool = False) -> Path:
    """Copy (file) or unpack (dir) a verified object file to `target`, atomically."""
    if (target.exists() or target.is_symlink()) and not force:
        raise ConflictError(f"{target} exists already: remove it, choose another --output, or use --force")
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    except OSError as exc:
        raise ConfigError(f"cannot write to {parent}: {exc.strerror or exc}") from None
    try:
        if kind == KIND_DIR:
            out = staging / "dir"
            out.mkdir()
            with tarfile.open(source, mode="r:") as tar:
                tar.extractall(out, filter="data")
            _touch_tree(out)  # the tar's times are all 0 (for a stable digest): give them today's
        else:
            out = staging / "file"
            shutil.copyfile(source, out)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(out, target)
    except (OSError, tarfile.TarError) as exc:
        raise ConfigError(f"cannot write {target}: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _touch_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            os.utime(Path(dirpath) / name)
        os.utime(dirpath)


def _chunks(fh: BinaryIO) -> Iterator[bytes]:
    while chunk := fh.read(CHUNK):
        yield chunk
