"""The supervisor with real processes on 127.0.0.1: readiness, never healthy, stop, bad input."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import time
from pathlib import Path

import pytest
from test_supervisor_support import (
    Events,
    alive,
    get,
    run,
    service_env,
    service_spec,
    supervising,
    wait_gone,
    write_service,
)

from aicd.deploy.ports import allocate_port
from aicd.deploy.supervisor.supervisor import InstanceState, Supervisor
from aicd.errors import ConfigError, ConflictError, DeployError, NotFoundError


def test_start_two_instances_ready_then_stop(tmp_path: Path) -> None:
    release = write_service(tmp_path / "release")
    events = Events()

    async def main() -> None:
        async with supervising(tmp_path / "state", on_event=events) as sup:
            spec = service_spec(instances=2, env={"GREETING": "from-spec"})
            infos = await sup.start("r1", release, spec, env=service_env(tmp_path, HEALTH_DELAY="0.3"))
            assert [i.state for i in infos] == [InstanceState.READY, InstanceState.READY]
            assert infos[0].port != infos[1].port
            for info in infos:
                status, body = get(info.port)
                assert status == 200
                assert f"pid={info.pid} " in body
                assert f"cwd={release.resolve()} " in body  # cwd is the release directory
                assert "greeting=from-spec" in body  # the spec's env
                assert info.log.parent == tmp_path / "state" / "logs"
            # the state file: pid, start time, port, revision, command; private
            state_file = tmp_path / "state" / "supervisor.json"
            assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
            doc = json.loads(state_file.read_text())
            recorded = doc["revisions"]["r1"]["instances"]
            assert [(r["pid"], r["port"]) for r in recorded] == [(i.pid, i.port) for i in infos]
            assert all(isinstance(r["start_time"], int) and r["command"] for r in recorded)

            pids = [i.pid for i in infos]
            started = time.monotonic()
            await sup.stop("r1")
            assert time.monotonic() - started < 1.5  # SIGTERM was enough: no wait for the grace
            assert all(pid is not None and wait_gone(pid, 1) for pid in pids)
            assert sup.revisions() == []
            assert json.loads(state_file.read_text())["revisions"] == {}
            await sup.shutdown()

    run(main())
    assert events.states(0) == [InstanceState.STARTING, InstanceState.READY, InstanceState.STOPPED]
    # stdout and stderr are appended to the instance's log
    log = (tmp_path / "state" / "logs" / "r1.0.log").read_text()
    assert "listening on 127.0.0.1:" in log and "request " in log and "[aicd " in log


def test_never_healthy_fails_within_the_timeout_and_disturbs_nothing(tmp_path: Path) -> None:
    release = write_service(tmp_path / "release")
    events = Events()

    async def main() -> None:
        async with supervising(tmp_path / "state", on_event=events) as sup:
            good = await sup.start("r1", release, service_spec(), env=service_env(tmp_path))
            spec = service_spec(readiness_timeout=1.5, instances=2)
            started = time.monotonic()
            with pytest.raises(DeployError) as caught:
                await sup.start("r2", release, spec, env={"NEVER_HEALTHY": "1"})
            took = time.monotonic() - started
            assert 1.5 <= took <= 2.5, took
            message = str(caught.value)
            assert "instance r2." in message and "readiness timeout of 1.5s" in message
            assert "last answer: HTTP 503" in message
            assert 'request "GET /healthz HTTP/1.1" 503' in message  # the end of its log
            failed = [e.pid for _, e in events.items if e.revision == "r2" and e.pid]
            assert failed and all(pid is not None and wait_gone(pid, 0.5) for pid in failed)
            # r1 kept serving, untouched; r2 is not recorded anywhere
            assert sup.revisions() == ["r1"]
            assert get(good[0].port)[0] == 200
            assert [i.state for i in sup.instances("r1")] == [InstanceState.READY]
            doc = json.loads((tmp_path / "state" / "supervisor.json").read_text())
            assert list(doc["revisions"]) == ["r1"]
            await sup.shutdown()

    run(main())
    r2_states = [e.state for _, e in events.items if e.revision == "r2"]
    assert r2_states.count(InstanceState.STOPPED) == 2 and InstanceState.READY not in r2_states


def test_exit_during_start_fails_at_once_with_the_log(tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()

    async def main() -> None:
        async with supervising(tmp_path / "state") as sup:
            spec = service_spec(command="echo 'model file missing' >&2; exit 3", readiness_timeout=20)
            started = time.monotonic()
            with pytest.raises(DeployError) as caught:
                await sup.start("r1", release, spec)
            assert time.monotonic() - started < 2
            assert "exited with code 3 before it became healthy" in str(caught.value)
            assert "model file missing" in str(caught.value)
            assert sup.revisions() == []
            await sup.shutdown()

    run(main())


def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    release = write_service(tmp_path / "release")

    async def main() -> None:
        async with supervising(tmp_path / "state") as sup:
            # Run through the shell: sh -> python service -> sleep child, all in one group.
            spec = service_spec(command=f"{sys.executable} service.py; echo never", stop_grace=0.6)
            env = service_env(tmp_path, CHILD_PID_FILE=str(tmp_path / "child"), IGNORE_TERM="1")
            (info,) = await sup.start("r1", release, spec, env=env)
            child = int((tmp_path / "child").read_text())
            assert info.pid is not None and alive(info.pid) and alive(child)
            assert os.getpgid(child) == info.pid  # the instance leads its own group
            started = time.monotonic()
            await sup.stop("r1")
            took = time.monotonic() - started
            # the service ignores SIGTERM: SIGKILL after the 0.6 s grace, for the whole group
            assert 0.6 <= took <= 1.6, took
            assert wait_gone(info.pid, 0.5) and wait_gone(child, 0.5)
            assert "SIGKILL after 0.6s" in info.log.read_text()
            await sup.shutdown()

    run(main())


def test_liveness_marks_unhealthy_and_ready_again(tmp_path: Path) -> None:
    release = write_service(tmp_path / "release")
    sick = tmp_path / "sick"
    events = Events()

    async def main() -> None:
        async with supervising(tmp_path / "state", on_event=events) as sup:
            spec = service_spec(liveness_interval=0.1, liveness_failures=2)
            (info,) = await sup.start("r1", release, spec, env=service_env(tmp_path, SICK_FILE=str(sick)))
            sick.write_text("")
            await events.wait(InstanceState.UNHEALTHY, timeout=3)
            sick.unlink()
            await events.wait(InstanceState.READY, count=2, timeout=3)
            assert sup.instances("r1")[0].pid == info.pid  # never restarted
            await sup.shutdown()

    run(main())
    (_, unhealthy), *_ = events.of(InstanceState.UNHEALTHY)
    assert "2 health checks in a row failed" in unhealthy.reason and "HTTP 503" in unhealthy.reason


def test_missing_release_directory(tmp_path: Path) -> None:
    async def main() -> None:
        async with supervising(tmp_path / "state") as sup:
            with pytest.raises(NotFoundError, match=r"release directory .*nope does not exist"):
                await sup.start("r1", tmp_path / "nope", service_spec())
            (tmp_path / "file").write_text("")
            with pytest.raises(NotFoundError, match="is not a directory"):
                await sup.start("r1", tmp_path / "file", service_spec())
            assert sup.revisions() == [] and not (tmp_path / "state" / "logs").exists()
            await sup.shutdown()

    run(main())


def test_port_already_taken(tmp_path: Path) -> None:
    release = write_service(tmp_path / "release")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]

        async def main() -> None:
            async with supervising(tmp_path / "state") as sup:
                with pytest.raises(ConflictError) as caught:
                    await sup.start("r1", release, service_spec(), ports=[taken])
                message = str(caught.value)
                assert f"port {taken} on 127.0.0.1 is already in use by pid {os.getpid()}" in message
                assert sup.revisions() == [] and not (tmp_path / "state" / "logs").exists()
                # an explicit free port is used as given
                free = allocate_port()
                (info,) = await sup.start("r1", release, service_spec(), ports=[free])
                assert info.port == free and get(free)[0] == 200
                with pytest.raises(ConflictError, match="already used by a running instance"):
                    await sup.start("r2", release, service_spec(), ports=[free])
                await sup.shutdown()

        run(main())


def test_bad_inputs(tmp_path: Path) -> None:
    release = write_service(tmp_path / "release")

    async def main() -> None:
        async with supervising(tmp_path / "state") as sup:
            with pytest.raises(ConflictError, match="another supervisor"):
                Supervisor(tmp_path / "state")
            with pytest.raises(ConfigError, match="a revision name is"):
                await sup.start("../r1", release, service_spec())
            with pytest.raises(ConfigError, match="2 ports given for 1 instances"):
                await sup.start("r1", release, service_spec(), ports=[20001, 20002])
            with pytest.raises(ConfigError, match="PORT is set by aicd"):
                await sup.start("r1", release, service_spec(), env={"PORT": "1"})
            with pytest.raises(DeployError, match=r"no-such-program.* not found"):
                await sup.start("r1", release, service_spec(command=("no-such-program", "x")))
            with pytest.raises(NotFoundError, match="'r9' is not running here"):
                await sup.stop("r9")
            await sup.start("r1", release, service_spec(), env=service_env(tmp_path))
            with pytest.raises(ConflictError, match="r1 is already running"):
                await sup.start("r1", release, service_spec())
            assert len(sup.instances("r1")) == 1  # the refused second start changed nothing
            await sup.shutdown()
            with pytest.raises(ConflictError, match="shut down or detached"):
                await sup.start("r2", release, service_spec())
            # the directory is free again for a new supervisor
            async with supervising(tmp_path / "state") as again:
                assert await again.adopt() == []
                await again.shutdown()

    run(main())


def test_canceled_start_leaves_no_process(tmp_path: Path) -> None:
    import asyncio

    release = write_service(tmp_path / "release")

    async def main() -> None:
        async with supervising(tmp_path / "state") as sup:
            task = asyncio.ensure_future(
                sup.start("r1", release, service_spec(), env=service_env(tmp_path, NEVER_HEALTHY="1"))
            )
            await asyncio.sleep(0.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert sup.revisions() == []
            await sup.shutdown()

    run(main())
    pids = [int(x) for x in (tmp_path / "starts").read_text().split()]
    assert pids and all(wait_gone(pid, 1) for pid in pids)
