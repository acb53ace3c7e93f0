"""The run daemon itself (see :mod:`aicd.cli.daemon`): `python -c ... main()` started by the client.

One per user and interpreter settings (the socket's name is a digest of
:func:`aicd.cli.daemon.client.interpreter_key`), in a private folder. It takes the socket's lock
(a second daemon for the same socket leaves), listens, imports what a run needs, then serves:

- a run request: the client's command line, working folder, umask, environment and its three
  standard streams (passed as descriptors). The daemon forks; the child becomes the run, exactly
  as the `aicd` program would (signal handlers back to Python's defaults, the client's streams
  as 0, 1 and 2 with new Python stream objects, nothing of the daemon's open) and dies with the
  daemon (PR_SET_PDEATHSIG); the client gets the child's pid and a pidfd to forward signals,
  then the child's wait status. A client that goes away gets its run sent SIGTERM, as closing
  a terminal would.
- `status` and `stop` (`aicd daemon ...`).

It refuses, and the client runs the command itself: a peer of another user (SO_PEERCRED), a
request for other interpreter settings, and any request once a module file it loaded has changed
on disk (an upgrade, an edit of an editable install): it then stops taking requests (its socket
and lock are released at once, so the client starts a new daemon) and leaves when its runs end.
It also leaves after `AICD_DAEMON_IDLE` seconds (900 by default) without a run, and on SIGTERM.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import gc
import importlib
import io
import os
import selectors
import signal
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from aicd.cli.daemon.client import PROTOCOL, interpreter_key

IDLE_DEFAULT = 900.0
LOCK_WAIT = 2.0  # a daemon that cannot take the lock in this time leaves (another one serves)
REQUEST_TIMEOUT = 5.0  # a client sends its whole request at once
MAX_REQUEST = 8 << 20  # the environment and command line (Linux caps both at ARG_MAX, 2 MiB)

# What `aicd run` imports once its command line is read (measured with `python -X importtime`):
# loaded here once, so that each run starts with them in memory. A module missing here is
# imported by the run itself, as without the daemon.
PRELOAD = (
    "aicd.cli.main",
    "aicd.cli.run_entry",
    "aicd.cli.run_cmd",
    "aicd.core.variables_input",
    "aicd.core.local_run",
    "aicd.pipeline.loader",
    "aicd.pipeline.build",
    "aicd.pipeline.lint",
    "aicd.pipeline.include",
    "aicd.pipeline.extends",
    "aicd.pipeline.parallel",
    "aicd.pipeline.schema",
    "aicd.pipeline.durations",
    "aicd.pipeline.yaml_lib",
    "aicd.store.sqlite_fast",
    "aicd.store.snapshot",
    "aicd.store.migrations",
    "aicd.store.sqlite_pragmas",
    "aicd.executors.spawn",
    "aicd.executors.checkout",
    "ctypes",
    "sqlite3",
    "yaml",
    "getpass",
    "datetime",
    "queue",
    "concurrent.futures.thread",
    "base64",
    "termios",
)

# The daemon's own standard streams, kept referenced in a run: they own descriptors 0-2, which
# are the client's there, and would close them if collected.
_KEPT: list[object] = []


def _idle_timeout() -> float:
    try:
        return max(1.0, float(os.environ.get("AICD_DAEMON_IDLE", IDLE_DEFAULT)))
    except ValueError:
        return IDLE_DEFAULT


def _lock(path: str) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.01)


def _listen(path: str) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a dead daemon's (we hold the lock: no live one uses it)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(64)
    return listener


def preload() -> None:
    from aicd import dataclass_cache
    from aicd.cli.run_entry import import_asyncio_without_ssl

    import_asyncio_without_ssl()
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    dataclass_cache.save()  # now, not in every run's exit handlers


def module_files() -> dict[str, tuple[int, int]]:
    """Each loaded module's file: (mtime in ns, size), to see a changed installation."""
    files: dict[str, tuple[int, int]] = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            with contextlib.suppress(OSError):
                st = os.stat(path)
                files[path] = (st.st_mtime_ns, st.st_size)
    return files


def changed(files: dict[str, tuple[int, int]]) -> list[str]:
    """The files of `files` that changed or went away since they were recorded."""
    out = []
    for path, seen in files.items():
        try:
            st = os.stat(path)
        except OSError:
            out.append(path)
            continue
        if (st.st_mtime_ns, st.st_size) != seen:
            out.append(path)
    return out


@dataclass
class _Run:
    conn: socket.socket
    client_gone: bool = False


@dataclass
class _Request:
    key: bytes
    cwd: bytes
    umask: int
    argv: list[str]
    env: dict[bytes, bytes]
    fds: list[int] = field(default_factory=list)


def parse_request(body: bytes) -> _Request:
    """The client's request body (see `aicd.cli.daemon.client.request`); ValueError if malformed."""
    fields = body.split(b"\0")
    if len(fields) < 4:
        raise ValueError("short request")
    key, cwd, umask, argc = fields[:4]
    count = int(argc)
    if count < 1 or len(fields) < 4 + count:
        raise ValueError("bad argument count")
    argv = [os.fsdecode(a) for a in fields[4 : 4 + count]]
    env: dict[bytes, bytes] = {}
    for entry in fields[4 + count :]:
        name, eq, value = entry.partition(b"=")
        if not eq or not name:
            raise ValueError("bad environment entry")
        env[name] = value
    return _Request(key, cwd, int(umask, 8) & 0o777, argv, env)


class Daemon:
    def __init__(self, path: str, lock_fd: int, listener: socket.socket) -> None:
        self.path = path
        self.lock_fd: int | None = lock_fd
        self.listener: socket.socket | None = listener
        self.key = interpreter_key(os.environ)
        self.idle = _idle_timeout()
        self.files = module_files()
        self.runs: dict[int, _Run] = {}
        self.served = 0
        self.started = time.time()
        self.last_active = time.monotonic()
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self.selector.register(self.wake_r, selectors.EVENT_READ, self._drain)
        self.selector.register(listener, selectors.EVENT_READ, self._accept)
        self.pid = os.getpid()
        self.stop_asked = False

    # ------------------------------------------------------------------ the loop

    def serve(self) -> None:
        while True:
            self._reap()
            if self.stop_asked:
                self.retire()
            if not self.runs:
                if self.listener is None:
                    return
                left = self.idle - (time.monotonic() - self.last_active)
                if left <= 0:
                    return
            else:
                left = None
            for key, _events in self.selector.select(left):
                callback: Callable[[], None] = key.data
                with contextlib.suppress(Exception):  # one client's trouble never stops the daemon
                    callback()

    def retire(self) -> None:
        """Take no more requests: the socket and its lock go now; runs in progress finish."""
        if self.listener is not None:
            self.selector.unregister(self.listener)
            self.listener.close()
            self.listener = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum != signal.SIGCHLD:
            self.stop_asked = True  # acted on by the loop, between requests

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 512):
                pass

    def _reap(self) -> None:
        while self.runs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            run = self.runs.pop(pid, None)
            if run is None:
                continue
            self.last_active = time.monotonic()
            if not run.client_gone:
                self.selector.unregister(run.conn)
            with contextlib.suppress(OSError):
                run.conn.setblocking(True)
                run.conn.settimeout(REQUEST_TIMEOUT)
                run.conn.sendall(b"status %d\n" % status)
            run.conn.close()

    def _client_event(self, pid: int) -> None:
        run = self.runs.get(pid)
        if run is None:
            return
        try:
            data = run.conn.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return  # a client says nothing after its request
        self.selector.unregister(run.conn)
        run.client_gone = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # as closing the client's terminal would

    # ------------------------------------------------------------------ requests

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        try:
            self._handle(conn)
        except Exception:  # one bad request never stops the daemon
            conn.close()
            raise

    def _handle(self, conn: socket.socket) -> None:
        _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        if uid != os.getuid():
            conn.close()
            return
        conn.settimeout(REQUEST_TIMEOUT)
        buffer = b""
        fds: list[int] = []
        while b"\n" not in buffer and len(buffer) < 512:
            data, ancillary, _flags, _addr = conn.recvmsg(4096, socket.CMSG_SPACE(3 * 4))
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds += [
                        int.from_bytes(payload[i : i + 4], sys.byteorder)
                        for i in range(0, len(payload) - 3, 4)
                    ]
            if not data:
                break
            buffer += data
        header, _, rest = buffer.partition(b"\n")
        words = header.split(b" ")
        try:
            if header.startswith(PROTOCOL + b" run ") and len(fds) == 3:
                self._run(conn, int(words[-1]), rest, fds)
                return
            if header == PROTOCOL + b" status":
                conn.sendall(self.status_line())
            elif header == PROTOCOL + b" stop":
                conn.sendall(b"stopping %d\n" % self.pid)
                self.retire()
            conn.close()
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def status_line(self) -> bytes:
        return b"daemon pid=%d uptime=%d served=%d runs=%d idle_timeout=%d\n" % (
            self.pid,
            time.time() - self.started,
            self.served,
            len(self.runs),
            self.idle,
        )

    def _run(self, conn: socket.socket, size: int, body: bytes, fds: list[int]) -> None:
        if not 0 < size <= MAX_REQUEST:
            raise ValueError("request size")
        while len(body) < size:
            data = conn.recv(min(1 << 20, size - len(body)))
            if not data:
                raise ValueError("short request")
            body += data
        request = parse_request(body[:size])
        if request.key != self.key:
            conn.sendall(b"refused settings\n")
            conn.close()
            return
        if changed(self.files):
            conn.sendall(b"refused stale\n")
            conn.close()
            self.retire()
            return
        request.fds = fds
        pid = os.fork()
        if pid == 0:
            self._become_run(conn, request)
        self.served += 1
        self.last_active = time.monotonic()
        run = _Run(conn)
        self.runs[pid] = run
        try:
            pidfd = os.pidfd_open(pid)
            try:
                data = pidfd.to_bytes(4, sys.byteorder)
                conn.sendmsg([b"started %d\n" % pid], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, data)])
            finally:
                os.close(pidfd)
            conn.setblocking(False)
            self.selector.register(conn, selectors.EVENT_READ, lambda: self._client_event(pid))
        except OSError:  # the client went away before it heard of its run
            run.client_gone = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    # ------------------------------------------------------------------ the forked run

    def _close_in_run(self) -> None:
        signal.set_wakeup_fd(-1)
        self.selector.close()
        for run in self.runs.values():
            run.conn.close()
        if self.listener is not None:
            self.listener.close()
        for fd in (self.wake_r, self.wake_w, self.lock_fd):
            if fd is not None:
                os.close(fd)

    def _become_run(self, conn: socket.socket, request: _Request) -> NoReturn:
        code = 1
        try:
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            _die_with(self.pid)
            self._close_in_run()
            conn.close()
            for target, fd in enumerate(request.fds):
                os.dup2(fd, target)
            for fd in request.fds:
                os.close(fd)
            os.umask(request.umask)
            try:
                os.chdir(request.cwd)
            except OSError as exc:
                sys.stderr.write(f"aicd: cannot enter {os.fsdecode(request.cwd)}: {exc.strerror}\n")
                os._exit(1)
            os.environb.clear()
            os.environb.update(request.env)
            sys.argv = request.argv
            _fresh_stdio()
            from aicd.cli.main import main

            main(daemon=False)
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            with contextlib.suppress(BaseException):
                atexit._run_exitfuncs()
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


def _exit_code(code: object) -> int:
    """`sys.exit(code)`'s exit status, as Python gives it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(BaseException):
        print(code, file=sys.stderr)
    return 1


def _die_with(parent: int) -> None:
    """SIGTERM this process when the daemon dies (a run never outlives the daemon unseen)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _fresh_stdio() -> None:
    """New `sys.stdin/stdout/stderr` over descriptors 0-2 (now the client's), made as Python makes
    them at start: the same encoding and errors (the same settings made the daemon's), stdout
    line-buffered on a terminal, stderr always, write-through when the daemon's was (-u)."""
    old = (sys.stdin, sys.stdout, sys.stderr)
    _KEPT.extend(old)
    write_through = bool(getattr(sys.stdout, "write_through", False))
    streams: list[io.TextIOWrapper] = []
    for fd, previous in enumerate(old):
        encoding = getattr(previous, "encoding", None) or "utf-8"
        errors = getattr(previous, "errors", None) or "strict"
        raw = io.FileIO(fd, "rb" if fd == 0 else "wb", closefd=False)
        buffered: io.BufferedReader | io.BufferedWriter = (
            io.BufferedReader(raw) if fd == 0 else io.BufferedWriter(raw)
        )
        line = fd == 2 or (fd == 1 and (raw.isatty() or write_through))
        streams.append(
            io.TextIOWrapper(
                buffered,
                encoding=encoding,
                errors=errors,
                newline="\n",
                line_buffering=line,
                write_through=write_through and fd != 0,
            )
        )
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams  # type: ignore[misc]


def main() -> None:
    """The daemon's entry point: `python -c ... main()` with the socket's path as argument."""
    path = sys.argv[1]
    lock_fd = _lock(path + ".lock")
    if lock_fd is None:
        return
    listener = _listen(path)  # clients connect from now on and wait while the modules load
    preload()
    daemon = Daemon(path, lock_fd, listener)
    gc.collect()
    gc.freeze()  # what is loaded now is shared with every run, never copied by the collector
    try:
        daemon.serve()
    finally:
        daemon.retire()
    os._exit(0)
