"""Suite-wide scheduling: the longest tests start first, spread over pytest-xdist's workers.

``--dist worksteal`` gives each worker one contiguous share of the collected tests and lets an
idle worker steal from the *end* of another's share. A test of two minutes that sits late in a
share (the demo is ~92% down the alphabet) starts late and leaves one worker running alone at
the end: on CI's busy machine the demo took 288 s and the suite 1,211 s. Tests marked
``heavy(seconds=...)`` (seconds: measured in a whole suite run on a quiet machine) are taken out
and dealt, longest first, to the worker with the fewest heavy seconds so far, at the head of its
share; the rest keep their order. Every worker computes the same order (xdist requires it).
Without xdist the order is pytest's. They start together, so each may take a few times its
quiet-machine time: one without a ``timeout`` marker of its own gets 900 s (a hang guard).
"""

from __future__ import annotations

import pytest

from suite_order import deal_heavy_first


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deal_heavy_first(config, items)
