"""Starting a job's shell with glibc's ``posix_spawn`` (Linux, glibc 2.34+), on the event loop.

``loop.subprocess_exec`` builds asyncio's whole subprocess transport for every job (a transport,
a pipe protocol per stream, waiters, a connection step) and, on Python 3.11, ``subprocess``
holds the interpreter lock while ``vfork`` waits for the new program's ``exec``. Here
``posix_spawn`` is called through ``ctypes`` and the shell's one output pipe is read by a plain
read-pipe transport. It runs on the event loop's own thread: handing the call to a worker thread
(as this module did first) cost more than it saved, because the loop and the thread then trade
the interpreter lock (200 independent jobs, 2 cores: 700 ms with a thread per spawn against 607
ms inline, medians of 8 alternating runs). The child gets what ``subprocess.Popen`` gives it:
``stdin`` on ``/dev/null``, ``stdout`` and ``stderr`` on one pipe, its own session, the working
folder, SIGPIPE and SIGXFSZ back to their defaults, an empty signal mask, and no descriptor of
aicd's but those three (``closefrom``).

:func:`available` says whether this works here (Linux, glibc 2.34+, asyncio's pidfd child
watcher); everything else (a ``preexec_fn``, descriptors to pass, another platform) takes
``loop.subprocess_exec``. :class:`SpawnedShell` is the small part of an asyncio subprocess
transport that :class:`aicd.executors.script.ShellProcess` uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import warnings
from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aicd.executors.spawner import Spawner

_SETSIGDEF = 0x04
_SETSIGMASK = 0x08
_SETSID = 0x80
# opaque glibc structures, given more room than they need (80, 336 and 128 bytes on x86-64)
_ACTIONS_SIZE = 512
_ATTR_SIZE = 1024
_SIGSET_SIZE = 256


class ShellProtocol(Protocol):
    def pipe_data_received(self, fd: int, data: bytes) -> None: ...
    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None: ...
    def process_exited(self) -> None: ...


class _Libc:
    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        self.spawn = libc.posix_spawn
        self.actions_init = libc.posix_spawn_file_actions_init
        self.actions_destroy = libc.posix_spawn_file_actions_destroy
        self.adddup2 = libc.posix_spawn_file_actions_adddup2
        self.addopen = libc.posix_spawn_file_actions_addopen
        self.addchdir = libc.posix_spawn_file_actions_addchdir_np
        self.addclosefrom = libc.posix_spawn_file_actions_addclosefrom_np
        self.attr_init = libc.posix_spawnattr_init
        self.attr_destroy = libc.posix_spawnattr_destroy
        self.setflags = libc.posix_spawnattr_setflags
        self.setsigmask = libc.posix_spawnattr_setsigmask
        self.setsigdefault = libc.posix_spawnattr_setsigdefault
        self.sigemptyset = libc.sigemptyset
        self.sigaddset = libc.sigaddset
        self.setflags.argtypes = [ctypes.c_void_p, ctypes.c_short]
        self.spawn.argtypes = [ctypes.c_void_p] * 6
        self.pointer_code = "Q" if ctypes.sizeof(ctypes.c_void_p) == 8 else "I"
        self._attributes: Any = None

    def attributes(self) -> Any:
        """The spawn attributes, the same for every job (made once, kept for the process):
        its own session, an empty signal mask, SIGPIPE and SIGXFSZ back to their defaults."""
        if self._attributes is None:
            ct = self.ctypes
            attr = ct.create_string_buffer(_ATTR_SIZE)
            mask = ct.create_string_buffer(_SIGSET_SIZE)
            default = ct.create_string_buffer(_SIGSET_SIZE)
            if self.attr_init(attr) != 0:
                raise OSError(ct.get_errno(), "posix_spawnattr_init")
            steps = (
                self.sigemptyset(mask),
                self.sigemptyset(default),
                self.sigaddset(default, int(signal.SIGPIPE)),
                self.sigaddset(default, int(signal.SIGXFSZ)),
                self.setsigmask(attr, mask),
                self.setsigdefault(attr, default),
                self.setflags(attr, _SETSID | _SETSIGMASK | _SETSIGDEF),
            )
            if any(steps):
                raise OSError(next(s for s in steps if s), "posix_spawn attributes")
            self._attributes = attr
        return self._attributes


_LIBC: list[_Libc | None] = []


def _libc() -> _Libc | None:
    if not _LIBC:
        try:
            _LIBC.append(_Libc())
        except (OSError, AttributeError, ImportError):  # not glibc 2.34+, or no ctypes
            _LIBC.append(None)
    return _LIBC[0]


def available(argv: Sequence[str]) -> bool:
    """Whether :func:`start` can start ``argv`` here (else use ``loop.subprocess_exec``)."""
    if not sys.platform.startswith("linux") or not argv or not os.path.isabs(argv[0]):
        return False
    if os.environ.get("AICD_SPAWN", "").strip().lower() == "subprocess":
        return False  # the way back, should this path misbehave somewhere
    if not isinstance(asyncio.get_running_loop(), asyncio.SelectorEventLoop):
        return False  # uvloop, or another loop: its own subprocess machinery
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            watcher = asyncio.get_child_watcher()
            pidfd = asyncio.PidfdChildWatcher
        except (NotImplementedError, RuntimeError, AttributeError):  # (3.14 has no child watchers)
            return False
    return isinstance(watcher, pidfd) and _libc() is not None


def environment_bytes(env: Mapping[str, str]) -> bytes:
    """``NAME=value`` entries as bytes, as ``os.fsencode`` gives each, separated by NULs: encoded at
    once (a job's environment has ~150 entries); a NUL in a name or value is refused (ValueError,
    as ``subprocess``)."""
    if not env:
        return b""
    if any("=" in k for k in env):  # as subprocess: `A=B` would be another variable in C
        raise ValueError("illegal environment variable name in a job's environment")
    joined = "\0".join([f"{k}={v}" for k, v in env.items()])
    if joined.count("\0") == len(env) - 1:
        return joined.encode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())
    # a NUL would cut an entry short in C: refused as ``subprocess`` refuses it, never truncated
    raise ValueError("embedded null byte in a job's environment")


def _string_array(lib: _Libc, blob: bytes) -> tuple[Any, array[int]]:
    """The NUL-separated strings of ``blob`` (none if empty) as a C ``char *[]`` ending in NULL:
    one buffer holding the text and one of pointers into it, both to be kept until the spawn.
    (An array of ``c_char_p`` made from each string costs ~0.5 us per string: ~40 us a job.)"""
    ct = lib.ctypes
    if not blob:
        return None, array(lib.pointer_code, [0])
    text = ct.create_string_buffer(blob + b"\0", len(blob) + 1)
    starts = itertools.accumulate([len(s) + 1 for s in blob.split(b"\0")], initial=ct.addressof(text))
    pointers = array(lib.pointer_code, starts)
    pointers[-1] = 0  # past the last string: the NULL that ends the array
    return text, pointers


def encoded(argv: Sequence[str], cwd: str, env: Mapping[str, str]) -> tuple[bytes, bytes, bytes]:
    """What :func:`spawn_bytes` takes: ``argv`` and ``env`` NUL-separated, ``cwd``, as bytes."""
    return b"\0".join([os.fsencode(a) for a in argv]), environment_bytes(env), os.fsencode(cwd)


def _spawn(argv: Sequence[str], cwd: str, env: Mapping[str, str], out_fd: int) -> int:
    """posix_spawn ``argv``; its pid."""
    return spawn_bytes(*encoded(argv, cwd, env), out_fd)


def in_process_ready() -> bool:
    """Whether :func:`spawn_bytes` works in this process (glibc's functions found)."""
    return _libc() is not None


def spawn_bytes(args: bytes, env: bytes, cwd: bytes, out_fd: int) -> int:
    """posix_spawn the NUL-separated ``args`` (the first is the program's absolute path) with the
    NUL-separated ``NAME=value`` entries of ``env``, in folder ``cwd``; its pid."""
    lib = _libc()
    assert lib is not None
    ct = lib.ctypes
    actions = ct.create_string_buffer(_ACTIONS_SIZE)
    arg_text, c_argv = _string_array(lib, args)
    env_text, c_env = _string_array(lib, env)
    pid = ct.c_int(0)
    program = args.split(b"\0", 1)[0]
    if lib.actions_init(actions) != 0:
        raise OSError(ct.get_errno(), "posix_spawn_file_actions_init")
    try:
        steps = (
            lib.addopen(actions, 0, b"/dev/null", os.O_RDONLY, 0),
            lib.adddup2(actions, out_fd, 1),
            lib.adddup2(actions, out_fd, 2),
            lib.addclosefrom(actions, 3),
            lib.addchdir(actions, cwd),
        )
        if any(steps):
            raise OSError(next(s for s in steps if s), "posix_spawn set-up")
        code = lib.spawn(
            ct.byref(pid), program, actions, lib.attributes(), c_argv.buffer_info()[0], c_env.buffer_info()[0]
        )
    finally:
        lib.actions_destroy(actions)
    del arg_text, env_text  # (kept alive until here: the child's exec has copied them)
    if code != 0:
        raise OSError(code, f"{os.strerror(code)}: {os.fsdecode(program)!r}")
    return int(pid.value)


# as much as asyncio's pipe transport reads at once
_READ_SIZE = 256 * 1024


class SpawnedShell:
    """A started shell: its pid (the leader of its own group), its exit code once it exited.

    Its output pipe is read by a reader callback on the event loop (no transport object: one
    fewer round on the loop per shell): chunks go to ``protocol.pipe_data_received``, the end
    (end of file, a read error, or :meth:`close`) to ``protocol.pipe_connection_lost`` once."""

    def __init__(self, pid: int, protocol: ShellProtocol) -> None:
        self.pid = pid
        self.protocol = protocol
        self.returncode: int | None = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get_pid(self) -> int:
        return self.pid

    def get_returncode(self) -> int | None:
        return self.returncode

    def _exited(self, pid: int, returncode: int) -> None:
        self.returncode = returncode
        self.protocol.process_exited()

    def _read_from(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)
        self._fd, self._loop = fd, loop

    def _readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            data = os.read(fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._end(exc)
            return
        if data:
            self.protocol.pipe_data_received(1, data)
        else:
            self._end(None)

    def _release(self) -> asyncio.AbstractEventLoop | None:
        """Stop reading and close the pipe; the loop it was read on, None if it was not open."""
        fd, loop = self._fd, self._loop
        if fd is None or loop is None:
            return None
        self._fd = None
        loop.remove_reader(fd)
        os.close(fd)
        return loop

    def _end(self, exc: Exception | None) -> None:
        if self._release() is not None:
            self.protocol.pipe_connection_lost(1, exc)

    def close(self) -> None:
        """As an asyncio subprocess transport's close: the pipe closed, the shell killed if it
        still runs (its group is the caller's business)."""
        loop = self._release()
        if loop is not None:
            loop.call_soon(self.protocol.pipe_connection_lost, 1, None)
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def _above_stdio(fd: int) -> int:
    """``fd``, moved above 2 if aicd was started with a standard descriptor closed (the child's
    0, 1 and 2 are set from it)."""
    if fd > 2:
        return fd
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return moved


def _watch(pid: int, callback: Callable[[int, int], object]) -> None:
    """``callback(pid, exit code)`` on the loop when the child exits (it is reaped then)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.get_child_watcher().add_child_handler(pid, callback)


async def start(
    argv: Sequence[str], cwd: str, env: Mapping[str, str], protocol: Any, spawner: Spawner | None = None
) -> SpawnedShell:
    """Start ``argv`` (:func:`available` said yes) with its output on ``protocol``; by ``spawner``
    (:mod:`aicd.executors.spawner`) when given, else here."""
    loop = asyncio.get_running_loop()
    read_fd, write_fd = (_above_stdio(fd) for fd in os.pipe2(os.O_CLOEXEC))
    try:
        pid = None if spawner is None else await spawner.spawn(argv, cwd, env, write_fd)
        if pid is None:
            spawner = None
            pid = _spawn(argv, cwd, env, write_fd)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    shell = SpawnedShell(pid, protocol)
    try:
        if spawner is not None:
            spawner.watch(pid, shell._exited)
        else:
            _watch(pid, shell._exited)
        shell._read_from(read_fd, loop)
    except BaseException:  # (no pipe): the shell must not outlive this
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.close(read_fd)
        raise
    return shell
