"""Suite-wide scheduling: the longest tests start first, spread over pytest-xdist's workers.

``--dist worksteal`` gives each worker one contiguous share of the collected tests and lets an
idle worker steal from the *end* of another's share. A test of two minutes that sits late in a
share (the demo is ~92% down the alphabet) starts late and leaves one worker running alone at
the end: on CI's busy machine the demo took 288 s and the suite 1,211 s. Tests marked
``heavy(seconds=...)`` (seconds: measured in a whole suite run on a quiet machine) are taken out
and dealt, longest first, to the worker with the fewest heavy seconds so far, at the head of its
share; the rest keep their order. Every worker computes the same order (xdist requires it).
Without xdist the order is pytest's.
"""

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workers = _workers(config)
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
