"""What `aicd deploy` does, for the CLI (locally) and for the server's deploy route alike.

:func:`load_rollout` reads the service spec and the environment's rollout from an aicd.yml (with
the `--strategy` and `--step` overrides); :func:`start_rollout` starts the environment's agent if
none answers, copies the release into the environment's folder and returns the agent's socket and
the request to send it (``control.request`` or ``control.stream``): the answer is the deployment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aicd.deploy import client
from aicd.deploy.plan import RolloutPlan
from aicd.deploy.spec import ServiceSpec

Json = dict[str, Any]


@dataclass(frozen=True)
class Rollout:
    name: str  # the environment
    spec: ServiceSpec
    plan: RolloutPlan
    config: Path  # the aicd.yml read
    display: str  # how messages name it


def load_rollout(
    name: str,
    config: Path,
    *,
    display: str | None = None,
    strategy: str | None = None,
    steps: Sequence[str] = (),
    tier: str | None = None,
) -> Rollout:
    """The service and the rollout to `name` that `config` (an aicd.yml) asks for (ConfigError)."""
    from aicd.delivery.config import load_config
    from aicd.delivery.judge_config import load_analysis
    from aicd.deploy.plan import parse_environment, parse_step_text
    from aicd.deploy.spec import service_spec

    shown = display or str(config)
    client.check_env_name(name)
    delivery = load_config(config, shown)
    spec = service_spec(delivery)
    plan = parse_environment(name, delivery.environments.get(name), shown)
    plan = plan.with_overrides(strategy, [parse_step_text(s) for s in steps] if steps else None)
    if plan.tier is None and tier:  # GitLab's environment:deployment_tier (or its guess from the name)
        plan = dataclasses.replace(plan, tier=tier)
    load_analysis(config, shown, required=False)  # errors now, not in the agent
    return Rollout(name, spec, plan, config, shown)


def start_rollout(
    location: client.Location,
    rollout: Rollout,
    release_dir: Path,
    meta: Mapping[str, Any],
    *,
    wait: bool = True,
) -> tuple[Path, Json]:
    """The agent's control socket (the agent started if none answers) and the deploy request."""
    plan = rollout.plan
    socket = client.ensure_agent(
        location,
        rollout.name,
        port=plan.port,
        predictions=plan.predictions,
        router=plan.router,
        router_limits=plan.router_limits,
        feedback=plan.feedback,
    )
    copied, copied_config = client.prepare_release(location, rollout.name, release_dir, rollout.config)
    body: Json = {
        "op": "deploy",
        "release_dir": str(copied),
        "spec": rollout.spec.to_json(),
        "plan": plan.to_json(),
        "analysis_file": str(copied_config) if copied_config else None,
        "analysis_display": rollout.display,
        "meta": dict(meta),
        "wait": wait,
    }
    return socket, body
