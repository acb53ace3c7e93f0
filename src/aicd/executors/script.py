"""The job's bash script and the process that runs it.

The script is what GitLab's runner gives bash: ``set -eo pipefail``, then for
each command a line that announces it, then the command as written. The job
stops at the first command that fails, with that command's exit code.

The announcement is a marker line (a per-job random token and the command's
index) that :class:`LineReader` turns back into the command, so the text shown
is exactly the YAML's, never re-quoted by the shell. A multi-line command is
shown as its first line followed by ``# collapsed multi-line command``, as
GitLab shows it.

:class:`ShellProcess` runs ``bash --noprofile --norc <script>`` (possibly wrapped
by a sandbox's command line) in its own
session (its own process group) with stdout and stderr on one pipe, so the
two stay in the order they were written, and can kill the whole group.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, cast

from aicd.executors.base import OutputKind

if TYPE_CHECKING:
    from aicd.executors.spawner import Spawner

KILL_GRACE_S = 2.0
MAX_LINE_BYTES = 256 * 1024  # longer lines are cut into pieces of this size
# GitLab's collapsible section markers keep their `\r` (the web UI folds them; a terminal shows the header)
_SECTION_MARK = re.compile(r"^(?:\x1b\[0K)?section_(?:start|end):\d+:[A-Za-z0-9_.-]+(?:\[[^\]\r]*\])?\r")


def terminal_view(text: str) -> str:
    """What a terminal shows of an output line: the part after its last carriage return.

    The reader keeps GitLab's section markers whole (``section_start:...\\r`` then the header) for the
    log and the web UI; a terminal shows only the header, as GitLab's own job log does.
    """
    if "\r" not in text:
        return text
    pieces = [p for p in text.split("\r") if p]
    return pieces[-1] if pieces else ""


def display_command(command: str) -> str | None:
    """How a command is announced; None for an empty one (not announced)."""
    text = command.strip()
    if not text:
        return None
    first, nl, _ = text.partition("\n")
    return f"{first} # collapsed multi-line command" if nl else first


def new_token() -> str:
    return "\x1b[0Kaicd-" + os.urandom(8).hex() + ":"


def render_script(commands: Sequence[str], token: str, *, shown: Sequence[str | None] | None = None) -> str:
    """The bash text that runs ``commands`` with a marker line before each."""
    lines = ["set -eo pipefail", "set +o noclobber"]
    escaped = token.replace("\x1b", "\\033")
    for i, cmd in enumerate(commands):
        label = shown[i] if shown is not None else display_command(cmd)
        if label is not None:
            lines.append(f"builtin printf '{escaped}%s\\n' {i}")
        lines.append(cmd.rstrip("\n"))
    lines.append("")
    return "\n".join(lines)


Emit = Callable[[OutputKind, str], None]


class LineReader:
    """Turns the bytes of the merged stdout/stderr into lines.

    Handles partial lines (kept until the newline or the end), ``\\r\\n``, a
    lone ``\\r`` (progress bars: the last non-empty piece is kept, as a
    terminal would show), invalid UTF-8 (replaced) and very long lines (cut).
    Marker lines become ``("cmd", text)``; others ``("out", line)``.
    """

    def __init__(self, emit: Emit, token: str, labels: Sequence[str | None]) -> None:
        self._emit = emit
        self._token = token
        self._labels = labels
        self._buf = bytearray()
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        # Called instead of `emit` for a piece of a line cut at MAX_LINE_BYTES (more follows), so
        # that a masker can see across the cut; None: pieces are emitted as lines.
        self.emit_piece: Emit | None = None

    def feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line_start = start
            while nl - line_start > MAX_LINE_BYTES:
                self._line(bytes(buf[line_start : line_start + MAX_LINE_BYTES]), final=False)
                line_start += MAX_LINE_BYTES
            self._line(bytes(buf[line_start:nl]))
            start = nl + 1
        if start:
            del buf[:start]
        while len(buf) > MAX_LINE_BYTES:
            piece = bytes(buf[:MAX_LINE_BYTES])
            del buf[:MAX_LINE_BYTES]
            self._line(piece, final=False)

    def close(self) -> None:
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            self._line(data)

    def _line(self, data: bytes, final: bool = True) -> None:
        text = self._decoder.decode(data, final=final)
        if "\r" in text and not _SECTION_MARK.match(text):
            text = terminal_view(text)
        token = self._token
        at = text.find(token)
        if at < 0:
            if not final and self.emit_piece is not None:
                self.emit_piece("out", text)
            else:
                self._emit("out", text)
            return
        if at > 0:  # the previous command's output had no final newline
            self._emit("out", text[:at])
        rest = text[at + len(token) :]
        try:
            label = self._labels[int(rest)]
        except (ValueError, IndexError):
            self._emit("out", text[at:])
            return
        if label is not None:
            self._emit("cmd", label)


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Something answered; it may only be a zombie nobody reaped (in a container
    # whose init does not reap). Look closer where /proc tells.
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _Protocol(asyncio.SubprocessProtocol):
    """Feeds output straight to the reader; tells when the shell exited and the pipe closed.

    (``asyncio.subprocess.Process.wait`` would not do: on Python 3.11 it returns
    only once every pipe is closed, which a background child can delay forever.)
    """

    def __init__(self, feed: Callable[[bytes], None], loop: asyncio.AbstractEventLoop) -> None:
        self.feed = feed
        self.eof: asyncio.Future[None] = loop.create_future()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.error: BaseException | None = None
        self.pid: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.SubprocessTransport subclasses: same methods, no isinstance
        self.pid = cast(asyncio.SubprocessTransport, transport).get_pid()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            self.feed(data)
        except Exception as exc:  # an on_output callback failed: stop the job, report from run()
            self.error = exc
            if self.pid is not None:
                _signal_group(self.pid, signal.SIGKILL)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if not self.eof.done():
            self.eof.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when its parent dies (Linux
    ``prctl(PR_SET_PDEATHSIG)``), so a killed server leaves no job shell running;
    None elsewhere. Resolved here, in the parent: the child only calls libc."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)

    return preexec


def bash_command(bash: str, script: Path) -> list[str]:
    """How every job script is run: ``bash --noprofile --norc <script>``."""
    return [bash, "--noprofile", "--norc", str(script)]


_SPAWN: list[ModuleType] = []


def _spawn() -> ModuleType:
    """aicd.executors.spawn, imported once a second shell runs at once: a pipeline of one job at
    a time never pays for importing ``ctypes`` (~3.5 ms); once imported, every shell uses it."""
    if not _SPAWN:
        from aicd.executors import spawn

        _SPAWN.append(spawn)
    return _SPAWN[0]


class ShellProcess:
    """One ``bash`` run of a script file, streamed line by line."""

    # shells started and not yet done, in this process: from the first time two run (or start) at
    # once, every shell is started with posix_spawn (aicd.executors.spawn); before, with
    # loop.subprocess_exec. From the first time a shell starts while others run or start, the
    # executor's helper process (aicd.executors.spawner), if it gives one, spawns its shells.
    running = 0
    starting = 0  # in ShellProcess.start

    def __init__(
        self, transport: asyncio.SubprocessTransport, protocol: _Protocol, reader: LineReader
    ) -> None:
        self.transport = transport
        self.protocol = protocol
        self.pgid = transport.get_pid()  # start_new_session: the shell leads its own group
        self._reader = reader
        self._kill_task: asyncio.Task[None] | None = None
        self._counted = True
        ShellProcess.running += 1

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        reader: LineReader,
        preexec: Callable[[], None] | None = None,
        pass_fds: Sequence[int] = (),
        spawner: Callable[[bool], Spawner | None] | None = None,
    ) -> ShellProcess:
        """Start ``argv`` (:func:`bash_command`, or a sandbox's command line wrapping it);
        ``pass_fds``: descriptors the process inherits (a sandbox's launch handshake);
        ``spawner(make)``: the helper process that starts shells side by side
        (:mod:`aicd.executors.spawner`), if there is one, made if ``make`` (others run or start);
        once made, it starts every shell of its executor."""
        loop = asyncio.get_running_loop()
        others = ShellProcess.running + ShellProcess.starting  # shells running or starting besides this one
        ShellProcess.starting += 1
        try:
            if (others > 0 or _SPAWN) and preexec is None and not pass_fds and _spawn().available(argv):
                # posix_spawn (see aicd.executors.spawn), by the helper process while others run
                spawn = _spawn()
                protocol = _Protocol(reader.feed, loop)
                helper = spawner(others > 0) if spawner is not None else None
                shell = await spawn.start(argv, str(cwd), env, protocol, helper)
                protocol.pid = shell.pid
                return cls(cast(asyncio.SubprocessTransport, shell), protocol, reader)
            transport, protocol = await loop.subprocess_exec(
                lambda: _Protocol(reader.feed, loop),
                *argv,
                cwd=str(cwd),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,
                pass_fds=tuple(pass_fds),
            )
        finally:
            ShellProcess.starting -= 1
        return cls(transport, protocol, reader)

    @property
    def returncode(self) -> int | None:
        return self.transport.get_returncode()

    async def run(self, timeout: float | None = None) -> int:
        """Stream output until the shell and its children are done; return the exit code.

        When the shell exits, anything it left running in its group is
        terminated (TERM, then KILL after a grace period): no job process
        outlives its job. ``timeout``: kill the group after so many seconds.
        """
        protocol = self.protocol
        try:
            if timeout is None:
                await protocol.exited
            else:
                try:
                    await asyncio.wait_for(asyncio.shield(protocol.exited), timeout)
                except TimeoutError:
                    await self.kill()
                    await protocol.exited
            if group_alive(self.pgid):
                await self.kill()
            with contextlib.suppress(TimeoutError):
                # a process outside the group (it called setsid) may hold the pipe open
                await asyncio.wait_for(asyncio.shield(protocol.eof), KILL_GRACE_S + 1)
        finally:
            self.transport.close()
            if self._counted:
                self._counted = False
                ShellProcess.running -= 1
        if protocol.error is not None:
            raise protocol.error
        self._reader.close()
        code = self.returncode
        return code if code is not None else -1

    async def kill(self) -> None:
        """TERM the whole group; KILL what is left after the grace period. Idempotent."""
        if self._kill_task is None:
            self._kill_task = asyncio.ensure_future(self._kill())
        await asyncio.shield(self._kill_task)

    async def _kill(self) -> None:
        pgid = self.pgid
        _signal_group(pgid, signal.SIGTERM)
        _signal_group(pgid, signal.SIGCONT)  # stopped processes must see the TERM
        deadline = time.monotonic() + KILL_GRACE_S
        while time.monotonic() < deadline:
            if self.returncode is not None and not group_alive(pgid):
                return
            await asyncio.sleep(0.02)
        _signal_group(pgid, signal.SIGKILL)
