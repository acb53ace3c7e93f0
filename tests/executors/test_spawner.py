"""aicd.executors.spawner: the helper process that starts job shells side by side.

Real processes throughout: the helper is forked, shells are spawned by it, `aicd run` runs as
a subprocess and is killed with real signals.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aicd.core import aio
from aicd.executors import spawn
from aicd.executors.spawner import Spawner
from aicd_testing import clean_env, processes_with
from executors.test_spawn import PROBE, _Collect

BASH = shutil.which("bash") or "/bin/bash"


def _helper() -> Spawner:
    if not spawn.available([BASH]):
        pytest.skip("posix_spawn path not available here")
    helper = Spawner.create()
    assert helper is not None, "the helper could not be made on Linux with pidfds"
    return helper


def test_a_shell_started_by_the_helper_gets_what_subprocess_gives(tmp_path: Path) -> None:
    script = tmp_path / "probe.sh"
    script.write_text(PROBE)

    async def main() -> tuple[_Collect, spawn.SpawnedShell, int]:
        helper = _helper()
        try:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AICD_SPAWN_TEST": "x y"}
            out = _Collect()
            argv = [BASH, "--noprofile", "--norc", str(script)]
            shell = await spawn.start(argv, str(tmp_path), env, out, helper)
            await out.exited
            await out.eof
            shell.close()
            return out, shell, helper.pid
        finally:
            helper.close()

    out, shell, helper_pid = aio.run(main())
    text = out.data.decode()
    assert shell.get_returncode() == 7
    assert "stdin=1 line=[]" in text
    assert f"pwd={tmp_path}" in text
    assert "var=x y" in text
    pid = shell.get_pid()
    assert f"sid={pid} pgid={pid} pid={pid}" in text
    fds = next(line for line in text.splitlines() if line.strip() and line.strip()[0].isdigit())
    assert set(fds.split()) <= {"0", "1", "2", "255"}  # none of aicd's or the helper's
    ignored = int(next(ln for ln in text.splitlines() if ln.startswith("SigIgn")).split()[1], 16)
    blocked = int(next(ln for ln in text.splitlines() if ln.startswith("SigBlk")).split()[1], 16)
    for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        assert not ignored & (1 << (sig - 1)), sig  # the helper blocks these; its shells do not
    assert blocked & ~(1 << (signal.SIGCHLD - 1)) == 0
    assert "to-stderr" in text
    assert not Path(f"/proc/{helper_pid}").exists()  # closed and reaped


def test_many_shells_at_once_each_report_their_own_exit_code(tmp_path: Path) -> None:
    async def one(helper: Spawner, code: int) -> tuple[int, bytes]:
        out = _Collect()
        argv = [BASH, "--noprofile", "--norc", "-c", f"echo n={code}; exit {code}"]
        shell = await spawn.start(argv, str(tmp_path), {"PATH": "/usr/bin:/bin"}, out, helper)
        await out.exited
        await out.eof
        shell.close()
        return shell.get_returncode() or 0, out.data

    async def main() -> list[tuple[int, bytes]]:
        helper = _helper()
        try:
            return list(await asyncio.gather(*(one(helper, i % 7) for i in range(60))))
        finally:
            helper.close()

    results = aio.run(main())
    assert [code for code, _ in results] == [i % 7 for i in range(60)]
    assert [data for _, data in results] == [f"n={i % 7}\n".encode() for i in range(60)]


def test_a_missing_program_is_the_same_oserror_through_the_helper(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-shell")

    async def main() -> tuple[OSError, OSError]:
        helper = _helper()
        try:
            with pytest.raises(OSError) as direct:
                await spawn.start([missing], str(tmp_path), {}, _Collect())
            with pytest.raises(OSError) as helped:
                await spawn.start([missing], str(tmp_path), {}, _Collect(), helper)
            return direct.value, helped.value
        finally:
            helper.close()

    direct, helped = aio.run(main())
    assert (helped.errno, str(helped)) == (direct.errno, str(direct))


def test_a_spawn_cancelled_while_the_helper_starts_it_leaves_no_shell(tmp_path: Path) -> None:
    marker = f"aicd-spawner-cancel-{os.getpid()}"

    async def main() -> None:
        helper = _helper()
        try:
            argv = [BASH, "--noprofile", "--norc", "-c", f"exec -a {marker} sleep 60"]
            task = asyncio.ensure_future(
                spawn.start(argv, str(tmp_path), dict(os.environ), _Collect(), helper)
            )
            await asyncio.sleep(0)  # the request is sent; the answer not read yet
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert helper._next == 1  # the request went out: the helper starts the shell
            await asyncio.sleep(0.5)  # the helper answers; the shell is killed
        finally:
            helper.close()

    aio.run(main())
    deadline = time.monotonic() + 30
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []


# --------------------------------------------------------------------------- through `aicd run`

PARALLEL = """
stages: [test]
{jobs}
"""


def _pipeline(root: Path, marker: str, n: int = 3) -> Path:
    jobs = "\n".join(
        f"job{i}:\n  stage: test\n  script:\n    - echo ppid=$PPID\n"
        f"    - bash -c 'exec -a {marker}-{i} sleep 60' || true\n"
        for i in range(n)
    )
    project = root / "project"
    project.mkdir()
    (project / ".gitlab-ci.yml").write_text(PARALLEL.format(jobs=jobs))
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, check=True)
    return project


def _start_run(project: Path, home: Path) -> subprocess.Popen[str]:
    env = clean_env()
    env["AICD_HOME"] = str(home)
    return subprocess.Popen(
        [sys.executable, "-m", "aicd.cli.main", "run", "--json", "--concurrency", "3"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(marker: str, count: int, proc: subprocess.Popen[str]) -> list[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = processes_with(marker)
        if len(found) >= count:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"aicd run ended early: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    raise AssertionError(f"{count} jobs did not start within 60 s: {processes_with(marker)}")


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def _session_leader(pid: int) -> int:
    """The job's shell: the leader of the session the marker process is in."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[3])


def test_aicd_killed_outright_leaves_no_shell_the_helper_started(tmp_path: Path) -> None:
    """SIGKILL of `aicd run` (no daemon): the helper sees its socket close and kills the groups
    of the shells it started. (A shell aicd started itself, when no other ran, is its child and
    is not killed by anyone: as before the helper existed; the test kills it.)"""
    marker = f"aicd-spawner-kill-{os.getpid()}"
    project = _pipeline(tmp_path, marker)
    proc = _start_run(project, tmp_path / "home")
    try:
        found = _wait_for(marker, 3, proc)
        shells = {p: _session_leader(p) for p in found}
        by_helper = [p for p, shell in shells.items() if _parent(shell) != proc.pid]
        assert by_helper, "no shell was started by the helper though three ran at once"
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{p}").exists() for p in by_helper) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(processes_with(marker)) & set(by_helper) == set()
    finally:
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


def test_a_killed_helper_fails_its_jobs_and_the_run_still_ends(tmp_path: Path) -> None:
    marker = f"aicd-spawner-gone-{os.getpid()}"
    project = _pipeline(tmp_path, marker)
    proc = _start_run(project, tmp_path / "home")
    try:
        found = _wait_for(marker, 3, proc)
        owners = {p: _parent(_session_leader(p)) for p in found}  # (read before anything is killed)
        helpers = set(owners.values()) - {proc.pid}
        assert len(helpers) == 1, owners
        os.kill(helpers.pop(), signal.SIGKILL)
        # the shells aicd started itself go on: end them, the run ends
        for pid, owner in owners.items():
            if owner == proc.pid:
                os.kill(pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
    result = json.loads(out)
    statuses = sorted(job["status"] for job in result["jobs"])
    assert "failed" in statuses, (statuses, err[-500:])
    assert proc.returncode == 1
    assert processes_with(marker) == []
