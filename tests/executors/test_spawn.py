"""aicd.executors.spawn: a job's shell started by posix_spawn gets what subprocess gives it."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from aicd.core import aio
from aicd.executors import spawn
from aicd.executors.script import LineReader, ShellProcess

BASH = shutil.which("bash") or "/bin/bash"


class _Collect:
    def __init__(self) -> None:
        self.data = b""
        self.eof: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.data += data

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.eof.set_result(None)

    def process_exited(self) -> None:
        self.exited.set_result(None)


PROBE = r"""
read -t 1 line; echo "stdin=$? line=[$line]"
echo "pwd=$PWD"
echo "var=$AICD_SPAWN_TEST"
echo "sid=$(ps -o sid= -p $$ | tr -d ' ') pgid=$(ps -o pgid= -p $$ | tr -d ' ') pid=$$"
ls /proc/$$/fd > fds.txt  # not in a pipeline: bash holds a pipe's descriptors while it forks one
sort -n fds.txt | tr '\n' ' '; echo
grep -E '^(SigIgn|SigBlk)' /proc/$$/status
echo to-stderr >&2
exit 7
"""


def test_spawned_shell_gets_what_subprocess_gives(tmp_path: Path) -> None:
    script = tmp_path / "probe.sh"
    script.write_text(PROBE)
    leaked_r, leaked_w = os.pipe()  # inheritable descriptors of aicd's must not reach the job
    os.set_inheritable(leaked_r, True)
    os.set_inheritable(leaked_w, True)

    async def main() -> tuple[_Collect, spawn.SpawnedShell]:
        if not spawn.available([BASH]):
            pytest.skip("posix_spawn path not available here")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AICD_SPAWN_TEST": "x y"}
        out = _Collect()
        shell = await spawn.start([BASH, "--noprofile", "--norc", str(script)], str(tmp_path), env, out)
        await out.exited
        await out.eof
        shell.close()
        return out, shell

    try:
        out, shell = aio.run(main())
    finally:
        os.close(leaked_r)
        os.close(leaked_w)
    text = out.data.decode()
    assert shell.get_returncode() == 7
    assert "stdin=1 line=[]" in text  # /dev/null: end of file at once
    assert f"pwd={tmp_path}" in text
    assert "var=x y" in text
    pid = shell.get_pid()
    assert f"sid={pid} pgid={pid} pid={pid}" in text  # its own session and group
    fds = next(line for line in text.splitlines() if line.strip() and line.strip()[0].isdigit())
    assert set(fds.split()) <= {"0", "1", "2", "255"}  # 255: bash's own script descriptor
    ignored = next(line for line in text.splitlines() if line.startswith("SigIgn"))
    blocked = next(line for line in text.splitlines() if line.startswith("SigBlk"))
    mask = int(ignored.split()[1], 16)
    assert not mask & (1 << (signal.SIGPIPE - 1))  # SIGPIPE back to its default, as subprocess does
    assert int(blocked.split()[1], 16) & ~(1 << (signal.SIGCHLD - 1)) == 0  # bash blocks SIGCHLD itself
    assert "to-stderr" in text  # stdout and stderr on one pipe


def test_a_missing_program_is_an_oserror(tmp_path: Path) -> None:
    async def main() -> None:
        if not spawn.available([BASH]):
            pytest.skip("posix_spawn path not available here")
        with pytest.raises(OSError):
            await spawn.start([str(tmp_path / "no-such-shell")], str(tmp_path), {}, _Collect())

    aio.run(main())


def test_overlapping_jobs_take_the_posix_spawn_path(tmp_path: Path) -> None:
    """While one shell runs, the next is started with posix_spawn; both run to the end."""
    script = tmp_path / "s.sh"
    script.write_text("echo hello\nsleep 0.2\n")
    seen: list[str] = []
    before = ShellProcess.running

    async def main() -> list[int]:
        if not spawn.available([BASH]):
            pytest.skip("posix_spawn path not available here")
        procs = []
        for _ in range(2):
            reader = LineReader(lambda kind, text: seen.append(text), "tok", [])
            procs.append(await ShellProcess.start(bash_argv(script), tmp_path, dict(os.environ), reader))
        assert isinstance(procs[1].transport, spawn.SpawnedShell)
        return list(await asyncio.gather(*(p.run() for p in procs)))

    assert aio.run(main()) == [0, 0]
    assert seen.count("hello") == 2
    assert ShellProcess.running == before


def bash_argv(script: Path) -> list[str]:
    return [BASH, "--noprofile", "--norc", str(script)]


@pytest.mark.parametrize(
    "env",
    [{}, {"A": "1"}, {"A": "x\udcff", "B": "", "C": "é"}, {"A": "", "C": "d=e"}],
)
def test_environment_bytes_are_what_fsencode_gives(env: dict[str, str]) -> None:
    expected = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
    assert spawn.environment_bytes(env) == b"\0".join(expected)
    assert spawn.environment_bytes(dict(os.environ)) == b"\0".join(
        os.fsencode(k) + b"=" + os.fsencode(v) for k, v in os.environ.items()
    )
    # as C reads it: one pointer per entry, to exactly its bytes, then NULL
    lib = spawn._libc()
    assert lib is not None
    ct = lib.ctypes
    _text, pointers = spawn._string_array(lib, spawn.environment_bytes(env))
    read = (ct.c_char_p * len(pointers)).from_address(pointers.buffer_info()[0])
    assert list(read) == [*expected, None]


@pytest.mark.parametrize("env", [{"A": "x\0y"}, {"A\0B": "x"}, {"A=B": "x"}])
def test_an_environment_c_would_misread_is_refused_as_subprocess_refuses_it(
    env: dict[str, str],
) -> None:
    with pytest.raises(ValueError):
        spawn.environment_bytes(env)
    with pytest.raises(ValueError):
        subprocess.run(["/bin/true"], env=env, check=False)
