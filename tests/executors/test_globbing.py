from __future__ import annotations

from pathlib import Path

import pytest

from aicd.executors import globbing
from aicd.executors.globbing import Selection, matches


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.txt", "a.txt", True),
        ("*.txt", "d/a.txt", False),
        ("*.txt", ".hidden.txt", True),
        ("path/**/*.txt", "path/a.txt", True),
        ("path/**/*.txt", "path/crazylong/folder/log.txt", True),
        ("path/**/*.txt", "path/crazylong/folder/log.ext", False),
        ("**/file1", "file1", True),
        ("**/file1", "a/b/file1", True),
        ("**/file1", "a/b/file10", False),
        ("foo/bar/**", "foo/bar/x", True),
        ("foo/bar/**", "foo/bar/x/y", True),
        ("foo/bar/**", "foo/bar", False),
        ("cache/**.txt", "cache/file1.txt", True),
        ("cache/**.txt", "cache/sub/file1.txt", False),
        ("file?.log", "file1.log", True),
        ("file?.log", "file12.log", False),
        ("file[12].log", "file2.log", True),
        ("file[!12].log", "file3.log", True),
        ("file[!12].log", "file1.log", False),
        ("{a,b}/x", "b/x", True),
        ("{a,b}/x", "c/x", False),
        ("foo/qux/qu ux/**", "foo/qux/qu ux/g", True),
        ("a+b(c).txt", "a+b(c).txt", True),
    ],
)
def test_matches(pattern: str, path: str, expected: bool) -> None:
    assert matches(pattern, path) is expected


def test_static_prefix_limits_the_walk() -> None:
    assert globbing.static_prefix("path/**/*.txt") == ("path", None)
    assert globbing.static_prefix("a/b/*.txt") == ("a/b", 1)
    assert globbing.static_prefix("*/target") == ("", 2)


def tree(root: Path, *files: str) -> Path:
    for name in files:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(name)
    return root


def test_select_directories_globs_and_warnings(tmp_path: Path) -> None:
    root = tree(tmp_path / "ws", "path/file1", "path/file2", "path/sub/x.txt", "top.txt", "other/y.txt")
    (root / "empty").mkdir()
    warnings: list[str] = []
    sel = globbing.select(
        root, ["path/", "**/file1", "empty", "*/target", "../outside", "/etc/passwd"], warnings.append
    )
    assert sel.entries == {
        "path": True,
        "path/file1": False,
        "path/file2": False,
        "path/sub": True,
        "path/sub/x.txt": False,
        "empty": True,
    }
    assert warnings == [
        "WARNING: */target: no matching files",
        "WARNING: ../outside: outside the project directory, ignored",
        "WARNING: /etc/passwd: outside the project directory, ignored",
    ]


def test_select_absolute_path_inside_the_workspace(tmp_path: Path) -> None:
    root = tree(tmp_path / "ws", "path/a")
    sel = globbing.select(root, [f"{root}/path/"], lambda m: None)
    assert set(sel.entries) == {"path", "path/a"}


def test_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    root = tree(tmp_path / "ws", "a")
    tree(tmp_path / "elsewhere", "secret")
    (root / "link").symlink_to(tmp_path / "elsewhere")
    warnings: list[str] = []
    sel = globbing.select(root, ["link/secret", "link/*"], warnings.append)
    assert sel.entries == {}
    assert len(warnings) == 2 and all("outside" in w for w in warnings)


def test_exclude_is_not_recursive(tmp_path: Path) -> None:
    root = tree(tmp_path / "ws", "foo/a", "foo/d", "foo/bar/w", "foo/qux/qu ux/g", "ux/q")
    sel = globbing.select(root, ["foo", "ux"], lambda m: None)
    sel.exclude(["foo/qux/qu ux/**", "foo/bar/**", "foo/bar", "foo/d"])
    assert set(sel.entries) == {"foo", "foo/a", "foo/qux", "foo/qux/qu ux", "ux", "ux/q"}


def test_untracked_and_copy(tmp_path: Path) -> None:
    root = tree(tmp_path / "ws", "tracked.txt", "new/made.txt")
    (root / "link").symlink_to("tracked.txt")
    sel = globbing.untracked(root, frozenset({"tracked.txt"}))
    assert set(sel.entries) == {"new/made.txt", "link"}
    dest = tmp_path / "dest"
    assert globbing.copy_selection(root, sel, dest) == 2
    assert (dest / "new/made.txt").read_text() == "new/made.txt"
    assert (dest / "link").is_symlink()


def test_selection_keeps_empty_directories(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "d" / "empty").mkdir(parents=True)
    sel = Selection()
    sel.add_tree(str(root), "d")
    dest = tmp_path / "dest"
    globbing.copy_selection(root, sel, dest)
    assert (dest / "d" / "empty").is_dir()
