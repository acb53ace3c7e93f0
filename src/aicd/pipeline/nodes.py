"""YAML values that remember where they came from.

The loader builds plain Python values, except that mappings are
:class:`LocMap` and sequences :class:`LocList`, which carry the file, line
and column of the node and of each key / item, so that every later stage
(includes, extends, building the IR, lint) can name the place of a problem.
`!reference [job, key]` becomes a :class:`Reference` until it is resolved.
Lines and columns are 1-based.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Mark:
    """A position in a YAML file (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


NO_MARK = Mark("", 0, 0)


class LocMap(dict[str, Any]):
    """A mapping with the mark of itself and of each key."""

    __slots__ = ("key_marks", "mark")

    def __init__(self, *args: Any, mark: Mark = NO_MARK, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mark: Mark = mark
        self.key_marks: dict[str, Mark] = {}

    def mark_of(self, key: str) -> Mark:
        """Where `key` is written; the map's own mark when unknown."""
        return self.key_marks.get(key, self.mark)

    def copy_with(self) -> LocMap:
        """Shallow copy keeping marks."""
        out = LocMap(self, mark=self.mark)
        out.key_marks = dict(self.key_marks)
        return out


class LocList(list[Any]):
    """A sequence with the mark of itself and of each item."""

    __slots__ = ("item_marks", "mark")

    def __init__(self, *args: Any, mark: Mark = NO_MARK) -> None:
        super().__init__(*args)
        self.mark: Mark = mark
        self.item_marks: list[Mark] = []

    def mark_of(self, index: int) -> Mark:
        if 0 <= index < len(self.item_marks):
            return self.item_marks[index]
        return self.mark


@dataclass(frozen=True)
class Reference:
    """`!reference [a, b, c]`, not yet resolved."""

    path: tuple[str, ...]
    mark: Mark


def mark_of(value: Any, default: Mark = NO_MARK) -> Mark:
    """The mark of a LocMap/LocList/Reference, else `default`."""
    if isinstance(value, (LocMap, LocList, Reference)):
        return value.mark
    return default


def describe(value: Any, *, quote_strings: bool = True) -> str:
    """How a YAML value reads to a user in an error: 'a mapping', 'a list',
    'a string ('x')', 'empty (null)'..."""
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})" if quote_strings else "a string"
    if isinstance(value, Reference):
        return "an unresolved !reference"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"
