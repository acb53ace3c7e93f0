"""The order of the suite's tests under pytest-xdist: see tests/conftest.py."""

from __future__ import annotations

import pytest


def _workers(config: pytest.Config) -> int:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return 1
    return int(workerinput.get("workercount", 1))


def _seconds(item: pytest.Item) -> float:
    marker = item.get_closest_marker("heavy")
    return float(marker.kwargs.get("seconds", 60)) if marker is not None else 0.0


HEAVY_TIMEOUT_S = 900  # a heavy test beside the other heavy ones on a busy machine (a hang guard)


def deal_heavy_first(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Reorder `items` in place: the heavy tests at the heads of the workers' shares."""
    workers = _workers(config)
    for item in items:
        if _seconds(item) > 0 and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(HEAVY_TIMEOUT_S))
    heavy = sorted((i for i in items if _seconds(i) > 0), key=_seconds, reverse=True)
    if workers <= 1 or not heavy:
        return
    dealt: list[list[pytest.Item]] = [[] for _ in range(workers)]
    load = [0.0] * workers
    for item in heavy:
        k = min(range(workers), key=lambda w: (load[w], w))
        dealt[k].append(item)
        load[k] += _seconds(item)
    chosen = {id(i) for i in heavy}
    rest = [i for i in items if id(i) not in chosen]
    ordered: list[pytest.Item] = []
    remaining = len(items)
    for k in range(workers):  # worksteal's first split: remaining // workers left, in order
        size = remaining // (workers - k)
        take = max(0, size - len(dealt[k]))
        ordered += dealt[k] + rest[:take]
        rest = rest[take:]
        remaining -= len(dealt[k]) + take
    items[:] = ordered + rest
