"""Wheels carry the UI: every template and static file matches a package-data pattern, and the
vendored files are the ones the vendor README names (same sha256)."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "src" / "aicd" / "web"


def test_every_ui_file_is_in_the_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "aicd"
    ]
    files = [p for folder in ("templates", "static") for p in (WEB / folder).rglob("*") if p.is_file()]
    assert len(files) >= 10
    for path in files:
        relative = path.relative_to(WEB.parent).as_posix()  # e.g. web/static/app.css
        assert any(fnmatch.fnmatchcase(relative, pattern) for pattern in patterns), (
            f"{relative} is not in pyproject's [tool.setuptools.package-data] aicd: wheels would miss it"
        )


def test_vendored_files_match_their_readme() -> None:
    vendor = WEB / "static" / "vendor"
    readme = (vendor / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \| ([\d.]+) \| .* \| `([0-9a-f]{64})` \|$", readme, re.M)
    assert {name for name, *_ in rows} == {p.name for p in vendor.glob("*.js")}
    for name, package, _version, digest in rows:
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
        licence = vendor / f"{package.removesuffix('.org')}.LICENSE"
        assert licence.is_file() and licence.stat().st_size > 0, licence
