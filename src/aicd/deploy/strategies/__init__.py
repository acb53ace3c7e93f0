"""Rollout strategies, one module each, behind :class:`~aicd.deploy.strategies.base.Strategy`.

- :mod:`.first`: the first deployment of an environment (nothing serves yet), any strategy
- :mod:`.recreate`, :mod:`.blue_green`, :mod:`.canary`, :mod:`.shadow`: replacing a serving revision
- :mod:`.experiment`: an A/B test of the serving revision against the new one (and earlier ones)
"""

from __future__ import annotations

from aicd.deploy.plan import STRATEGIES as NAMES
from aicd.deploy.strategies.base import RolloutSteps, Strategy
from aicd.deploy.strategies.blue_green import BlueGreen
from aicd.deploy.strategies.canary import Canary
from aicd.deploy.strategies.experiment import ExperimentStrategy
from aicd.deploy.strategies.first import First
from aicd.deploy.strategies.recreate import Recreate
from aicd.deploy.strategies.shadow import Shadow
from aicd.errors import ConfigError

STRATEGIES: dict[str, Strategy] = {
    s.name: s for s in (Recreate(), BlueGreen(), Canary(), Shadow(), ExperimentStrategy())
}
assert set(STRATEGIES) == set(NAMES), "every strategy the plan accepts has a module"


def choose(name: str, *, serving: bool) -> Strategy:
    """The strategy that carries out ``name`` (the first deployment's when nothing serves yet)."""
    strategy = STRATEGIES.get(name)
    if strategy is None:
        raise ConfigError(f"strategy {name!r}: unknown; use one of {', '.join(STRATEGIES)}")
    return strategy if serving or not strategy.needs_previous else First()


__all__ = ["STRATEGIES", "RolloutSteps", "Strategy", "choose"]
