"""A release as a tar.gz both ways (aicd.deploy.archive): what `aicd deploy` in a server job packs
unpacks to the same folder; what an untrusted archive holds is checked member by member."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from aicd.deploy.archive import CONFIG_MEMBER, extract_release, pack_release
from aicd.errors import ConfigError


def test_a_packed_release_unpacks_to_the_same_files_without_caches(tmp_path: Path) -> None:
    release = tmp_path / "release"
    (release / "model").mkdir(parents=True)
    (release / "app.py").write_text("print('hi')\n")
    (release / "run.sh").write_text("#!/bin/sh\n")
    (release / "run.sh").chmod(0o755)
    (release / "model" / "weights.bin").write_bytes(b"\x00\x01" * 1000)
    (release / "current").symlink_to("model")  # a link inside the release is kept
    for skipped in (".git", "__pycache__", ".aicd"):
        (release / skipped).mkdir()
        (release / skipped / "x").write_text("skip me\n")
    config = tmp_path / "aicd.yml"
    config.write_text("service:\n  command: [python, app.py]\n")
    archive = tmp_path / "release.tar.gz"
    with archive.open("wb") as out:
        pack_release(release, config, out)

    target = tmp_path / "unpacked"
    extract_release(archive, target, max_bytes=1_000_000)
    assert (target / "app.py").read_text() == "print('hi')\n"
    assert (target / "model" / "weights.bin").read_bytes() == b"\x00\x01" * 1000
    assert os.access(target / "run.sh", os.X_OK)
    assert os.readlink(target / "current") == "model"
    assert (target / CONFIG_MEMBER).read_text() == config.read_text()
    assert not (target / ".git").exists() and not (target / "__pycache__").exists()
    assert sorted(p.name for p in (target / ".aicd").iterdir()) == ["aicd.yml"]  # only the config


def _archive(tmp_path: Path, *members: tuple[str, bytes, str], data: bytes = b"x") -> Path:
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, mode="w:gz") as tar:
        for name, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([("../up", tarfile.REGTYPE, "")], "'..'"),
        ([("a/../../up", tarfile.REGTYPE, "")], "'..'"),
        ([("/etc/cron.d/x", tarfile.REGTYPE, "")], "absolute path"),
        ([("l", tarfile.SYMTYPE, "/etc/passwd")], "out of the release"),
        ([("d/l", tarfile.SYMTYPE, "../../x")], "out of the release"),
        ([("h", tarfile.LNKTYPE, "../x")], "out of the release"),
        ([("dev", tarfile.CHRTYPE, "")], "special file"),
        ([("fifo", tarfile.FIFOTYPE, "")], "special file"),
    ],
)
def test_an_archive_that_would_leave_its_folder_is_refused(
    tmp_path: Path, members: list[tuple[str, bytes, str]], why: str
) -> None:
    archive = _archive(tmp_path, ("ok.txt", tarfile.REGTYPE, ""), *members)
    target = tmp_path / "box" / "release"
    with pytest.raises(ConfigError, match=why) as caught:
        extract_release(archive, target, max_bytes=1_000_000)
    assert "release archive member" in str(caught.value)
    assert not target.exists()  # removed, and nothing was written beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar.gz"]  # checked before any write


def test_a_release_that_unpacks_too_big_or_is_no_tar_is_refused(tmp_path: Path) -> None:
    archive = _archive(tmp_path, ("zeros", tarfile.REGTYPE, ""), data=b"\0" * 200_000)
    assert archive.stat().st_size < 10_000  # compresses well
    with pytest.raises(ConfigError, match="more than 100000 bytes"):
        extract_release(archive, tmp_path / "a", max_bytes=100_000)
    assert not (tmp_path / "a").exists()
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar at all")
    with pytest.raises(ConfigError, match="cannot be unpacked"):
        extract_release(junk, tmp_path / "b", max_bytes=100_000)
    assert not (tmp_path / "b").exists()
