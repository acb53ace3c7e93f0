"""Adoption: a new supervisor finds the instances a dead (or detached) one left running."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_supervisor_support import (
    Events,
    alive,
    base_env,
    get,
    kill_leftovers,
    run,
    service_env,
    service_spec,
    starts,
    supervising,
    wait_gone,
    write_service,
)

from aicd.deploy.supervisor.proc import start_time_of
from aicd.deploy.supervisor.supervisor import InstanceState
from aicd.errors import ConfigError

# A supervisor in a process of its own, killed with SIGKILL by the test: as when aicd's agent dies.
AGENT = """
import asyncio, sys
from pathlib import Path
from aicd.deploy.supervisor.supervisor import Supervisor
from aicd.deploy.spec import ServiceSpec

async def main():
    state, release, count = sys.argv[1:4]
    sup = Supervisor(Path(state))
    spec = ServiceSpec(command=(sys.executable, "service.py"), instances=2, liveness_interval=0.2)
    infos = await sup.start("r1", Path(release), spec, env={"COUNT_FILE": count})
    print("READY", " ".join(f"{i.pid}:{i.port}" for i in infos), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def start_agent(tmp: Path, release: Path) -> tuple[subprocess.Popen[str], list[tuple[int, int]]]:
    script = tmp / "agent.py"
    script.write_text(AGENT)
    agent = subprocess.Popen(
        [sys.executable, str(script), str(tmp / "state"), str(release), str(tmp / "starts")],
        stdout=subprocess.PIPE,
        text=True,
        env=base_env(),
    )
    assert agent.stdout is not None
    try:
        line = agent.stdout.readline().split()
    except BaseException:
        agent.kill()
        raise
    assert line and line[0] == "READY", line
    pairs = [tuple(int(x) for x in item.split(":")) for item in line[1:]]
    return agent, [(p[0], p[1]) for p in pairs]


def test_adopts_instances_of_a_killed_supervisor_then_restarts_one_that_dies(tmp_path: Path) -> None:
    release = write_service(tmp_path / "release")
    try:
        adopt_after_agent_died(tmp_path, release)
    finally:
        kill_leftovers(tmp_path)


def adopt_after_agent_died(tmp_path: Path, release: Path) -> None:
    agent, instances = start_agent(tmp_path, release)
    agent.kill()  # SIGKILL: no clean-up of any kind
    agent.wait()
    agent.stdout.close()  # type: ignore[union-attr]
    assert all(alive(pid) for pid, _ in instances)
    events = Events()

    async def main() -> None:
        async with supervising(tmp_path / "state", on_event=events) as sup:
            adopted = await sup.adopt()
            assert [(i.pid, i.port) for i in adopted] == instances
            assert all(i.state is InstanceState.READY and i.adopted and i.restarts == 0 for i in adopted)
            for pid, port in instances:
                assert get(port)[1].startswith(f"pid={pid} ")  # the same process keeps serving
            assert len(starts(tmp_path)) == 2  # nothing was restarted

            # it is watched: an adopted instance that dies is noticed and restarted
            dead_pid, port = instances[0]
            os.kill(dead_pid, signal.SIGKILL)
            await events.wait(InstanceState.READY, count=3, timeout=10)
            (_, crashed), *_ = events.of(InstanceState.CRASHED)
            assert crashed.reason.startswith("exited (exit status unknown: the process was adopted)")
            first, second = sup.instances("r1")
            assert first.pid not in (None, dead_pid) and not first.adopted and first.port == port
            assert get(port)[1].startswith(f"pid={first.pid} ")
            assert second.pid == instances[1][0]
            await sup.shutdown()

    run(main())
    assert all(wait_gone(pid) for pid, _ in instances)
    assert len(starts(tmp_path)) == 3


def test_detached_supervisor_is_replaced_without_restarts(tmp_path: Path) -> None:
    release = write_service(tmp_path / "release")

    async def main() -> None:
        async with supervising(tmp_path / "state") as first:
            (info,) = await first.start("r1", release, service_spec(), env=service_env(tmp_path))
            await first.detach()
            del first
            async with supervising(tmp_path / "state") as second:
                (adopted,) = await second.adopt()
                assert (adopted.pid, adopted.port) == (info.pid, info.port)
                assert adopted.state is InstanceState.READY and adopted.adopted
                assert get(info.port)[1].startswith(f"pid={info.pid} ")
                # the process is a child of this test process, not of `second`: stop still ends it
                started = time.monotonic()
                await second.stop("r1")
                assert time.monotonic() - started < 1.5
                assert info.pid is not None and wait_gone(info.pid, 1)
                await second.shutdown()

    run(main())
    assert len(starts(tmp_path)) == 1


def test_pid_reuse_is_not_taken_for_the_instance(tmp_path: Path) -> None:
    release = write_service(tmp_path / "release")
    events = Events()

    async def main() -> int:
        async with supervising(tmp_path / "state") as first:
            (info,) = await first.start("r1", release, service_spec(), env=service_env(tmp_path))
            await first.stop("r1")  # gone ...
            await first.detach()
            return info.port

    port = run(main())
    # ... and its pid now belongs to an unrelated process that leads its own group (the worst case).
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        state_file = tmp_path / "state" / "supervisor.json"
        doc = json.loads(state_file.read_text())
        assert doc["revisions"] == {}
        doc["revisions"]["r1"] = {
            "release_dir": str(release),
            "spec": service_spec().to_json(),
            "env": service_env(tmp_path),
            "instances": [
                {
                    "index": 0,
                    "pid": stranger.pid,
                    "start_time": (start_time_of(stranger.pid) or 0) - 1,  # not the same process
                    "port": port,
                    "port_fixed": False,
                    "state": "ready",
                    "restarts": 0,
                    "command": "python service.py",
                }
            ],
        }
        state_file.write_text(json.dumps(doc))

        async def adopt() -> None:
            async with supervising(tmp_path / "state", on_event=events) as sup:
                (instance,) = await sup.adopt()
                assert not instance.adopted and instance.pid != stranger.pid  # seen as gone: restarted
                (ready,) = await sup.wait_for("r1", [InstanceState.READY], timeout=10)
                assert ready.pid not in (None, stranger.pid) and not ready.adopted
                assert get(ready.port)[1].startswith(f"pid={ready.pid} ")
                await sup.shutdown()

        run(adopt())
        assert stranger.poll() is None and alive(stranger.pid)  # never signalled
        (_, gone), *_ = events.of(InstanceState.CRASHED)
        assert gone.reason == "gone while no supervisor watched it; restarting"
    finally:
        stranger.kill()
        stranger.wait()


def test_damaged_state_file(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "supervisor.json").write_text('{"version": 1, "revisions": {"r1": {}}}')

    async def main() -> None:
        async with supervising(tmp_path / "state") as sup:
            with pytest.raises(ConfigError, match=r"supervisor.json: the supervisor state file is damaged"):
                await sup.adopt()
            await sup.shutdown()

    run(main())


def test_exit_is_seen_without_pidfd_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every kernel here has pidfd_open; the fallback (polling /proc) is for those without, so the
    # test takes pidfd away to exercise it.
    from aicd.deploy.supervisor import proc as supervisor_proc

    monkeypatch.setattr(supervisor_proc, "_pidfd", lambda pid: None)
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        started = start_time_of(stranger.pid)
        assert started is not None
        proc = supervisor_proc.ProcessId(stranger.pid, started)

        async def main() -> float:
            waiting = asyncio.ensure_future(supervisor_proc.wait_exit(proc, None))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            os.kill(stranger.pid, signal.SIGKILL)
            killed = time.monotonic()
            assert await waiting is None  # not our child through Popen: no exit status
            return time.monotonic() - killed

        assert run(main()) < supervisor_proc.POLL_SECONDS + 0.2
    finally:
        stranger.kill()
        stranger.wait()
