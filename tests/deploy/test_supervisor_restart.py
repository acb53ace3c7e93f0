"""Crashed instances: restarts with exponential backoff (measured), backoff reset, crash loop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest
from test_supervisor_support import (
    Events,
    alive,
    get,
    run,
    service_env,
    service_spec,
    starts,
    supervising,
    write_service,
)

from aicd.deploy.supervisor.supervisor import InstanceEvent, InstanceState, RestartPolicy
from aicd.errors import ConfigError

SLACK = 0.25  # scheduling and process start-up on a busy 2-core machine


def restart_delays(events: Events) -> list[float]:
    """Seconds from each `crashed` event to the `starting` of the restart that follows it."""
    out: list[float] = []
    crashed_at: float | None = None
    for at, event in events.items:
        if event.state is InstanceState.CRASHED:
            crashed_at = at
        elif event.state is InstanceState.STARTING and crashed_at is not None:
            out.append(at - crashed_at)
            crashed_at = None
    return out


def test_crash_restarts_with_exponential_backoff(tmp_path: Path) -> None:
    release = write_service(tmp_path / "release")
    events = Events()
    policy = RestartPolicy(initial_delay=0.2, factor=2, max_delay=0.7, crash_limit=10, reset_after=30)

    async def main() -> None:
        async with supervising(tmp_path / "state", on_event=events, policy=policy) as sup:
            # the first 4 starts crash just after they became healthy; the 5th stays up
            await sup.start("r1", release, service_spec(), env=service_env(tmp_path, CRASH_FIRST="4"))
            await events.wait(InstanceState.READY, count=5, timeout=15)
            (info,) = sup.instances("r1")
            assert info.state is InstanceState.READY and info.restarts == 4
            assert get(info.port)[1].startswith(f"pid={info.pid} start=5 ")
            await sup.shutdown()

    run(main())
    delays = restart_delays(events)
    expected = [0.2, 0.4, 0.7, 0.7]  # doubling, capped at max_delay
    print("restart delays (s):", " ".join(f"{d:.3f}" for d in delays), "expected", expected)
    assert len(delays) == 4, events.describe()
    for got, want in zip(delays, expected, strict=True):
        assert want <= got <= want + SLACK, (delays, expected)
    crashed = [e.reason for _, e in events.of(InstanceState.CRASHED)]
    assert crashed[0] == "exited with code 3; restarting in 0.2s"
    assert len(starts(tmp_path)) == 5


def test_backoff_starts_over_after_the_instance_stayed_up(tmp_path: Path) -> None:
    release = write_service(tmp_path / "release")
    events = Events()
    policy = RestartPolicy(initial_delay=0.1, factor=4, max_delay=5, crash_limit=10, reset_after=0.3)

    async def main() -> None:
        async with supervising(tmp_path / "state", on_event=events, policy=policy) as sup:
            # each of the first 3 starts stays up 0.45 s (> reset_after) before crashing
            env = service_env(tmp_path, CRASH_FIRST="3", CRASH_DELAY="0.45")
            await sup.start("r1", release, service_spec(), env=env)
            await events.wait(InstanceState.READY, count=4, timeout=15)
            await sup.shutdown()

    run(main())
    delays = restart_delays(events)
    assert len(delays) == 3
    assert all(0.1 <= d <= 0.1 + SLACK for d in delays), delays  # never 0.4 or 1.6


def test_crash_loop_is_detected_and_reported(tmp_path: Path) -> None:
    release = write_service(tmp_path / "release")
    events = Events()
    loops: list[str] = []

    def on_event(event: InstanceEvent) -> None:
        events(event)
        if event.state is InstanceState.CRASH_LOOP:
            loops.append(f"{event.revision}: {event.reason}")

    policy = RestartPolicy(initial_delay=0.05, crash_limit=3, crash_window=60)

    async def main() -> None:
        async with supervising(tmp_path / "state", on_event=on_event, policy=policy) as sup:
            await sup.start("r1", release, service_spec(), env=service_env(tmp_path, CRASH_FIRST="1000"))
            await events.wait(InstanceState.CRASH_LOOP, timeout=10)
            await events.wait(InstanceState.CRASH_LOOP, timeout=10)
            await asyncio.sleep(0.6)  # nothing restarts it any more
            assert len(starts(tmp_path)) == 3
            (info,) = sup.instances("r1")
            assert info.state is InstanceState.CRASH_LOOP
            doc = json.loads((tmp_path / "state" / "supervisor.json").read_text())
            assert doc["revisions"]["r1"]["instances"][0]["state"] == "crash_loop"
            await sup.detach()
            # a new supervisor keeps it down: the owner decides (roll back), not a restart loop
            async with supervising(tmp_path / "state", on_event=on_event, policy=policy) as again:
                (adopted,) = await again.adopt()
                assert adopted.state is InstanceState.CRASH_LOOP
                await asyncio.sleep(0.3)
                assert len(starts(tmp_path)) == 3
                await again.shutdown()

    run(main())
    assert len(loops) == 2
    assert loops[0].startswith("r1: 3 crashes within 60s, not restarted (last: exited with code 3)")
    assert events.states(0)[:6] == [
        InstanceState.STARTING,
        InstanceState.READY,
        InstanceState.CRASHED,
        InstanceState.STARTING,
        InstanceState.READY,
        InstanceState.CRASHED,
    ]


def test_killed_instance_is_restarted(tmp_path: Path) -> None:
    release = write_service(tmp_path / "release")
    events = Events()

    async def main() -> None:
        async with supervising(tmp_path / "state", on_event=events) as sup:
            (info,) = await sup.start("r1", release, service_spec(), env=service_env(tmp_path))
            assert info.pid is not None
            os.kill(info.pid, signal.SIGKILL)
            await events.wait(InstanceState.READY, count=2, timeout=10)
            (after,) = sup.instances("r1")
            assert after.pid != info.pid and after.port == info.port and after.restarts == 1
            assert get(after.port)[1].startswith(f"pid={after.pid} ")
            await sup.shutdown()

    run(main())
    (_, crashed), *_ = events.of(InstanceState.CRASHED)
    assert crashed.reason == "was killed by SIGKILL; restarting in 0.5s"


def test_restart_policy_values() -> None:
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert policy.delay(10_000) == 30
    with pytest.raises(ConfigError):
        RestartPolicy(initial_delay=5, max_delay=1)
    with pytest.raises(ConfigError):
        RestartPolicy(crash_limit=0)


def test_what_a_crashed_instance_left_in_its_group_is_ended_before_the_restart(tmp_path: Path) -> None:
    release = write_service(tmp_path / "release")
    events = Events()
    child_file = tmp_path / "child"

    async def main() -> None:
        async with supervising(tmp_path / "state", on_event=events) as sup:
            env = service_env(tmp_path, CRASH_FIRST="1", CHILD_PID_FILE=str(child_file))
            await sup.start("r1", release, service_spec(), env=env)
            first_child = int(child_file.read_text())
            await events.wait(InstanceState.READY, count=2, timeout=10)
            assert not alive(first_child)  # the crashed leader's `sleep` did not outlive it
            assert alive(int(child_file.read_text()))  # the new instance's own child runs
            await sup.shutdown()

    run(main())
