"""What the sandbox executor adds to the local one: a clean environment, Python and aicd inside,
the network switch (job variable, aicd.yml), file variables under /aicd, the log size cap, the probe."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aicd.executors.sandbox import SandboxExecutor, SandboxLimits, bwrap_args, probe, python_paths
from aicd.pipeline.ir import Variable

from .contract import Ran, Runner, Session, make_job, make_project

PROBE = probe()
pytestmark = pytest.mark.skipif(not PROBE.ok, reason=PROBE.reason)


def _runner(tmp_path: Path, files: dict[str, str] | None = None, **kw: object) -> Runner:
    project = make_project(tmp_path / "project", files)

    def factory(project: Path, home: Path) -> SandboxExecutor:
        return SandboxExecutor(project, home, **kw)  # type: ignore[arg-type]

    return Runner(factory, project, tmp_path / "home", tmp_path / "run")


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections (the host's network)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


CONNECT = (
    "python -c \"import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 5); "
    "print('connected')\" \"$PORT\" || echo 'no network'"
)


def test_the_environment_holds_only_the_jobs_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("AICD_SECRET_KEY", "AICD_TOKEN", "AICD_DATABASE_URL", "AICD_HOME", "SOME_SERVER_VAR"):
        monkeypatch.setenv(key, "from-the-server")
    runner = _runner(tmp_path, job_env={"AICD_DATABASE_URL": "sqlite:///x", "AICD_ENV_SCOPE": "demo"})
    ran = runner.one(
        make_job("env | sort | grep -c from-the-server || true", 'echo "$AICD_ENV_SCOPE $HOME $X"'),
        variables=[Variable("X", "x-$AICD_SECRET_KEY")],  # expansion does not reach the server's environment
    )
    assert ran.outcome.status == "success", ran.lines
    assert ran.out == ["0", "demo /tmp/home x-"]


def test_python_and_aicd_run_inside(tmp_path: Path) -> None:
    ran = _runner(tmp_path).one(make_job("python -c 'import aicd, yaml; print(\"ok\")'", "aicd --version"))
    assert ran.outcome.status == "success", ran.lines
    assert ran.out[0] == "ok" and "aicd" in ran.out[1]


def test_the_network_is_on_by_default_and_off_by_variable(tmp_path: Path, listener: int) -> None:
    runner = _runner(tmp_path)
    port = Variable("PORT", str(listener))
    on = runner.one(make_job(CONNECT), variables=[port])
    off = runner.one(make_job(CONNECT), variables=[port, Variable("AICD_JOB_NETWORK", "none")])
    assert on.out == ["connected"]
    assert off.out[-1] == "no network"
    assert any("network is off" in text for kind, text in off.lines if kind == "info")


def test_aicd_yml_turns_the_network_off(tmp_path: Path, listener: int) -> None:
    files = {"aicd.yml": "sandbox:\n  network: none\n", "README.md": "x\n"}
    ran = _runner(tmp_path, files).one(make_job(CONNECT), variables=[Variable("PORT", str(listener))])
    assert ran.out[-1] == "no network"


@pytest.mark.parametrize(("value", "reached"), [("on", True), ("off", False), ("maybe", False)])
def test_aicd_yml_network_values(tmp_path: Path, listener: int, value: str, reached: bool) -> None:
    files = {"aicd.yml": f"sandbox:\n  network: {value}\n", "README.md": "x\n"}
    ran = _runner(tmp_path, files).one(make_job(CONNECT), variables=[Variable("PORT", str(listener))])
    assert ran.out[-1] == ("connected" if reached else "no network")


def test_an_unknown_network_value_turns_it_off_with_a_warning(tmp_path: Path, listener: int) -> None:
    variables = [Variable("PORT", str(listener)), Variable("AICD_JOB_NETWORK", "maybe")]
    ran = _runner(tmp_path).one(make_job(CONNECT), variables=variables)
    assert ran.out[-1] == "no network"
    assert any("'maybe' is neither 'none' nor 'on'" in text for _, text in ran.lines)


def test_file_variables_are_under_aicd_files(tmp_path: Path) -> None:
    ran = _runner(tmp_path).one(
        make_job('echo "$CONF"', 'cat "$CONF"', 'echo "$REF"'),
        variables=[Variable("CONF", "the value", file=True), Variable("REF", "--config=$CONF")],
    )
    assert ran.outcome.status == "success", ran.lines
    assert ran.out == ["/aicd/files/CONF", "the value", "--config=/aicd/files/CONF"]


def test_the_log_stops_at_its_size_limit_and_the_job_goes_on(tmp_path: Path) -> None:
    runner = _runner(tmp_path, limits=SandboxLimits(log_bytes=10_000))
    ran: Ran = runner.one(make_job("for i in $(seq 1 5000); do echo line $i; done", "echo done > end.txt"))
    assert ran.outcome.status == "success"
    log = ran.outcome.log_path.read_text()
    assert len(log) < 12_000 and "line 5000" not in log
    assert "exceeded the limit of 10000 bytes" in log


def test_open_files_and_cpu_limits_apply(tmp_path: Path) -> None:
    runner = _runner(tmp_path, limits=SandboxLimits(open_files=64, cpu_seconds=7))
    ran = runner.one(make_job("ulimit -n", "ulimit -t"))
    assert ran.out == ["64", "7"]


def test_python_paths_never_hold_a_hidden_folder(tmp_path: Path) -> None:
    chosen = python_paths(hidden=(Path.home(),))
    assert chosen and all(p != Path("/") for p in chosen)
    assert all(not (p == Path.home() or p in Path.home().parents) for p in chosen)
    # a folder of sys.path that holds the home would show it: left out
    assert all(not (tmp_path == p or p in tmp_path.parents) for p in python_paths(hidden=(tmp_path,)))


def test_probe_says_why_when_bwrap_does_not_work(tmp_path: Path) -> None:
    broken = tmp_path / "bwrap"
    broken.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    broken.chmod(0o755)
    found = probe(str(broken))
    assert not found.ok
    assert "No permissions to create new namespace" in found.reason and "user namespaces" in found.reason
    assert PROBE.ok and subprocess.run([str(PROBE.bwrap), "--version"], capture_output=True).returncode == 0


def test_limits_and_cgroup_are_set_before_the_jobs_first_instruction(tmp_path: Path) -> None:
    # bwrap is spawned directly; the limits and the cgroup are set on the sandbox's first process
    # while it waits for its script: the job's very first command sees them
    runner = _runner(tmp_path, limits=SandboxLimits(open_files=48, cpu_seconds=9, processes=300))
    ran = runner.one(make_job("ulimit -n; ulimit -t; ulimit -u; grep -c pids: /proc/self/cgroup"))
    assert ran.outcome.status == "success", ran.lines
    assert ran.out[:3] == ["48", "9", "300"]
    launcher = [kind for kind, text in ran.lines if "prlimit" in text or "/bin/sh -c" in text]
    assert launcher == []


@pytest.mark.skipif(not PROBE.pids_cgroup, reason="no pids cgroup can be made here")
def test_jobs_run_in_a_pids_cgroup_of_the_pool(tmp_path: Path) -> None:
    job = make_job("grep pids: /proc/self/cgroup")

    async def body(s: Session) -> list[str]:
        seen = []
        for _ in range(3):
            ran = await s.run(job)
            assert ran.outcome.status == "success", ran.lines
            seen.append(ran.out[0])
        return seen

    seen = _runner(tmp_path).session(body)
    assert all("/job-" in line for line in seen), seen


def test_a_launch_that_fails_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    def refuse(*_args: object) -> None:
        raise PermissionError("prlimit refused (the test)")

    monkeypatch.setattr(resource, "prlimit", refuse)
    runner = _runner(tmp_path)
    ran = runner.one(make_job("touch ran.txt", "echo ran"))
    assert ran.outcome.status == "failed" and ran.outcome.failure_reason == "runner_system_failure"
    assert "prlimit refused" in (ran.outcome.error or "")
    assert "ran" not in ran.out
    assert not list((tmp_path / "home").glob("builds/*/*/ran.txt"))


def test_a_sandbox_whose_server_died_before_the_handshake_runs_nothing(tmp_path: Path) -> None:
    # aicd killed between the spawn and the script: the pipe ends without a script, so the
    # sandbox runs an empty one (nothing of the job runs without its limits)
    from aicd.executors.sandbox import _Gate

    workspace = tmp_path / "ws"
    workspace.mkdir()
    gate = _Gate(b"touch ran.txt\n", SandboxLimits(), None)
    args = bwrap_args(
        network=False, python=python_paths((tmp_path,)), binds=[(workspace, workspace, True)], chdir=workspace
    )
    assert PROBE.bwrap is not None and args[-4:-2] == ["--remount-ro", "/"]
    argv = [
        PROBE.bwrap,
        *args[:-4],
        "--info-fd",
        str(gate.info_w),
        "--file",
        str(gate.script_r),
        "/aicd/job.sh",
    ]
    argv += ["--remount-ro", "/", "--chdir", str(workspace), "--", "/bin/bash", "/aicd/job.sh"]
    proc = subprocess.Popen(argv, pass_fds=(gate.info_w, gate.script_r), stdin=subprocess.DEVNULL)
    os.close(gate.info_w)
    os.close(gate.script_r)
    gate._open = [gate.info_r, gate.script_w]
    with os.fdopen(gate.info_r, "rb") as info:  # the sandbox's process id was told...
        assert b"child-pid" in info.read()
    gate._open.remove(gate.info_r)
    gate.close()  # ...then the server died: its end of the script's pipe closes, nothing written
    assert proc.wait(timeout=600) == 0
    assert not (workspace / "ran.txt").exists()


def test_a_server_without_network_lets_a_job_turn_it_on(tmp_path: Path, listener: int) -> None:
    runner = _runner(tmp_path, network=False)
    port = Variable("PORT", str(listener))
    assert runner.one(make_job(CONNECT), variables=[port]).out[-1] == "no network"
    on = runner.one(make_job(CONNECT), variables=[port, Variable("AICD_JOB_NETWORK", "on")])
    assert on.out == ["connected"]


def test_server_settings_of_the_sandbox(tmp_path: Path) -> None:
    from aicd.errors import ConfigError
    from aicd.server.settings import ServerSettings

    home = {"AICD_HOME": str(tmp_path)}
    default = ServerSettings.load(home)
    assert not default.unsafe_no_sandbox and default.job_network
    assert default.job_limits == SandboxLimits()
    custom = ServerSettings.load(
        {
            **home,
            "AICD_UNSAFE_NO_SANDBOX": "1",
            "AICD_JOB_NETWORK": "none",
            "AICD_JOB_MAX_PROCESSES": "0",
            "AICD_JOB_MAX_MEMORY_MB": "512",
            "AICD_JOB_MAX_LOG_MB": "1",
        }
    )
    assert custom.unsafe_no_sandbox and not custom.job_network
    assert custom.job_limits.processes is None and custom.job_limits.memory_bytes == 512 * 1024**2
    assert custom.job_limits.log_bytes == 1024**2
    with pytest.raises(ConfigError, match=r"AICD_JOB_MAX_MEMORY_MB='lots': expected a whole number"):
        ServerSettings.load({**home, "AICD_JOB_MAX_MEMORY_MB": "lots"})
    assert not ServerSettings.load({**home, "AICD_JOB_NETWORK": "off"}).job_network
    with pytest.raises(ConfigError, match=r"AICD_JOB_NETWORK='maybe'.*'on' or 'none'"):
        ServerSettings.load({**home, "AICD_JOB_NETWORK": "maybe"})


def test_hidden_paths_are_empty_inside(tmp_path: Path) -> None:
    shown = tmp_path / "shown"
    (shown / "keys").mkdir(parents=True)
    (shown / "keys" / "id").write_text("key material\n")
    (shown / "secret.env").write_text("TOKEN=abc\n")
    (shown / "ok.txt").write_text("fine\n")
    args = bwrap_args(
        network=False,
        python=[shown],  # bound read-only like the Python installation
        binds=[],
        chdir=Path("/"),
        hide=[shown / "keys", shown / "secret.env"],
    )
    script = f'cat {shown}/ok.txt; cat {shown}/secret.env; ls -A {shown}/keys; echo "[end]"'
    assert PROBE.bwrap is not None
    done = subprocess.run([PROBE.bwrap, *args, "--", "/bin/sh", "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "fine\n[end]\n"


def test_a_home_inside_a_system_folder_is_hidden(tmp_path: Path) -> None:
    from aicd.server.settings import ServerSettings

    in_etc = SandboxExecutor(tmp_path / "p", Path("/etc/aicd-home-that-does-not-exist"))
    elsewhere = SandboxExecutor(tmp_path / "p", tmp_path / "home")
    try:
        assert in_etc._hide == [Path("/etc/aicd-home-that-does-not-exist")]
        assert elsewhere._hide == []
    finally:
        asyncio.run(in_etc.close())
        asyncio.run(elsewhere.close())
    settings = ServerSettings.load({"AICD_HOME": str(tmp_path), "AICD_JOB_HIDE": "/etc/aicd.env:/opt/keys"})
    assert settings.job_hidden_paths == (Path("/etc/aicd.env"), Path("/opt/keys"))


@pytest.mark.skipif(not PROBE.pids_cgroup, reason="no pids cgroup can be made here")
def test_the_cgroup_warm_up_leaves_the_server_where_it_is() -> None:
    from aicd.executors.sandbox import PidsCgroups

    before = Path("/proc/self/cgroup").read_text()
    cgroups = PidsCgroups.create(64)
    assert cgroups is not None
    try:
        cgroups.warm_up()
        cgroups.warm_up()  # while one runs, no second one
        warming = cgroups._warming
        assert warming is not None
        warming.join(timeout=60)
        assert not warming.is_alive()
    finally:
        cgroups.close()
    assert Path("/proc/self/cgroup").read_text() == before


@pytest.mark.skipif(not PROBE.pids_cgroup, reason="no pids cgroup can be made here")
def test_the_cgroup_pool_reuses_a_cgroup_once_its_processes_are_gone() -> None:
    import time

    from aicd.executors.sandbox import PidsCgroups

    cgroups = PidsCgroups.create(64)
    assert cgroups is not None
    try:
        first = cgroups.new_job()
        cgroups.release(first)
        assert cgroups.new_job() == first  # empty: reused, no mkdir
        sleeper = subprocess.Popen(["sleep", "600"])
        try:
            (first / "cgroup.procs").write_text(str(sleeper.pid))
            cgroups.release(first)
            second = cgroups.new_job()
            assert second != first  # a process still in it: not handed out
            cgroups.release(second)
        finally:
            sleeper.kill()
            sleeper.wait()
        deadline = time.monotonic() + 60
        while (first / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {cgroups.new_job(), cgroups.new_job()} == {first, second}
        assert (first / "pids.max").read_text().strip() == "64"
    finally:
        cgroups.close()
