"""A helper process that starts an executor's job shells, so that the event loop never waits for them.

``posix_spawn`` returns only once the new process has called ``exec``: ~0.25-0.4 ms a shell on a
2-core machine, in which the event loop does nothing else (a fifth of what aicd spends per job on
200 independent jobs). A worker thread does not help: the loop and the thread then trade the
interpreter lock. So an executor that runs shells side by side forks this helper once (~1 ms)
and hands it each shell to start: the loop sends the command line, folder, environment and
the output pipe's write end (``SCM_RIGHTS``) over a ``SOCK_SEQPACKET`` pair and goes on; the
helper spawns the shell exactly as :func:`aicd.executors.spawn._spawn` does in-process, answers
with its pid, watches it (a pidfd) and reports its wait status once it has reaped it.

The shells are the helper's children, not aicd's: aicd signals their groups as before (same
user; each shell leads its own session and group). The helper blocks the signals a terminal or
a ``kill`` of the group sends (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP...), so Ctrl-C reaches
aicd, which cancels the jobs; a shell starts with no signal blocked. When aicd's end of the
socket closes (:meth:`Spawner.close`, or aicd died, even by SIGKILL) the helper SIGKILLs the
group of every shell still running and exits: no shell it started outlives a killed ``aicd run``.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import select
import signal
import socket
import struct
from collections.abc import Callable, Mapping, Sequence

from aicd.errors import ExecutorError
from aicd.executors import spawn

# request: token, then the lengths of argv, environment and folder (bytes), then those bytes
_REQUEST = struct.Struct("<QIII")
# answer: kind (b"P": token -> pid or -errno, b"X": pid -> wait status), two numbers
_ANSWER = struct.Struct("<cqq")
# a request larger than this (a huge environment) is spawned in-process instead
MAX_REQUEST = 192 * 1024
_BLOCKED = frozenset(
    int(s)
    for s in (
        signal.SIGINT,
        signal.SIGTERM,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGTSTP,
        signal.SIGTTIN,
        signal.SIGTTOU,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGPIPE,
        signal.SIGALRM,
    )
)


class Spawner:
    """aicd's side of one helper process (see the module's text). Used on one event loop."""

    def __init__(self, pid: int, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.pid = pid
        self.sock = sock
        self.loop = loop
        self._next = 0
        self._waiting: dict[int, tuple[asyncio.Future[int], str]] = {}  # token -> (pid, program)
        self._exits: dict[int, Callable[[int, int], object]] = {}
        self._early: dict[int, int] = {}  # pid -> return code, reported before anyone watched it
        self._unwanted: set[int] = set()  # started for a caller that was cancelled: killed
        self._gone = False
        loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    def create(cls) -> Spawner | None:
        """Fork the helper; None where it cannot work (no pidfds, no SEQPACKET sockets, fork failed)."""
        if not hasattr(os, "pidfd_open") or not spawn.in_process_ready():
            return None
        loop = asyncio.get_running_loop()
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        except OSError:
            return None
        # the signals the helper ignores are blocked across the fork (one arriving in between would
        # run aicd's handler in the helper); aicd gets its mask back at once
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            ours.close()
            theirs.close()
            return None
        if pid == 0:  # the helper: never returns
            code = 1
            try:
                ours.close()
                _serve(theirs.detach())
                code = 0
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        theirs.close()
        ours.setblocking(False)
        return cls(pid, ours, loop)

    async def spawn(self, argv: Sequence[str], cwd: str, env: Mapping[str, str], out_fd: int) -> int | None:
        """Start ``argv`` as :func:`aicd.executors.spawn._spawn` would; its pid, or None when the
        helper cannot take it (it is gone, or the request is too large): spawn it in-process then.
        The caller keeps ``out_fd`` (and closes it): the helper got its own copy. If the caller
        is cancelled while waiting, the shell (if it started) is killed."""
        if self._gone:
            return None
        args, environment, folder = spawn.encoded(argv, cwd, env)
        token = self._next
        message = _REQUEST.pack(token, len(args), len(environment), len(folder))
        message += args + environment + folder
        if len(message) > MAX_REQUEST:
            return None
        fds = array.array("i", [out_fd])
        while True:  # a datagram of a socket pair: all of it or an error, never part of it
            try:
                self.sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                break
            except BlockingIOError:  # (its buffer is full: the helper is busy)
                await asyncio.sleep(0.001)
            except OSError:
                self._lost()
                return None
        self._next += 1
        waiter: asyncio.Future[int] = self.loop.create_future()
        self._waiting[token] = (waiter, argv[0])
        try:
            return await waiter
        except asyncio.CancelledError:
            self._waiting.pop(token, None)
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._unwanted.add(waiter.result())  # it started as we were cancelled
                _kill_group(waiter.result())
            raise

    def watch(self, pid: int, callback: Callable[[int, int], object]) -> None:
        """``callback(pid, return code)`` on the loop once the shell ``pid`` exited (reaped)."""
        if pid in self._early:
            self.loop.call_soon(callback, pid, self._early.pop(pid))
        elif self._gone:  # the helper died: its end will never be reported
            _kill_group(pid)
            self.loop.call_soon(callback, pid, -int(signal.SIGKILL))
        else:
            self._exits[pid] = callback

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(_ANSWER.size)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if len(data) != _ANSWER.size:
                self._lost()
                return
            kind, a, b = _ANSWER.unpack(data)
            if kind == b"P":
                waiter, program = self._waiting.pop(a, (None, ""))
                if waiter is None or waiter.done():  # its caller was cancelled: nobody runs it
                    if b > 0:
                        self._unwanted.add(b)
                        _kill_group(b)
                elif b < 0:  # as spawn._spawn says it
                    waiter.set_exception(OSError(-b, f"{os.strerror(-b)}: {program!r}"))
                else:
                    waiter.set_result(b)
            elif kind == b"X":
                code = os.waitstatus_to_exitcode(b)
                callback = self._exits.pop(a, None)
                if a in self._unwanted:
                    self._unwanted.discard(a)
                elif callback is None:
                    self._early[a] = code
                else:
                    callback(a, code)

    def _lost(self) -> None:
        """The helper died: nothing more comes. Waiting spawns fail; shells whose end it will never
        report are killed and reported as killed."""
        if self._gone:
            return
        self._gone = True
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        for waiter, _ in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(ExecutorError("the process that starts job shells died"))
        self._waiting.clear()
        exits, self._exits = self._exits, {}
        for pid, callback in exits.items():
            _kill_group(pid)
            callback(pid, -int(signal.SIGKILL))

    def close(self) -> None:
        """Let the helper go (it kills the groups of shells still running) and reap it."""
        if not self._gone:
            self._gone = True
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.sock.fileno())
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)  # it exits as soon as it reads the end of the socket


def _kill_group(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- the helper process


def _serve(fd: int) -> None:
    """The helper's loop: spawn what is asked, report exits; leave when aicd's end closes."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)  # (aicd's loop's: a signal here must not wake it)
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        if null != target:
            os.dup2(null, target)
    os.closerange(3, fd)
    os.closerange(fd + 1, max(fd + 1, os.sysconf("SC_OPEN_MAX")))  # (aicd's database, logs, pipes)
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    children: dict[int, int] = {}  # pidfd -> pid
    fd_size = array.array("i").itemsize
    while True:
        for ready, _ in poller.poll():
            if ready != fd:
                pid = children.pop(ready)
                poller.unregister(ready)
                os.close(ready)
                _, status = os.waitpid(pid, 0)
                if not _answer(sock, _ANSWER.pack(b"X", pid, status)):
                    _kill_all(children)
                    return
                continue
            try:
                data, ancillary, _, _ = sock.recvmsg(MAX_REQUEST, socket.CMSG_SPACE(4 * fd_size))
            except OSError:
                data, ancillary = b"", []
            received = [
                n
                for level, kind, raw in ancillary
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
                for n in array.array("i", raw[: len(raw) - len(raw) % fd_size])
            ]
            if not data:  # aicd is gone (or done): no shell of its may go on
                _kill_all(children)
                return
            answer = _spawn_one(data, received)
            for n in received:
                os.close(n)
            if answer[0] > 0:
                pidfd = os.pidfd_open(answer[0])
                children[pidfd] = answer[0]
                poller.register(pidfd, select.POLLIN)
            if not _answer(sock, _ANSWER.pack(b"P", answer[1], answer[0])):
                _kill_all(children)
                return


def _answer(sock: socket.socket, message: bytes) -> bool:
    try:
        sock.send(message)
    except OSError:  # aicd is gone
        return False
    return True


def _kill_all(children: dict[int, int]) -> None:
    for pid in children.values():
        _kill_group(pid)


def _spawn_one(data: bytes, fds: list[int]) -> tuple[int, int]:
    """(pid or -errno, token) for one request."""
    token = -1
    try:
        token, n_args, n_env, n_dir = _REQUEST.unpack_from(data)
        body = data[_REQUEST.size :]
        if len(fds) != 1 or len(body) != n_args + n_env + n_dir:
            return -22, token  # EINVAL: not one of ours
        args = body[:n_args]
        environment = body[n_args : n_args + n_env]
        folder = body[n_args + n_env :]
        return spawn.spawn_bytes(args, environment, folder, fds[0]), token
    except OSError as exc:
        return -(exc.errno or 5), token
    except (ValueError, struct.error):
        return -22, token
