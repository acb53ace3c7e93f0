"""The deploy package's layout: rollouts do not depend on the agent; one strategy per plan strategy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aicd.deploy.plan import BLUE_GREEN, CANARY, EXPERIMENT, RECREATE, SHADOW, STRATEGIES
from aicd.deploy.strategies import choose
from aicd.deploy.strategies.blue_green import BlueGreen
from aicd.deploy.strategies.canary import Canary
from aicd.deploy.strategies.experiment import ExperimentStrategy
from aicd.deploy.strategies.first import First
from aicd.deploy.strategies.recreate import Recreate
from aicd.deploy.strategies.shadow import Shadow
from aicd.errors import ConfigError


def test_rollouts_and_strategies_import_without_the_agent() -> None:
    code = (
        "import sys, aicd.deploy.rollout, aicd.deploy.strategies; "
        "print(sorted(m for m in sys.modules if m in ('aicd.deploy.agent', 'aicd.deploy.client')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("name", "serving", "expected"),
    [
        (RECREATE, False, Recreate),
        (RECREATE, True, Recreate),
        (BLUE_GREEN, False, First),
        (BLUE_GREEN, True, BlueGreen),
        (CANARY, False, First),
        (CANARY, True, Canary),
        (SHADOW, False, First),
        (SHADOW, True, Shadow),
        (EXPERIMENT, False, First),
        (EXPERIMENT, True, ExperimentStrategy),
    ],
)
def test_each_strategy_has_its_module(name: str, serving: bool, expected: type) -> None:
    assert isinstance(choose(name, serving=serving), expected)


def test_every_plan_strategy_is_covered_and_an_unknown_one_is_a_clear_error() -> None:
    assert {choose(name, serving=True).name for name in STRATEGIES} == set(STRATEGIES)
    with pytest.raises(
        ConfigError,
        match="strategy 'bandit': unknown; use one of recreate, blue-green, canary, shadow, experiment",
    ):
        choose("bandit", serving=True)
