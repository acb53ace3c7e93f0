"""The documentation's commands run from any clone: no program named by a path of one machine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def machine_paths(text: str) -> list[str]:
    """Command lines in fenced blocks whose program is an absolute path (``/x/venv/bin/pytest``)."""
    found = []
    for block in FENCE.findall(text):
        for line in block.splitlines():
            command = line.strip().removeprefix("$ ").strip()
            program = command.split(" ", 1)[0]
            if program.startswith("/") and "/bin/" in program:
                found.append(command)
    return found


def test_machine_paths_are_found() -> None:
    assert machine_paths("```\n/work/venv/bin/pytest tests -q\n$ aicd run\n```\n") == [
        "/work/venv/bin/pytest tests -q"
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_commands_in_the_docs_run_from_a_clone(page: Path) -> None:
    assert machine_paths(page.read_text(encoding="utf-8")) == []
