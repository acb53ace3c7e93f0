"""Symbolic links listed as artifacts: the job log says which were left out and why, the count
is what was kept, and the archive holds every file it counts."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from aicd_testing import aicd, make_repo, run_json

pytestmark = pytest.mark.slow

PIPELINE = """\
stages: [build, use]
build:
  stage: build
  script:
    - mkdir -p out/sub && echo data > out/data.txt && echo deep > out/sub/deep.txt
    - ln -s data.txt out/alias.txt
    - ln -s sub/deep.txt out/deep-alias.txt
    - ln -s /etc/hostname out/host
    - ln -s ../../../../../../../../etc/passwd out/passwd
    - ln -s missing.txt out/dangling
    - ln -s sub out/sublink
  artifacts:
    paths: [out/]
use:
  stage: use
  script:
    - cat out/alias.txt out/deep-alias.txt
    - test ! -e out/host && test ! -e out/passwd && test ! -e out/dangling && test ! -e out/sublink
"""


def test_links_left_out_are_named_and_the_count_is_what_was_kept(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": PIPELINE})
    code, result, stderr = run_json(project)
    assert code == 0, stderr
    build = next(j for j in result["jobs"] if j["name"] == "build")
    log = Path(build["log_path"]).read_text()
    for name, why in (
        ("out/host", "points outside the workspace"),
        ("out/passwd", "points outside the workspace"),
        ("out/dangling", "its target does not exist"),
        ("out/sublink", "points to a directory"),
    ):
        assert f"WARNING: {name}: a symbolic link to" in log and why in log.split(f"WARNING: {name}:")[1]
    assert "Kept artifacts: 4 files" in log  # data, deep, and the two links inside the workspace
    show = json.loads(aicd(project, "show", "1", "--json").stdout)
    stored = Path(next(j for j in show["jobs"] if j["name"] == "build")["artifacts_dir"])
    files = sorted(p.relative_to(stored).as_posix() for p in stored.rglob("*") if not p.is_dir())
    assert files == ["out/alias.txt", "out/data.txt", "out/deep-alias.txt", "out/sub/deep.txt"]
    assert not any(p.is_symlink() for p in stored.rglob("*"))  # a zip of it holds all 4
    assert (stored / "out" / "alias.txt").read_text() == "data\n"
    use_log = Path(next(j for j in result["jobs"] if j["name"] == "use")["log_path"]).read_text()
    assert "data\ndeep\n" in use_log.replace("use > ", "")
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:  # as the server zips a job's artifacts
        for p in sorted(stored.rglob("*")):
            if p.resolve().is_relative_to(stored.resolve()) and p.resolve().is_file():
                z.write(p, p.relative_to(stored).as_posix())
    assert len(zipfile.ZipFile(archive).namelist()) == 4
