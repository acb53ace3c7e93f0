"""The package layout the design map promises: `aicd.core` holds only what the doors call."""

from __future__ import annotations

import ast
from pathlib import Path

import aicd

SRC = Path(aicd.__file__).parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_demo_is_its_own_package_not_part_of_the_core() -> None:
    assert not sorted(p.name for p in (SRC / "core").glob("demo*"))
    assert (SRC / "demo" / "__init__.py").is_file()
    assert (SRC / "demo" / "story.py").is_file()


def test_only_the_demo_command_imports_the_demo() -> None:
    importers = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "demo" not in path.relative_to(SRC).parts[:1]
        and any(name == "aicd.demo" or name.startswith("aicd.demo.") for name in _imports(path))
    )
    assert importers == ["cli/demo_cmd.py"]
