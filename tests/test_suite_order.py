"""tests/conftest.py deals the heavy tests to the heads of xdist's worker shares."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from conftest import pytest_collection_modifyitems


class _Item:
    def __init__(self, name: str, seconds: float = 0) -> None:
        self.name, self.seconds = name, seconds

    def get_closest_marker(self, name: str) -> Any:
        return SimpleNamespace(kwargs={"seconds": self.seconds}) if self.seconds and name == "heavy" else None


def _order(items: list[Any], workers: int | None) -> list[str]:
    config = SimpleNamespace() if workers is None else SimpleNamespace(workerinput={"workercount": workers})
    pytest_collection_modifyitems(config, items)  # type: ignore[arg-type]
    return [i.name for i in items]


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_each_share_starts_with_its_heavy_tests_longest_first(workers: int) -> None:
    items = [_Item(f"t{i}") for i in range(40)]
    for position, seconds in ((5, 30), (17, 130), (31, 70), (39, 60), (2, 45)):
        items[position] = _Item(f"h{seconds}", seconds)
    order = _order(items, workers)
    assert sorted(order) == sorted(i.name for i in items)  # nothing lost or doubled
    shares, left = [], list(order)
    for k in range(workers):  # worksteal's first split
        size = len(left) // (workers - k)
        shares.append(left[:size])
        left = left[size:]
    heads = [s[0] for s in shares]
    assert heads[0] == "h130" and set(heads) <= {"h130", "h70", "h60", "h45", "h30"}
    for share in shares:  # heavy ones first in each share, the others in their collected order
        heavy = [n for n in share if n.startswith("h")]
        assert share[: len(heavy)] == heavy
        light = [int(n[1:]) for n in share if n.startswith("t")]
        assert light == sorted(light)


def test_without_workers_the_order_is_pytests() -> None:
    items = [_Item("a"), _Item("b", 99), _Item("c")]
    assert _order(items, None) == ["a", "b", "c"]
