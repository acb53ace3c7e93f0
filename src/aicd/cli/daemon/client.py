"""The `aicd` program's side of the run daemon (see :mod:`aicd.cli.daemon`).

`run_through_daemon` sends an `aicd run` command line, with the working folder, the environment,
the umask and the three standard streams (as descriptors), to the user's daemon, starting it if
none runs; the daemon forks a process that runs the command exactly as `aicd` would have. This
side forwards SIGINT, SIGTERM and SIGHUP to that process and leaves with its exit status (or dies
of the same signal). When no daemon can serve the line (turned off, no private folder for its
socket, another interpreter's settings, a daemon that cannot start), it returns and the command
runs in this process as before: the daemon changes how fast a run starts, never what it does.

This module runs before anything else in `aicd run`, so it imports only C modules that cost
nothing to load (`_socket`, `_signal`, `zlib`; `socket` and `signal` would add ~5-10 ms of
enums): the whole point is the start-up time.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C half of `signal`: no enum module to load
import _socket
import os
import stat
import sys
import time
import zlib

TYPE_CHECKING = False  # no typing or collections.abc at run time (see above)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

PROTOCOL = b"aicd-run-daemon 1"
OFF_VALUES = ("0", "off", "false", "no")
# Environment variables that change how an interpreter starts (and so which daemon may serve it).
_KEY_ENV_PREFIXES = ("PYTHON", "LC_")
_KEY_ENV_NAMES = ("LANG",)
FORWARDED_SIGNALS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)
START_TIMEOUT = 20.0  # seconds a new daemon gets to listen (a loaded machine imports slowly)
LOCK_WAIT = 3.0  # ... once it has exited: the daemon that holds the socket's lock may still start
MAX_SOCKET_PATH = 107  # sockaddr_un's sun_path, less its NUL


def enabled(env: Mapping[str, str]) -> bool:
    """`AICD_DAEMON` says; unset, the daemon is used except in CI (`CI` set, as every CI sets it:
    a daemon outliving a CI job's shell would keep running after the job)."""
    setting = env.get("AICD_DAEMON", "").strip().lower()
    if setting:
        return setting not in OFF_VALUES
    return env.get("CI", "").strip().lower() in ("", *OFF_VALUES)


def runtime_dir(env: Mapping[str, str]) -> str | None:
    """The folder of the user's daemon sockets, made private (0700) if new; None when it is not
    this user's alone (another user could otherwise put a socket of their own there)."""
    base = env.get("AICD_DAEMON_DIR")
    if not base:
        xdg = env.get("XDG_RUNTIME_DIR")
        if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
            base = os.path.join(xdg, "aicd")
        else:
            base = os.path.join(env.get("TMPDIR") or "/tmp", f"aicd-{os.getuid()}")
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(base)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return base


def interpreter_key(env: Mapping[str, str]) -> bytes:
    """What must be equal for a daemon to run a command as this process would: the interpreter,
    its flags and module path, the environment variables read at its start, aicd's location."""
    parts = [
        sys.executable,
        sys.version,
        sys.prefix,
        repr(sys.flags),
        repr(sorted(sys._xoptions.items())),
        repr(sys.warnoptions),
        repr(sys.path),
        __file__,
        str(os.getuid()),
    ]
    parts += sorted(f"{k}={v}" for k, v in env.items() if _starts_interpreter(k))
    return "\n".join(parts).encode("utf-8", "surrogateescape")


def _starts_interpreter(name: str) -> bool:
    """An environment variable read when Python starts (PYTHONWARNINGS is left out: its effect,
    `sys.warnoptions`, is in the key, and the daemon gets it as -W options)."""
    return (name.startswith(_KEY_ENV_PREFIXES) or name in _KEY_ENV_NAMES) and name != "PYTHONWARNINGS"


def socket_path(folder: str, key: bytes) -> str:
    digest = (zlib.crc32(key) << 32) | zlib.crc32(key[::-1])
    return os.path.join(folder, f"run-{digest:016x}.sock")


def _connect(path: str) -> _socket.socket | None:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def start_daemon(path: str, env: Mapping[str, str]) -> Any:
    """Start a daemon for this interpreter's settings, listening on `path`: its `Popen`, or None."""
    import subprocess  # only when a daemon is started

    # the daemon keeps what decides how it starts, and nothing else of this environment (it
    # outlives this command: tokens or keys in the environment stay with the commands given them)
    keep = {
        k: v
        for k, v in env.items()
        if _starts_interpreter(k)
        or k.startswith("AICD_DAEMON")
        or k in ("PATH", "HOME", "TMPDIR", "XDG_RUNTIME_DIR")
    }
    boot = f"import sys; sys.path[:] = {sys.path!r}; from aicd.cli.daemon.server import main; main()"
    argv = [sys.executable, *subprocess._args_from_interpreter_flags(), "-c", boot, path]  # type: ignore[attr-defined]
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            env=keep,
            start_new_session=True,
        )
    except OSError:
        return None


def _started_daemon(path: str, env: Mapping[str, str]) -> _socket.socket | None:
    """A connection to a daemon started now (or by another `aicd run` at the same moment); None
    when none listens in time: a daemon that exits (it cannot start here, or another one took the
    socket's lock and will listen) gets `LOCK_WAIT` more seconds, not the whole `START_TIMEOUT`."""
    started = start_daemon(path, env)
    if started is None:
        return None
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.002
    while time.monotonic() < deadline:
        sock = _connect(path)
        if sock is not None:
            return sock
        if started is not None and started.poll() is not None:
            started = None
            deadline = min(deadline, time.monotonic() + LOCK_WAIT)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return None


def _fds_data(fds: tuple[int, ...]) -> bytes:
    return b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)


def request(key: bytes, argv: list[str]) -> bytes:
    """The run request's body: NUL-separated fields (none of them can hold a NUL)."""
    umask = os.umask(0o022)
    os.umask(umask)
    env = [k + b"=" + v for k, v in os.environb.items()]
    args = [os.fsencode(a) for a in argv]
    fields = [key, os.getcwdb(), b"%o" % umask, b"%d" % len(args), *args, *env]
    return b"\0".join(fields)


class _Forwarder:
    """Signal handlers that pass SIGINT, SIGTERM and SIGHUP on to the run, once it is known."""

    def __init__(self) -> None:
        self.pidfd: int | None = None
        self.pending: list[int] = []

    def __call__(self, signum: int, _frame: object) -> None:
        if self.pidfd is None:
            self.pending.append(signum)
            return
        try:  # noqa: SIM105 - contextlib would be one more module to import before the hand-over
            _signal.pidfd_send_signal(self.pidfd, signum)
        except OSError:
            pass  # the run has ended

    def started(self, pidfd: int) -> None:
        self.pidfd = pidfd
        while self.pending:
            self(self.pending.pop(0), None)


def _read_line(sock: _socket.socket, buffer: bytearray, fds: list[int]) -> bytes | None:
    """The next line from the daemon (descriptors passed with it go to `fds`); None at its end."""
    while b"\n" not in buffer:
        data, ancillary, _flags, _addr = sock.recvmsg(4096, _socket.CMSG_SPACE(4))
        for level, kind, payload in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds += [
                    int.from_bytes(payload[i : i + 4], sys.byteorder, signed=True)
                    for i in range(0, len(payload) - 3, 4)
                ]
        if not data:
            return None
        buffer += data
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line


def _exchange(sock: _socket.socket, key: bytes, argv: list[str]) -> int | None:
    """Send the run; its wait status, or None when the daemon did not start it (run here instead)."""
    body = request(key, argv)
    header = PROTOCOL + b" run %d\n" % len(body)
    forward = _Forwarder()
    previous = {sig: _signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    buffer = bytearray()
    fds: list[int] = []
    try:
        sock.sendmsg([header], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _fds_data((0, 1, 2)))])
        sock.sendall(body)
        line = _read_line(sock, buffer, fds)
    except OSError:
        line = None
    if line is None or not line.startswith(b"started "):
        for sig, handler in previous.items():
            _signal.signal(sig, handler)
        for fd in fds:
            os.close(fd)
        if forward.pending:  # interrupted before anything ran
            sys.stderr.write("\nAborted!\n")
            os._exit(1)
        return None
    # from here on the run is the daemon's: never run it again here
    if fds:
        forward.started(fds[0])
    try:
        line = _read_line(sock, buffer, fds)
    except OSError:
        line = None
    if line is None or not line.startswith(b"status "):
        sys.stderr.write(
            "aicd: the run daemon stopped before the run ended; its results so far are in .aicd/ "
            "(`aicd daemon status`; AICD_DAEMON=off runs without it)\n"
        )
        return 1 << 8
    try:
        return int(line.split()[1])
    except (IndexError, ValueError):
        return 1 << 8


def run_through_daemon(argv: list[str]) -> None:
    """Run `argv` (`aicd run ...`) in the daemon and leave with its status; return if it cannot."""
    env = os.environ
    if not enabled(env):
        return
    try:  # a closed standard stream would be given the socket's descriptor: run here instead
        for fd in (0, 1, 2):
            os.fstat(fd)
    except OSError:
        return
    folder = runtime_dir(env)
    if folder is None:
        return
    key = interpreter_key(env)
    path = socket_path(folder, key)
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        return
    try:
        status = None
        for _attempt in range(2):  # a daemon whose code changed stops and says so: start a new one
            sock = _connect(path) or _started_daemon(path, env)
            if sock is None:
                return
            try:
                status = _exchange(sock, key, argv)
            finally:
                sock.close()
            if status is not None:
                break
        if status is None:
            return
    except (OSError, ValueError):
        return  # nothing was started (the status line is read last): run here
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # the run died of a signal: so does this process
        _signal.signal(-code, _signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code
    os._exit(code)
